-- where_now_prune.lua: drop entries a where-now read found stale from a user's index,
-- each only if it was not rewritten since that read (a session that came back keeps it).
-- KEYS[1] index zset  KEYS[2] the index's generation (see where_now_read.lua)
-- ARGV[1] the read's time (ms, where_now_read.lua's)  ARGV[2..] members
-- A member dropped changes the generation (lib/generation.lua), if there is one (only
-- where_now_add.lua starts one: it sets its TTL).
-- returns the number of entries dropped
--! include lib/now.lua
--! include lib/generation.lua
local read_at = tonumber(ARGV[1])
local dropped = 0
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) < read_at then
    redis.call('ZREM', KEYS[1], ARGV[i])
    dropped = dropped + 1
  end
end
if dropped > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  bump_generation(KEYS[2])
end
return dropped
