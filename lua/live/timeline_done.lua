-- timeline_done.lua: the worker rolled hours up into the database; keep them in the hash as
-- one record per hour instead of the minutes', move the artifact's place in the rollup
-- index on, and prune hours older than the keep time.
-- KEYS[1] TL the artifact's timeline hash  KEYS[2] TI the partition's rollup index
-- ARGV[1] artifact id  ARGV[2] the first hour rolled up  ARGV[3] the hour after the last
-- ARGV[4] keep time (ms)  ARGV[5..] hour, hour record, ...: each hour that had a change,
-- msgpack {last users, last sessions, users and sessions of each of its 60 minutes}
-- Counts its runs in '~r' (with '~c', the hash's birth: timeline_read.lua's token), as
-- only this script changes the hour records.
-- returns the fields deleted, or -1 when nothing was done: the index moved on already
-- (another worker), or the hours have not all ended by Redis's clock. Atomic with the
-- writers: a minute written after the worker read the hours is in a later hour, so the
-- index keeps the artifact (at ARGV[3]), or the writer's ZADD NX puts it back.
--! include lib/now.lua

local TL, TI = KEYS[1], KEYS[2]
local from, to = tonumber(ARGV[2]), tonumber(ARGV[3])
local score = redis.call('ZSCORE', TI, ARGV[1])
if not score or tonumber(score) ~= from or to > math.floor(NOW / 3600000) then return -1 end

local deleted = 0
local minutes = {}
for m = from * 60, to * 60 - 1 do minutes[#minutes + 1] = m end
for i = 1, #minutes, 1000 do
  deleted = deleted + redis.call('HDEL', TL, unpack(minutes, i, math.min(#minutes, i + 999)))
end
for i = 5, #ARGV, 2 do redis.call('HSET', TL, 'h' .. ARGV[i], ARGV[i + 1]) end
redis.call('HINCRBY', TL, '~r', 1)
redis.call('HSETNX', TL, '~c', NOW) -- a hash from before '~c', or made again just now
if redis.call('PTTL', TL) == -1 then redis.call('PEXPIRE', TL, ARGV[4]) end -- expired meanwhile
local latest = tonumber(redis.call('HGET', TL, '~'))
if latest and math.floor(latest / 60) >= to then
  redis.call('ZADD', TI, 'XX', to, ARGV[1])
else
  redis.call('ZREM', TI, ARGV[1])
end

-- Hours older than the keep time: from the last prune's mark on, or (the first time, or
-- after a gap longer than the hash) looking at each field.
local size = redis.call('HLEN', TL)
local cutoff = math.floor((NOW - tonumber(ARGV[4])) / 3600000)
local mark = tonumber(redis.call('HGET', TL, '~p'))
local old = {}
if mark and cutoff - mark <= size then
  for h = mark, cutoff - 1 do old[#old + 1] = 'h' .. h end
else
  for _, field in ipairs(redis.call('HKEYS', TL)) do
    local h = string.sub(field, 1, 1) == 'h' and tonumber(string.sub(field, 2))
    if h and h < cutoff then old[#old + 1] = field end
  end
end
for i = 1, #old, 1000 do
  deleted = deleted + redis.call('HDEL', TL, unpack(old, i, math.min(#old, i + 999)))
end
if size > 0 and (not mark or cutoff > mark) then redis.call('HSET', TL, '~p', cutoff) end
return deleted
