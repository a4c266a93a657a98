-- presence.lua: one page of an artifact's online users, most recent first.
-- KEYS[1] Z sessions zset  KEYS[2] I session info hash
-- ARGV[1] online timeout (ms)  ARGV[2] page size
-- ARGV[3] cursor lastSeen (ms) and ARGV[4] cursor user id: the last row of the previous
--         page ('' for the first page); rows sort by lastSeen desc, then user id asc
-- returns msgpack {online_users, online_sessions, {{userId, versionId, stateJson,
--         lastSeen, sessions}, ...}, has_more}; read-only
--! include lib/now.lua
--! include lib/reads.lua

local Z, I = KEYS[1], KEYS[2]
local limit = NOW - tonumber(ARGV[1])
local page_size = tonumber(ARGV[2])
local cursor_seen, cursor_user = tonumber(ARGV[3]), ARGV[4]

local live = redis.call('ZREVRANGEBYSCORE', Z, '+inf', '(' .. limit, 'WITHSCORES')
local rows, row_of = {}, {}
if #live > 0 then
  local sids = {}
  for i = 1, #live, 2 do sids[#sids + 1] = live[i] end
  local infos = {}
  for i = 1, #sids, 1000 do
    local part = redis.call('HMGET', I, unpack(sids, i, math.min(i + 999, #sids)))
    for _, v in ipairs(part) do infos[#infos + 1] = v end
  end
  for n, raw in ipairs(infos) do
    if raw then
      local info = cmsgpack.unpack(raw)
      local user = info[1]
      local row = row_of[user]
      if row then
        row[5] = row[5] + 1
      else
        -- ZREVRANGEBYSCORE gives each user's most recent session first.
        row = {user, info[2], info[3], tonumber(live[2 * n]), 1}
        row_of[user] = row
        rows[#rows + 1] = row
      end
    end
  end
end

local total_sessions = 0
for _, row in ipairs(rows) do total_sessions = total_sessions + row[5] end

table.sort(rows, function(a, b)
  if a[4] ~= b[4] then return a[4] > b[4] end
  return a[1] < b[1]
end)

local page = {}
local has_more = 0
for _, row in ipairs(rows) do
  local after = cursor_seen == nil
    or row[4] < cursor_seen
    or (row[4] == cursor_seen and row[1] > cursor_user)
  if after then
    if #page == page_size then has_more = 1; break end
    page[#page + 1] = row
  end
end
return cmsgpack.pack({#rows, total_sessions, page, has_more})
