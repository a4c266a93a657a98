-- timeline_done.lua: the worker rolled hours up into the database; keep them in the hash as
-- one record per hour instead of the minutes', move the artifact's place in the rollup
-- index on, and prune hours older than the keep time.
-- KEYS[1] TL the artifact's timeline hash  KEYS[2] TI the partition's rollup index
-- KEYS[3] I the artifact's info hash (the minutes its field '~t' holds: lib/timeline.lua)
-- ARGV[1] artifact id  ARGV[2] the first hour rolled up  ARGV[3] the hour after the last
-- ARGV[4] keep time (ms)  ARGV[5..] hour, hour record, ...: each hour that had a change,
-- msgpack {last users, last sessions, users and sessions of each of its 60 minutes}
-- Counts its runs in '~r' (with '~c', the hash's birth: timeline_read.lua's token), as
-- only this script changes the hour records.
-- returns the fields (and '~t' minutes) deleted, or -1 when nothing was done: the oldest
-- hour not rolled up is not ARGV[2] any more (another worker), or the hours have not all
-- ended by Redis's clock. Atomic with the writers: a minute written after the worker read
-- the hours is in a later hour, so the index keeps the artifact (at ARGV[3]), or the
-- writer's ZADD NX puts it back; '~t' keeps the minutes from ARGV[3] on.
--! include lib/now.lua

local TL, TI, I = KEYS[1], KEYS[2], KEYS[3]
local from, to = tonumber(ARGV[2]), tonumber(ARGV[3])
if to > math.floor(NOW / 3600000) then return -1 end
local score = redis.call('ZSCORE', TI, ARGV[1])
score = score and tonumber(score)
local packed = redis.call('HGET', I, '~t')
local t = packed and cmsgpack.unpack(packed)
local pending = score
if t and (not pending or math.floor(t[1] / 60) < pending) then pending = math.floor(t[1] / 60) end
if pending ~= from then return -1 end

local deleted = 0
local minutes = {}
if score == from then
  for m = from * 60, to * 60 - 1 do minutes[#minutes + 1] = m end
end
for i = 1, #minutes, 1000 do
  deleted = deleted + redis.call('HDEL', TL, unpack(minutes, i, math.min(#minutes, i + 999)))
end
local rolled = nil -- the last minute of '~t' rolled up
if t then
  local users0, sessions0 = t[2], t[3]
  local rest = {}
  for i = 4, #t, 5 do
    local minute = t[1] + t[i]
    if minute < to * 60 then
      users0, sessions0, rolled = t[i + 3], t[i + 4], minute
      deleted = deleted + 1
    else
      if #rest == 0 then rest = {minute, users0, sessions0} end
      rest[#rest + 1] = minute - rest[1]
      for j = 1, 4 do rest[#rest + 1] = t[i + j] end
    end
  end
  if #rest > 0 then redis.call('HSET', I, '~t', cmsgpack.pack(rest)) else redis.call('HDEL', I, '~t') end
end
for i = 5, #ARGV, 2 do redis.call('HSET', TL, 'h' .. ARGV[i], ARGV[i + 1]) end
redis.call('HINCRBY', TL, '~r', 1)
redis.call('HSETNX', TL, '~c', NOW) -- a hash from before '~c', or made again just now
local latest = tonumber(redis.call('HGET', TL, '~'))
if rolled then
  -- where lib/timeline.lua finds the values the next minute starts with: this hour record
  if not latest or latest < rolled then
    latest = rolled
    redis.call('HSET', TL, '~', rolled)
  end
  redis.call('PEXPIRE', TL, ARGV[4]) -- kept from its last minute, as lib/timeline.lua's
elseif redis.call('PTTL', TL) == -1 then
  redis.call('PEXPIRE', TL, ARGV[4]) -- expired meanwhile
end
if score == from then
  if latest and math.floor(latest / 60) >= to then
    redis.call('ZADD', TI, 'XX', to, ARGV[1])
  else
    redis.call('ZREM', TI, ARGV[1])
  end
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
