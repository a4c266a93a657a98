-- lib/timeline.lua: the artifact's per-minute timeline, kept by the presence writers
-- (called from publish in lib/presence.lua, so only by a run that changed who is online;
-- a refreshing heartbeat never gets here).
-- KEYS[8] TL hash: minute (ms / 60000) -> msgpack {peak users, peak sessions, last users,
--   last sessions, users at the minute's start, sessions at its start}; '~' the latest
--   minute written; '~c' when this hash was made (ms), so a read can tell it from an
--   earlier one (timeline_read.lua's token). A minute without a field saw no change: it
--   has the last values of the minute before. Expires ARGV[8] ms after its last new minute; the worker prunes
--   minutes older than that (lua/live/timeline_done.lua).
-- KEYS[9] TI zset (per partition): artifact id -> the oldest hour (ms / 3600000) the
--   worker has not rolled up into the database yet (written NX: the worker moves it).

local function timeline_note(online, sessions)
  local keep = tonumber(ARGV[8])
  if not keep or keep <= 0 then return end
  local TL = KEYS[8]
  local minute = math.floor(NOW / 60000)
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
  -- The first change of this minute: it starts from the last values written, in the
  -- latest minute's field or, once the worker rolled its hour up, in the hour's record.
  local users0, sessions0 = 0, 0
  local latest = tonumber(redis.call('HGET', TL, '~'))
  if latest then
    local prev = redis.call('HGET', TL, latest)
    if prev then
      local p = cmsgpack.unpack(prev)
      users0, sessions0 = p[3], p[4]
    else
      local hour = redis.call('HGET', TL, 'h' .. math.floor(latest / 60))
      if hour then
        local h = cmsgpack.unpack(hour)
        users0, sessions0 = h[1], h[2]
      end
    end
  end
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
