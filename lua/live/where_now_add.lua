-- where_now_add.lua: note in a user's where-now index that a session of theirs is on an
-- artifact (on the USER's slot: written by the service after a heartbeat that joined,
-- or whose entry this process wrote long enough ago, never by the artifact's script).
-- KEYS[1] index zset: '<artifact>/<session digest hex>' -> when last written (ms)
-- ARGV[1] member  ARGV[2] entry lifetime (ms)  ARGV[3] entries kept at most
-- Entries older than the lifetime go; past the cap the oldest go (entries of online
-- sessions are rewritten at least every refresh interval, so the left ones go first).
-- returns the number of entries kept
--! include lib/now.lua
local index, lifetime, keep = KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZADD', index, NOW, ARGV[1])
redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. (NOW - lifetime))
local size = redis.call('ZCARD', index)
if size > keep then
  redis.call('ZREMRANGEBYRANK', index, 0, size - keep - 1)
  size = keep
end
redis.call('PEXPIRE', index, lifetime)
return size
