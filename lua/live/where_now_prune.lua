-- where_now_prune.lua: drop entries a where-now read found stale from a user's index,
-- each only if it was not rewritten since that read (a session that came back keeps it).
-- KEYS[1] index zset  ARGV[1] the read's time (ms, where_now_read.lua's)  ARGV[2..] members
-- returns the number of entries dropped
local read_at = tonumber(ARGV[1])
local dropped = 0
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) < read_at then
    redis.call('ZREM', KEYS[1], ARGV[i])
    dropped = dropped + 1
  end
end
return dropped
