-- timeline_done.lua: the worker rolled hours up into the database; move the artifact's
-- place in the rollup index on, and prune minutes older than the keep time.
-- KEYS[1] TL the artifact's timeline hash  KEYS[2] TI the partition's rollup index
-- ARGV[1] artifact id  ARGV[2] the first hour rolled up  ARGV[3] the hour after the last
-- ARGV[4] keep time (ms)
-- returns the minutes pruned. Atomic with the writers: a minute written after the worker
-- read the hours is in a later hour, so the index keeps the artifact (at ARGV[3]), or the
-- writer's ZADD NX puts it back.
--! include lib/now.lua

local TL, TI = KEYS[1], KEYS[2]
local from, to = tonumber(ARGV[2]), tonumber(ARGV[3])
local score = redis.call('ZSCORE', TI, ARGV[1])
if score and tonumber(score) == from then
  local latest = tonumber(redis.call('HGET', TL, '~'))
  if latest and math.floor(latest / 60) >= to then
    redis.call('ZADD', TI, 'XX', to, ARGV[1])
  else
    redis.call('ZREM', TI, ARGV[1])
  end
end

local size = redis.call('HLEN', TL)
if size == 0 then return 0 end
local cutoff = math.floor((NOW - tonumber(ARGV[4])) / 60000)
local mark = tonumber(redis.call('HGET', TL, '~p'))
local old = {}
if mark and cutoff - mark <= size then
  for m = mark, cutoff - 1 do old[#old + 1] = m end
else -- first prune, or a gap longer than the hash: look at each field (bounded by its size)
  for _, field in ipairs(redis.call('HKEYS', TL)) do
    local m = tonumber(field)
    if m and m < cutoff then old[#old + 1] = field end
  end
end
local pruned = 0
for i = 1, #old, 1000 do
  pruned = pruned + redis.call('HDEL', TL, unpack(old, i, math.min(#old, i + 999)))
end
if not mark or cutoff > mark then redis.call('HSET', TL, '~p', cutoff) end
return pruned
