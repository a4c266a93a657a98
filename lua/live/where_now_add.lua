-- where_now_add.lua: note in a user's where-now index that a session of theirs is on an
-- artifact (on the USER's slot: written by the service after a heartbeat that joined,
-- or whose entry this process wrote long enough ago, never by the artifact's script).
-- KEYS[1] index zset: '<artifact>/<session digest hex>' -> when last written (ms)
-- KEYS[2] the index's generation (see where_now_read.lua)
-- ARGV[1] member  ARGV[2] entry lifetime (ms)  ARGV[3] entries kept at most
-- ARGV[4] '1' the session (re)joined, '' a refresh
-- Entries older than the lifetime go; past the cap the oldest go (entries of online
-- sessions are rewritten at least every refresh interval, so the left ones go first).
-- A join, or a member added or dropped, changes the generation (a join of a member
-- already there too: a reader may have learnt that its artifact was left), as
-- lib/generation.lua says, so it never repeats a value a reader may have kept.
-- returns the number of entries kept
--! include lib/now.lua
--! include lib/generation.lua
local index, generation = KEYS[1], KEYS[2]
local lifetime, keep = tonumber(ARGV[2]), tonumber(ARGV[3])
local changed = redis.call('ZADD', index, NOW, ARGV[1]) + (ARGV[4] == '1' and 1 or 0)
changed = changed + redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. (NOW - lifetime))
local size = redis.call('ZCARD', index)
if size > keep then
  changed = changed + redis.call('ZREMRANGEBYRANK', index, 0, size - keep - 1)
  size = keep
end
if changed > 0 or redis.call('EXISTS', generation) == 0 then
  bump_generation(generation)
end
redis.call('PEXPIRE', index, lifetime)
redis.call('PEXPIRE', generation, lifetime)
return size
