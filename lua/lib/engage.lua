-- lib/engage.lua: engage(), taking one session's engaged time (a heartbeat's or a
-- page-close beacon's "engagedMs"), clamped to what could have happened, into the
-- session's accumulator; and credit(), folding accumulated time into the viewer of a
-- version. stats/heartbeat_engaged.lua and stats/leave_engaged.lua call engage() and then
-- run the presence writer (live/heartbeat.lua, live/leave.lua) in the same script: one
-- call, atomic, before the writer changes the session. stats/engage_fold.lua (the worker)
-- calls credit() for the accumulators nobody folded in time (a session that went).
-- Deferred crediting: a report only clamps its delta and adds it to the session's
-- accumulator, which is kept in the session's own record (the writer's KEYS[2] I, field
-- ARGV[9]: elements 5-8 {last report (ms), pending ms, fold due (ms), version}, see
-- lib/session_record.lua), the record the report reads anyway to check whose session it
-- is: one HGET (shared with the heartbeat's fast path) and one HSET; the accumulated
-- time is credited to the viewer (viewers hash, version totals, readers, histogram, the
-- day's total) at most once per fold interval per session (its first fold within its
-- first interval, by the session id), when the session leaves, when its version changes,
-- and by the worker once its fold is due (a session that stopped reporting). The
-- record's other readers (settling, the presence list, where-now, erasure, the sweep)
-- read elements 1-4 and keep the rest as it is; a record deleted (a leave, an erasure,
-- the sweep) takes its accumulator with it.
-- Its arguments are the LAST of the script's (so a writer growing its own keeps working);
-- it has no keys of its own: ARGV[1] (the writer's) the artifact id, ARGV[9] the session
-- id (packed), ARGV[10] the user id and, for a heartbeat, ARGV[11] the version id ('' the
-- session's current one, read from the writer's KEYS[2]; a leave's is always '') (the
-- writer's own arguments: not sent twice), and the last 4: slack (ms), ceiling of one
-- report (ms), the rules only a fold reads, msgpack {read-after (ms), histogram bucket
-- floors (s, ascending, comma-separated, the first 0), the views key prefix of the
-- artifact's tag ('vw:{T}:'), unused (was the accumulators hash's lifetime), DAY's
-- lifetime (ms), the UTC day (YYYY-MM-DD), the fold interval (ms; 0: credit every report
-- at once)} (one argument: fewer for Redis to take on the hot path), the engaged ms (>= 0).
-- Built here from the prefix, on the artifact's hash tag like the writer's KEYS (one
-- slot; keys a report on the hot path never touches, so the call does not carry them):
-- the DIRTY zset 'edirty' (per partition: '<day>/<artifact>/<version>/<user>' -> that
-- day's total, drained by the worker), the FOLDS zset 'efold' (per partition: packed
-- session id (9 bytes) .. artifact -> when its accumulator's fold is due, for each
-- accumulator holding time), the version's viewers hash 'vu:<artifact>/<version>' and
-- stats hash 'v:<artifact>/<version>' (see stats/record_view.lua), and the DAY hash
-- 'ed:<day>' (per partition and UTC day: '<artifact>/<version>/<user>' -> engaged ms that
-- day): which version is only known here.
-- Credited only to a user with a view record of the version and only by the session's
-- own user (the writer's KEYS[2] says whose it is); otherwise dropped.
-- The crossing of read-after appends version.read to the partition outbox (while it
-- exists; lib/outbox_event.lua), with the artifact's latest-version hash 'lv:<artifact>'
-- built from the prefix like the others.
--! include lib/outbox_event.lua
--! include lib/session_record.lua

-- credit(): `ms` (> 0) engaged on `version` of `artifact` by `user`, into the viewer's
-- entry, the version's total, readers and histogram, and the day's total (marked dirty).
-- Returns the viewer's entry as written (unpacked), nil when the user has none.
local function credit(OB, DIRTY, prefix, artifact, version, user, ms, read_after, floors,
    day, day_ms)
  local VU = prefix .. 'vu:' .. artifact .. '/' .. version
  local entry = redis.call('HGET', VU, user)
  if not entry then return end
  -- msgpack [views, firstViewedAt, lastViewedAt, engagedMs, ...]: elements 5+ (the
  -- hidden-viewer flag...) are kept as they are.
  local mine = cmsgpack.unpack(entry)
  local before = tonumber(mine[4] or 0)
  local after = before + ms
  mine[4] = after
  redis.call('HSET', VU, user, cmsgpack.pack(mine))

  local V = prefix .. 'v:' .. artifact .. '/' .. version
  redis.call('HINCRBY', V, 'engagedMs', ms)
  if before < read_after and after >= read_after then
    redis.call('HINCRBY', V, 'readers', 1)
    -- webhooks hook (version.read): the moment `readers` counts this viewer
    outbox_event(OB, prefix .. 'lv:' .. artifact, 'read', user, mine[5] == 1, artifact,
      version, after)
  end

  -- The histogram: each viewer with engaged time in the bucket of its total ('h:<floor s>').
  local was, is
  for floor in string.gmatch(floors, '%d+') do
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
  local today = redis.call('HINCRBY', DAY, member, ms)
  if today == ms then redis.call('PEXPIRE', DAY, day_ms) end
  redis.call('ZADD', DIRTY, today, day .. '/' .. member)
  return mine
end

-- The session's accumulator taken out of its record `info` (nothing left to credit): the
-- record written back without it, and its fold entry gone.
local function forget(I, FOLDS, sid, artifact, info)
  info[5], info[6], info[7], info[8] = nil, nil, nil, nil
  if info[4] == 0 then info[4] = nil end
  redis.call('HSET', I, sid, cmsgpack.pack(info))
  redis.call('ZREM', FOLDS, sid .. artifact)
end

-- engage(final): a report; `final` (a leave): everything credited now and the
-- accumulator taken away. The session's record (with the accumulator in it) is the one
-- lib/engage_report.lua read, if it did (lib/session_record.lua); only its accumulator
-- (elements 5-8) is written here.
local function engage(final)
  local a = #ARGV - 4
  local I = KEYS[2]
  local artifact, sid, user = ARGV[1], ARGV[9], ARGV[10]
  local version = final and '' or ARGV[11]
  local ms, now = tonumber(ARGV[a + 4]), NOW

  -- Whose session: only its own user's reports count (the writer refuses the others).
  local raw = SESSION_RAW
  if raw == nil then raw = redis.call('HGET', I, sid) end
  local info = raw and (SESSION_INFO or cmsgpack.unpack(raw))
  SESSION_RAW = raw
  if info then SESSION_INFO = info end
  if info and info[1] ~= user then return end
  if version == '' then
    version = info and info[2] or ''
    if version == '' then return end
  end
  local slack, ceiling = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local acc = info and info[8] ~= nil  -- the record holds an accumulator
  local rules, read_after, floors, prefix, day_ms, day, fold_ms, DIRTY, FOLDS
  if info and not acc then
    -- A session older than its record's accumulator (an upgrade): what an older version
    -- held for it in its own hash ('er:<artifact>') is credited at the first report or
    -- the leave that finds the record without one, before its fold entry is replaced
    -- or taken away with the record.
    rules = cmsgpack.unpack(ARGV[a + 3])
    prefix = rules[3]
    local LR = prefix .. 'er:' .. artifact
    local old = redis.call('HGET', LR, sid)
    if old then
      redis.call('HDEL', LR, sid)
      old = cmsgpack.unpack(old)
      if type(old) == 'table' and tonumber(old[2] or 0) > 0 and old[4] then
        credit(KEYS[7], prefix .. 'edirty', prefix, artifact, old[4], user, old[2],
          tonumber(rules[1]), rules[2], rules[6], rules[5])
      end
    end
  end
  if not acc and ms == 0 then return end  -- a leave with nothing held and nothing new
  rules = rules or cmsgpack.unpack(ARGV[a + 3])
  read_after, floors, prefix = tonumber(rules[1]), rules[2], rules[3]
  day_ms, day, fold_ms = rules[5], rules[6], tonumber(rules[7])
  DIRTY, FOLDS = prefix .. 'edirty', prefix .. 'efold'

  -- The hot path: the session's accumulator on this version, its fold not due yet.
  -- The clamp: no more than the time since the session's previous report plus the
  -- slack, never above the ceiling.
  if acc and not final and info[8] == version and now < info[7] then
    local add = math.min(ms, math.max(0, now - info[5]) + slack, ceiling)
    info[5] = now
    if add > 0 then
      if info[6] == 0 then redis.call('ZADD', FOLDS, info[7], sid .. artifact) end
      info[6] = info[6] + add
    end
    redis.call('HSET', I, sid, cmsgpack.pack(info))
    return
  end

  -- The fold: what the accumulator holds goes to its version's viewer (a version change,
  -- the fold due, a leave).
  local OB = KEYS[7]
  local base, mine
  if acc then
    if info[6] > 0 then
      mine = credit(OB, DIRTY, prefix, artifact, info[8], user, info[6], read_after,
        floors, day, day_ms)
      if info[8] ~= version then mine = nil end
    end
    base = info[5]
  end

  -- This report, on `version`: its first one is clamped from the viewer's last counted
  -- view of the version (what a page records when it opens; the entry just credited, if
  -- it was this version's).
  if not mine then
    local entry = redis.call('HGET', prefix .. 'vu:' .. artifact .. '/' .. version, user)
    if not entry then
      if acc then forget(I, FOLDS, sid, artifact, info) end
      return
    end
    mine = cmsgpack.unpack(entry)
  end
  local viewed = tonumber(mine[3])
  if not base or viewed > base then base = viewed end
  local add = math.min(ms, math.max(0, now - base) + slack, ceiling)
  if final or fold_ms == 0 then
    if add > 0 then
      credit(OB, DIRTY, prefix, artifact, version, user, add, read_after, floors, day,
        day_ms)
    end
    add = 0
  end
  if final then
    if acc then forget(I, FOLDS, sid, artifact, info) end
    return
  end
  -- A session's first fold falls somewhere in its first interval, by the session id's
  -- digest, the later ones an interval apart: sessions that started together (a class
  -- opening a document, a benchmark's seeding) fold spread over the interval, as
  -- sessions that started apart do.
  local due = now + fold_ms
  if not acc then due = now + math.floor(fold_ms * (string.byte(sid, 2) + 1) / 256) end
  local held = acc and info[6] or 0
  if info then
    info[4] = info[4] or 0
    info[5], info[6], info[7], info[8] = now, add, due, version
    redis.call('HSET', I, sid, cmsgpack.pack(info))
  else
    SESSION_ACC = {now, add, due, version}  -- the heartbeat's new record takes it
  end
  if add > 0 then
    redis.call('ZADD', FOLDS, due, sid .. artifact)
  elseif held > 0 then
    redis.call('ZREM', FOLDS, sid .. artifact)
  end
end
