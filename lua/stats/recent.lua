-- recent.lua: move an artifact to the top of a user's "recently viewed" list.
-- KEYS[1] zset artifact -> last view (ms)  KEYS[2] hash artifact -> version last viewed
-- ARGV[1] artifact id  ARGV[2] version id  ARGV[3] view time (ms)  ARGV[4] size kept
-- ARGV[5] TTL (ms) of an idle user's list
-- An older time never overwrites a newer one (ZADD GT), so late or replayed calls are
-- harmless; the list keeps only the most recent ARGV[4] artifacts.
-- returns 1 if the entry moved, else 0
local moved = redis.call('ZADD', KEYS[1], 'GT', 'CH', ARGV[3], ARGV[1])
if moved == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  local keep = tonumber(ARGV[4])
  local extra = redis.call('ZCARD', KEYS[1]) - keep
  if extra > 0 then
    local dropped = redis.call('ZRANGE', KEYS[1], 0, extra - 1)
    redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1)
    redis.call('HDEL', KEYS[2], unpack(dropped))
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return moved
