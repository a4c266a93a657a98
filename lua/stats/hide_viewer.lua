-- hide_viewer.lua: hide (or show again) one user's existing record among a version's
-- viewers, when their view history setting changes. Counts are untouched: the entry stays
-- in the viewers hash (HLEN = unique viewers), only its place in the list changes.
-- KEYS[1] version viewers hash (user -> msgpack {views, firstViewedAt, lastViewedAt[,
--         engagedMs[, hidden]]})  KEYS[2] version viewers by last view zset
-- ARGV[1] user id  ARGV[2] '1' hide, '' show
-- returns 1 if the user has a record there, 0 if not
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local mine = cmsgpack.unpack(raw)
if ARGV[2] == '1' then
  mine[4] = mine[4] or 0
  mine[5] = 1
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  mine[5] = nil
  redis.call('ZADD', KEYS[2], mine[3], ARGV[1])
end
redis.call('HSET', KEYS[1], ARGV[1], cmsgpack.pack(mine))
return 1
