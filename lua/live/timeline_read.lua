-- timeline_read.lua: what one artifact's timeline holds for a range of minutes.
-- KEYS[1] TL the artifact's timeline hash  KEYS[2] TI the partition's rollup index
-- KEYS[3] I the artifact's info hash (its field '~t': the minutes lib/timeline.lua packs
-- there while they fit)
-- ARGV[1] artifact id  ARGV[2] first minute  ARGV[3] end minute (excluded), minutes being
-- ms / 60000  ARGV[4] 'p': only the minutes not rolled up yet (nothing when all are)
-- ARGV[5] hours to look back for the values the range starts with
-- ARGV[6] the token of the hour records the caller holds ('': none) ARGV[7], ARGV[8] the
-- hours it holds them of, lo .. hi - 1  ARGV[9] the stamp the caller's answer of this very
-- range was made at ('': none)
-- returns {oldest hour not rolled up (-1: none), users, sessions at the first minute
-- before any change in it (-1, -1: unknown), number of hours n, token, lo, hi, stamp, hour,
-- hour record, ... (n pairs), minute, minute record, ...}: hour records (the rolled-up hours,
-- 'h<hour>': see timeline_done.lua) of the range's hours lo .. hi - 1, those before the
-- oldest not rolled up; minute records (lib/timeline.lua, the same whether TL or '~t'
-- holds them) from it on. n is -1 when the
-- caller's copy of them is current: the token ('~c' and '~r': the hash's birth and the
-- rollups since, the only things that change hour records) is the caller's and its hours
-- cover lo .. hi - 1; '' when the hash has no '~c'. The stamp (not in 'p' mode; '' when
-- the hash has no token and I no '~t') is all a reply can change with: the token, the
-- rollup index's score, the latest minute written in TL ('~'), that minute's record (a
-- writer changes only its own minute's field: the latest), the number of fields, and
-- '~t'. n is -2, and nothing follows
-- the stamp, when ARGV[9] is the current stamp: the caller's answer still holds. Read-only;
-- bounded by the range's hours (one HMGET, none with a current copy) and the minutes not
-- rolled up (normally the current hour); a current stamp costs five small reads.

local TL = KEYS[1]
local first, stop = tonumber(ARGV[2]), tonumber(ARGV[3])
local back = tonumber(ARGV[5])
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
score = score and tonumber(score) -- TL holds minutes from this hour on
local packed = redis.call('HGET', KEYS[3], '~t')
local t = packed and cmsgpack.unpack(packed)
local pending = score
if t and (not pending or math.floor(t[1] / 60) < pending) then pending = math.floor(t[1] / 60) end
local split = pending and pending * 60 or math.huge -- minute records from here on
local born, rollups, latest = unpack(redis.call('HMGET', TL, '~c', '~r', '~'))
local token = born and (born .. ':' .. (rollups or '0')) or ''
local out = {pending or -1, -1, -1, 0, token, 0, 0, ''}
if ARGV[4] == 'p' then
  if not pending then return out end
  first = math.max(first, split)
elseif token ~= '' or packed then
  out[8] = table.concat({token, score or '', latest or '', redis.call('HLEN', TL),
    latest and redis.call('HGET', TL, latest) or '', packed or ''}, '|')
  if out[8] == ARGV[9] then
    out[4] = -2
    return out
  end
end
if first >= stop then return out end

local function hmget(names)
  local values = {}
  for i = 1, #names, 1000 do
    local got = redis.call('HMGET', TL, unpack(names, i, math.min(#names, i + 999)))
    for j = 1, #got do values[i + j - 1] = got[j] end
  end
  return values
end

-- The last values of the latest hour record before `hour` (looking `back` hours).
local function carry_before(hour)
  local names = {}
  for h = hour - 1, hour - back, -1 do names[#names + 1] = 'h' .. h end
  local values = hmget(names)
  for i = 1, #names do
    if values[i] then
      local r = cmsgpack.unpack(values[i])
      out[2], out[3] = r[1], r[2]
      return
    end
  end
end

-- Rolled-up hours in range.
local h_first = math.floor(first / 60)
local h_stop = math.min(math.floor((stop - 1) / 60) + 1, math.floor(split / 60))
local first_hour_found = false
out[6], out[7] = h_first, math.max(h_first, h_stop)
if h_first < h_stop and token ~= '' and token == ARGV[6]
    and h_first >= tonumber(ARGV[7]) and h_stop <= tonumber(ARGV[8]) then
  out[4] = -1
  first_hour_found = redis.call('HEXISTS', TL, 'h' .. h_first) == 1
elseif h_first < h_stop then
  local names = {}
  for h = h_first, h_stop - 1 do names[#names + 1] = 'h' .. h end
  local values = hmget(names)
  for i = 1, #names do
    if values[i] then
      out[#out + 1] = h_first + i - 1
      out[#out + 1] = values[i]
      out[4] = out[4] + 1
      if i == 1 then first_hour_found = true end
    end
  end
end

-- Minutes not rolled up: read from the split, so the latest change before `first` is known.
local latest_before = nil
local function minute_record(minute, raw)
  if minute < first then
    latest_before = raw
  else
    out[#out + 1] = minute
    out[#out + 1] = raw
  end
end
if stop > split and score then
  local names = {}
  for m = score * 60, stop - 1 do names[#names + 1] = m end
  local values = hmget(names)
  for i = 1, #names do
    if values[i] then minute_record(names[i], values[i]) end
  end
end
if stop > split and t then -- later than any in TL (lib/timeline.lua writes one or the other)
  local users0, sessions0 = t[2], t[3]
  for i = 4, #t, 5 do
    local minute = t[1] + t[i]
    if minute >= stop then break end
    minute_record(minute, cmsgpack.pack({t[i + 1], t[i + 2], t[i + 3], t[i + 4], users0, sessions0}))
    users0, sessions0 = t[i + 3], t[i + 4]
  end
end

if first >= split then
  if latest_before then
    local r = cmsgpack.unpack(latest_before)
    out[2], out[3] = r[3], r[4]
  else
    carry_before(math.floor(split / 60))
  end
elseif not first_hour_found then
  carry_before(h_first)
end
return out
