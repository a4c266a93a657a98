-- where_now_prune.lua: drop entries a where-now read found stale from a user's index,
-- each only if it was not rewritten since that read (a session that came back keeps it).
-- KEYS[1] index zset  ARGV member, score (ms) as read, member, score, ...
-- returns the number of entries dropped
local dropped = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    dropped = dropped + 1
  end
end
return dropped
