-- recent_page.lua: one page of an artifact's recently-here users (offline now, last seen
-- within the keep time), most recent first; read-only.
-- KEYS[1] R zset user id -> lastSeen (ms) * 4 + reason code (see lib/recent.lua)
-- ARGV[1] keep time (ms)  ARGV[2] page size  ARGV[3] cursor score and ARGV[4] cursor user
--   id: the last row of the previous page ('' for the first); rows sort by score desc,
--   then user id desc (Redis's order for equal scores)
-- returns {{userId, score}, ...} flat as {user, score, user, score, ...} and has_more as
--   the last element (1 or 0). Cost: O(log n + page) (plus rows tied with the cursor).
--! include lib/now.lua
local R = KEYS[1]
local low = (NOW - tonumber(ARGV[1])) * 4
local size = tonumber(ARGV[2])
local cursor_score, cursor_user = tonumber(ARGV[3]), ARGV[4]
local out = {}
local taken = 0
local high = '+inf'
if cursor_score then
  -- rows tied with the cursor's score that come after it (user ids below it)
  local tied = redis.call('ZREVRANGEBYSCORE', R, cursor_score, cursor_score)
  for _, user in ipairs(tied) do
    if user < cursor_user and cursor_score >= low then
      if taken == size then
        out[#out + 1] = 1
        return out
      end
      out[#out + 1] = user
      out[#out + 1] = cursor_score
      taken = taken + 1
    end
  end
  high = '(' .. cursor_score
end
local rows = redis.call('ZREVRANGEBYSCORE', R, high, low, 'WITHSCORES', 'LIMIT', 0, size - taken + 1)
for i = 1, #rows, 2 do
  if taken == size then
    out[#out + 1] = 1
    return out
  end
  out[#out + 1] = rows[i]
  out[#out + 1] = tonumber(rows[i + 1])
  taken = taken + 1
end
out[#out + 1] = 0
return out
