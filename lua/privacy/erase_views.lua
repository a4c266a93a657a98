-- erase_views.lua: remove one user's view records of one version, keeping the counts.
-- KEYS[1] debounce key (artifact, version, user)  KEYS[2] artifact viewers set
-- KEYS[3] version viewers hash  KEYS[4] version viewers by last view zset
-- KEYS[5] version stats hash: 'erased' counts the tombstones in KEYS[3] (not in KEYS[4], so
--         readers of hidden viewers, HLEN - ZCARD, subtract them)
-- ARGV[1] user id  ARGV[2] tombstone (random, one per erasure)
-- returns 1 if the user had a record of the version, else 0
-- The tombstone takes the user's place in the set and the hash, so SCARD and HLEN (unique
-- viewers) do not change; its hash entry keeps the view count only, no times, and it is
-- never listed (the by-time zset, which lists viewers, loses the user outright).
local user, tomb = ARGV[1], ARGV[2]
redis.call('DEL', KEYS[1])
if redis.call('SREM', KEYS[2], user) == 1 then
  redis.call('SADD', KEYS[2], tomb)
end
redis.call('ZREM', KEYS[4], user)
local raw = redis.call('HGET', KEYS[3], user)
if not raw then return 0 end
local mine = cmsgpack.unpack(raw)
redis.call('HDEL', KEYS[3], user)
redis.call('HSET', KEYS[3], tomb, cmsgpack.pack({mine[1], 0, 0}))
redis.call('HINCRBY', KEYS[5], 'erased', 1)
return 1
