-- engage_done.lua: after the worker wrote engaged-time totals into the database, take
-- what it wrote out of the partition's dirty zset, unless it changed since it was read
-- (then the next flush writes the newer total).
-- KEYS[1] the partition's engagement dirty zset (see stats/engage.lua)
-- ARGV pairs: member, its score when the worker read it (the day's total it wrote)
-- returns how many members were taken out
local done = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= tonumber(ARGV[i + 1]) then
    done = done + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return done
