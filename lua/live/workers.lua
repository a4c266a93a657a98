-- workers.lua: keep this worker on the list of live workers (or take it off) and return
-- the list. Workers split the partitions among the live ones by rendezvous hashing.
-- KEYS[1] workers zset: worker id -> alive until (ms)
-- ARGV[1] worker id  ARGV[2] lease (ms)  ARGV[3] '1' to stay on the list, '0' to leave it
-- returns the ids of the live workers, sorted
-- A worker that dies stops renewing and drops off within one lease.
--! include lib/now.lua
local now = NOW
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], lease * 2)
return redis.call('ZRANGE', KEYS[1], 0, -1)
