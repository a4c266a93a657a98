-- timeline_read.lua: the records of a range of minutes of one artifact's timeline.
-- KEYS[1] TL the artifact's timeline hash  KEYS[2] TI the partition's rollup index
-- ARGV[1] artifact id  ARGV[2] first minute  ARGV[3] end minute (excluded), minutes being
-- ms / 60000  ARGV[4] 'p': start at the oldest hour not rolled up yet instead (if later),
-- and read nothing when every hour is rolled up
-- returns {oldest hour not rolled up (-1: none), users, sessions at the first minute read
-- (-1, -1: unknown), first minute read, minute, record, minute, record, ...} (records as
-- lib/timeline.lua writes them, in no order); read-only. Bounded: HMGET of the range, or
-- the whole hash when that is smaller.

local TL = KEYS[1]
local first, stop = tonumber(ARGV[2]), tonumber(ARGV[3])
local pending = redis.call('ZSCORE', KEYS[2], ARGV[1])
pending = pending and tonumber(pending) or -1
if ARGV[4] == 'p' then
  if pending < 0 then return {-1, -1, -1, stop} end
  first = math.max(first, pending * 60)
end
local out = {pending, -1, -1, first}
local size = redis.call('HLEN', TL)
if size == 0 or first >= stop then return out end

-- The whole hash: the records in range, and the last values before it.
local function scan()
  local all = redis.call('HGETALL', TL)
  local best, best_raw = nil, nil
  for i = 1, #all, 2 do
    local m = tonumber(all[i])
    if m then
      if m >= first and m < stop then
        out[#out + 1] = m
        out[#out + 1] = all[i + 1]
      elseif m < first and (not best or m > best) then
        best, best_raw = m, all[i + 1]
      end
    end
  end
  return best_raw
end

if stop - first > size then
  local before = scan()
  local earliest, earliest_raw = nil, nil
  for i = 5, #out, 2 do
    if not earliest or out[i] < earliest then earliest, earliest_raw = out[i], out[i + 1] end
  end
  if before then
    local r = cmsgpack.unpack(before)
    out[2], out[3] = r[3], r[4]
  elseif earliest_raw then
    local r = cmsgpack.unpack(earliest_raw)
    out[2], out[3] = r[5], r[6]
  end
  return out
end

local earliest_raw = nil
local CHUNK = 1000
for start = first, stop - 1, CHUNK do
  local fields = {}
  for m = start, math.min(stop, start + CHUNK) - 1 do fields[#fields + 1] = m end
  local values = redis.call('HMGET', TL, unpack(fields))
  for i = 1, #fields do
    local raw = values[i]
    if raw then
      out[#out + 1] = fields[i]
      out[#out + 1] = raw
      earliest_raw = earliest_raw or raw
    end
  end
end
if earliest_raw then
  local r = cmsgpack.unpack(earliest_raw)
  out[2], out[3] = r[5], r[6]
  return out
end
-- Nothing in range: the latest record, if it is before; else look at the whole hash.
local latest = tonumber(redis.call('HGET', TL, '~'))
local before
if latest and latest < first then
  before = redis.call('HGET', TL, latest)
else
  before = scan()
end
if before then
  local r = cmsgpack.unpack(before)
  out[2], out[3] = r[3], r[4]
end
return out
