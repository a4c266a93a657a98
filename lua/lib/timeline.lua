-- lib/timeline.lua: the artifact's per-minute timeline, kept by the presence writers
-- (called from publish in lib/presence.lua, so only by a run that changed who is online;
-- a refreshing heartbeat never gets here).
-- A minute's record: {peak users, peak sessions, last users, last sessions, users at the
-- minute's start, sessions at its start}; a minute without one saw no change: it has the
-- last values of the minute before. The minutes not rolled up yet are kept in one of two
-- places, never both:
-- KEYS[2] I, field '~t' (while the artifact has keys and they fit): msgpack {first minute,
--   users and sessions at its start, then for each minute with a change, in order: its
--   offset from the first minute, peak users, peak sessions, last users, last sessions}
--   (a minute starts with the last values of the one before), at most TIMELINE_PACKED
--   bytes so the info hash keeps its compact encoding. No key and no index entry of its
--   own: the worker finds these by the sweep index (lua/live/timeline_live.lua).
-- KEYS[8] TL hash: minute (ms / 60000) -> its record, msgpack; once they no longer fit in
--   '~t' (they move here, as when the artifact's keys go: timeline_spill), or as written
--   by earlier versions. Also the hour records the worker rolls up (timeline_done.lua);
--   '~' the latest minute written; '~c' when this hash was made (ms), so a read can tell it
--   from an earlier one (timeline_read.lua's token). Expires ARGV[8] ms after its last new
--   minute; the worker prunes minutes older than that (lua/live/timeline_done.lua).
-- KEYS[9] TI zset (per partition): artifact id -> the oldest hour (ms / 3600000) whose
--   minutes in TL the worker has not rolled up into the database yet (written NX: the
--   worker moves it). An artifact is in it exactly while TL holds minutes not rolled up.

local TIMELINE_PACKED = 64 -- Redis's default hash-max-ziplist-value (listpack in 7+)

-- The last values written before this minute's first change: the latest minute's record
-- in TL or, once the worker rolled its hour up, the hour's record.
local function timeline_last(TL)
  local latest = tonumber(redis.call('HGET', TL, '~'))
  if latest then
    local prev = redis.call('HGET', TL, latest)
    if prev then
      local p = cmsgpack.unpack(prev)
      return p[3], p[4], latest
    end
    local hour = redis.call('HGET', TL, 'h' .. math.floor(latest / 60))
    if hour then
      local h = cmsgpack.unpack(hour)
      return h[1], h[2], latest
    end
  end
  return 0, 0, latest
end

-- The minutes packed in '~t' (`t`, unpacked) move to TL as minute records, and the
-- artifact into TI: they no longer fit, or the artifact's keys go.
local function timeline_move(t, keep)
  local TL = KEYS[8]
  local base, users0, sessions0 = t[1], t[2], t[3]
  local fields, last = {}, nil
  for i = 4, #t, 5 do
    local minute = base + t[i]
    fields[#fields + 1] = minute
    fields[#fields + 1] = cmsgpack.pack({t[i + 1], t[i + 2], t[i + 3], t[i + 4], users0, sessions0})
    users0, sessions0, last = t[i + 3], t[i + 4], minute
  end
  if not last then return end
  local latest = tonumber(redis.call('HGET', TL, '~'))
  redis.call('HSET', TL, '~', math.max(latest or last, last), unpack(fields))
  redis.call('HSETNX', TL, '~c', NOW) -- a new hash (or one made by the worker has its own)
  redis.call('PEXPIRE', TL, keep)
  redis.call('ZADD', KEYS[9], 'NX', math.floor(base / 60), ARGV[1])
  redis.call('PEXPIRE', KEYS[9], keep)
end

-- The artifact's keys are about to go (its last session is deleted): what '~t' holds
-- moves to TL first.
local function timeline_spill()
  local raw = redis.call('HGET', KEYS[2], '~t')
  if not raw then return end
  local keep = tonumber(ARGV[8])
  if keep and keep > 0 then timeline_move(cmsgpack.unpack(raw), keep) end
  redis.call('HDEL', KEYS[2], '~t')
end

-- This run's change in TL, as versions before '~t' kept every minute.
local function timeline_note_hash(online, sessions, keep, minute)
  local TL = KEYS[8]
  local raw = redis.call('HGET', TL, minute)
  if raw then
    local r = cmsgpack.unpack(raw)
    if r[3] == online and r[4] == sessions then return end
    if online > r[1] then r[1] = online end
    if sessions > r[2] then r[2] = sessions end
    r[3], r[4] = online, sessions
    redis.call('HSET', TL, minute, cmsgpack.pack(r))
    return
  end
  local users0, sessions0, latest = timeline_last(TL)
  local packed = cmsgpack.pack({math.max(users0, online), math.max(sessions0, sessions),
    online, sessions, users0, sessions0})
  if latest then
    redis.call('HSET', TL, minute, packed, '~', math.max(latest, minute))
  else -- a new hash (or one only the worker wrote)
    redis.call('HSET', TL, minute, packed, '~', minute, '~c', NOW)
  end
  redis.call('PEXPIRE', TL, keep)
  redis.call('ZADD', KEYS[9], 'NX', math.floor(minute / 60), ARGV[1])
  redis.call('PEXPIRE', KEYS[9], keep)
end

-- The counts after this run's change; `keys`: whether the artifact has keys (I exists).
local function timeline_note(online, sessions, keys)
  local keep = tonumber(ARGV[8])
  if not keep or keep <= 0 then return end
  local I = KEYS[2]
  local minute = math.floor(NOW / 60000)
  -- '~t' only while the artifact has keys, and TL holds no minute not rolled up yet (an
  -- artifact is in TI exactly then; never while '~t' exists)
  local raw = keys and redis.call('HGET', I, '~t')
  if not raw and (not keys or redis.call('ZSCORE', KEYS[9], ARGV[1])) then
    return timeline_note_hash(online, sessions, keep, minute)
  end
  local t
  if raw then
    t = cmsgpack.unpack(raw)
    local n = #t - 4 -- the latest minute's offset
    local latest = t[1] + t[n]
    if minute == latest then
      if t[n + 3] == online and t[n + 4] == sessions then return end
      t[n + 1], t[n + 2] = math.max(t[n + 1], online), math.max(t[n + 2], sessions)
      t[n + 3], t[n + 4] = online, sessions
    elseif minute > latest then
      local users0, sessions0 = t[n + 3], t[n + 4]
      t[#t + 1] = minute - t[1]
      t[#t + 1] = math.max(users0, online)
      t[#t + 1] = math.max(sessions0, sessions)
      t[#t + 1] = online
      t[#t + 1] = sessions
    else -- Redis's clock went back: a minute before the latest, kept as TL keeps it
      timeline_move(t, keep)
      redis.call('HDEL', I, '~t')
      return timeline_note_hash(online, sessions, keep, minute)
    end
  else
    local users0, sessions0 = timeline_last(KEYS[8])
    t = {minute, users0, sessions0, 0, math.max(users0, online), math.max(sessions0, sessions),
      online, sessions}
  end
  local packed = cmsgpack.pack(t)
  if #packed <= TIMELINE_PACKED then
    redis.call('HSET', I, '~t', packed)
  else
    timeline_move(t, keep)
    redis.call('HDEL', I, '~t')
  end
end
