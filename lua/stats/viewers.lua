-- viewers.lua: one page of a version's viewers, most recent view first.
-- KEYS[1] version viewers by last view zset  KEYS[2] version viewers hash
-- ARGV[1] page size  ARGV[2] cursor lastViewedAt (ms) and ARGV[3] cursor user id: the last
--         row of the previous page ('' for the first); order: last view desc, user id desc
-- returns msgpack {{{userId, {views, firstViewedAt, lastViewedAt[, engagedMs, ...]}}, ...},
-- has_more}; read-only
local size = tonumber(ARGV[1])
local rows = {}
local function add(members)
  for i = 1, #members do
    if #rows == size + 1 then return end
    rows[#rows + 1] = members[i]
  end
end

if ARGV[2] == '' then
  add(redis.call('ZREVRANGE', KEYS[1], 0, size))
else
  local tied = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[2], ARGV[2])
  local after = {}
  for _, member in ipairs(tied) do
    if member < ARGV[3] then after[#after + 1] = member end
  end
  add(after)
  add(redis.call('ZREVRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], '-inf', 'LIMIT', 0, size + 1))
end

local has_more = 0
if #rows > size then rows[#rows] = nil; has_more = 1 end
local page = {}
if #rows > 0 then
  local infos = redis.call('HMGET', KEYS[2], unpack(rows))
  for i, user in ipairs(rows) do
    if infos[i] then page[#page + 1] = {user, cmsgpack.unpack(infos[i])} end
  end
end
return cmsgpack.pack({page, has_more})
