-- lib/engage.lua: engage(), crediting one session's engaged time (a heartbeat's or a
-- page-close beacon's "engagedMs") to its viewer of a version, clamped to what could have
-- happened. stats/heartbeat_engaged.lua and stats/leave_engaged.lua call it and then run
-- the presence writer (live/heartbeat.lua, live/leave.lua) in the same script: one call,
-- atomic, before the writer changes the session.
-- Its keys and arguments are the LAST of the script's (so a writer growing its own keeps
-- working): KEYS[n-1] LR hash: packed session id -> the session's last report (ms)
-- KEYS[n] DIRTY zset (per partition): '<day>/<artifact>/<version>/<user>' -> that day's
-- total, drained by the worker; ARGV[1] (the writer's) the artifact id, and the last 12:
-- slack (ms), ceiling of one report (ms), read-after (ms), histogram bucket floors (s,
-- ascending, comma-separated, the first 0), the views key prefix of the artifact's tag
-- ('vw:{T}:'), LR's lifetime (ms), DAY's lifetime (ms), the UTC day (YYYY-MM-DD), the
-- session id (packed), the user id, the version id ('' the session's current one, read
-- from the writer's KEYS[2]), the engaged ms (> 0).
-- Built here from the prefix, on the artifact's hash tag like KEYS (one slot): the
-- version's viewers hash 'vu:<artifact>/<version>' and stats hash 'v:<artifact>/<version>'
-- (see stats/record_view.lua), and the DAY hash 'ed:<day>' (per partition and UTC day:
-- '<artifact>/<version>/<user>' -> engaged ms that day): which version is only known here.
-- Credited only to a user with a view record of the version; otherwise dropped.
-- The crossing of read-after appends version.read to the writer's KEYS[7] (the partition
-- outbox, while it exists; lib/outbox_event.lua), with the artifact's latest-version hash
-- 'lv:<artifact>' built from the prefix like the others.
--! include lib/outbox_event.lua
local function engage()
  local LR, DIRTY = KEYS[#KEYS - 1], KEYS[#KEYS]
  local a = #ARGV - 12
  local prefix, day = ARGV[a + 5], ARGV[a + 8]
  local artifact, sid, user, version = ARGV[1], ARGV[a + 9], ARGV[a + 10], ARGV[a + 11]

  if version == '' then
    local raw = redis.call('HGET', KEYS[2], sid)
    local info = raw and cmsgpack.unpack(raw)
    if not info or info[1] ~= user then return end
    version = info[2] or ''
    if version == '' then return end
  end

  local VU = prefix .. 'vu:' .. artifact .. '/' .. version
  local entry = redis.call('HGET', VU, user)
  if not entry then return end
  -- msgpack [views, firstViewedAt, lastViewedAt, engagedMs, ...]: elements 5+ (the
  -- hidden-viewer flag...) are kept as they are.
  local mine = cmsgpack.unpack(entry)

  -- The clamp: no more than the time since this session's previous report, or for its
  -- first one since the viewer's last counted view of the version (what a page records
  -- when it opens), plus the slack, and never above the ceiling.
  local base = tonumber(mine[3])
  local last = redis.call('HGET', LR, sid)
  if last and tonumber(last) > base then base = tonumber(last) end
  redis.call('HSET', LR, sid, NOW)
  redis.call('PEXPIRE', LR, ARGV[a + 6])
  local credit = math.min(tonumber(ARGV[a + 12]), math.max(0, NOW - base) + tonumber(ARGV[a + 1]),
    tonumber(ARGV[a + 2]))
  if credit <= 0 then return end

  local before = tonumber(mine[4] or 0)
  local after = before + credit
  mine[4] = after
  redis.call('HSET', VU, user, cmsgpack.pack(mine))

  local V = prefix .. 'v:' .. artifact .. '/' .. version
  redis.call('HINCRBY', V, 'engagedMs', credit)
  local read_after = tonumber(ARGV[a + 3])
  if before < read_after and after >= read_after then
    redis.call('HINCRBY', V, 'readers', 1)
    -- webhooks hook (version.read): the moment `readers` counts this viewer
    outbox_event(KEYS[7], prefix .. 'lv:' .. artifact, 'read', user, mine[5] == 1, artifact,
      version, after)
  end

  -- The histogram: each viewer with engaged time in the bucket of its total ('h:<floor s>').
  local was, is
  for floor in string.gmatch(ARGV[a + 4], '%d+') do
    local at = tonumber(floor) * 1000
    if before > 0 and before >= at then was = floor end
    if after >= at then is = floor else break end
  end
  if was ~= is then
    if was then redis.call('HINCRBY', V, 'h:' .. was, -1) end
    redis.call('HINCRBY', V, 'h:' .. is, 1)
  end

  local member = artifact .. '/' .. version .. '/' .. user
  local DAY = prefix .. 'ed:' .. day
  local today = redis.call('HINCRBY', DAY, member, credit)
  if today == credit then redis.call('PEXPIRE', DAY, ARGV[a + 7]) end
  redis.call('ZADD', DIRTY, today, day .. '/' .. member)
end
