-- lib/presence.lua: helpers shared by the presence writers (through lib/writer.lua).
--
-- Data model of one artifact (see docs/data-model.md):
--   Z  zset  session id -> deadline (ms): when the session goes offline unless it beats
--            again (last heartbeat + the online or the away timeout; sooner while a grace
--            leave runs)
--   I  hash  session id -> msgpack {userId, versionId, stateJson[, flags[, lastReport,
--            pendingMs, foldDue, accVersion]]}; flags (bits): 1 a grace leave runs, 2 away,
--            4 hidden (the user's presence is invisible: counted, never listed or
--            announced; absent: active, not leaving, visible); then, while the session
--            holds one, its engaged-time accumulator (lib/engage.lua; flags 0, not absent)
--            userId -> msgpack {n, active, join[, sids]}: the user's counted sessions,
--                      how many of them are active, the user's join number, and (in a
--                      large room only) their packed ids, 9 bytes each
--            '~n' users counted, '~a' of them active, '~j' the last join number
--            '~c' the page mark (lib/pagemark.lua): changed by every writer run that
--                 may change a presence page
--            '~w' the watermark: sessions whose deadline is <= it were taken out of the
--                 counts ("settled"); none until a session is first settled
--            '~L' 1 in a large room (I over LARGE_FIELDS fields, until under SMALL_FIELDS)
--            '~t' the timeline's minutes not rolled up yet, packed (lib/timeline.lua)
--   U  zset  userId -> join number: the counted users in the order they came; kept in a
--            large room only: a small room's page reads its whole (compact) hash instead.
--            A hidden user never enters it (lib/hidden.lua)
--   D  zset  (per partition) artifact id -> when the sweeper should next look (ms)
--   R  zset  user id -> lastSeen * 4 + reason: who was here recently (lib/recent.lua)
-- A session is counted from its join until it is settled; it is online while its
-- deadline is in the future. Session ids come packed by the service: '#' + an 8-byte
-- digest. User ids never start with '#' or '~', so no two kinds of field collide.
--! include lib/rooms.lua
--! include lib/recent.lua
--! include lib/timeline.lua
--! include lib/hidden.lua
--! include lib/counts.lua
--! include lib/pagemark.lua

local WATERMARK = '~w'
local SETTLE_STEP = 64
-- Sessions settled (or deleted, or scanned by an erase) per script run at most, plus those
-- sharing the last one's deadline: a room of 20 000 timing out at once is settled in
-- steps of well under a millisecond each.
local LARGE_FIELDS = 128
local SMALL_FIELDS = 64

local function is_away(info) return info[4] ~= nil and bit.band(info[4], 2) ~= 0 end
local function is_leaving(info) return info[4] ~= nil and bit.band(info[4], 1) ~= 0 end

-- info[4] from the flags (nil when all are off: one msgpack byte less; 0 when an
-- engaged-time accumulator follows, elements 5-8, lib/engage.lua: no hole in the array).
local function set_flags(info, away, leaving, hidden)
  local flags = (away and 2 or 0) + (leaving and 1 or 0) + (hidden and 4 or 0)
  if flags == 0 and info[5] == nil then info[4] = nil else info[4] = flags end
end

local function user_entry(I, user)
  local raw = redis.call('HGET', I, user)
  if not raw then return nil end
  return cmsgpack.unpack(raw)
end

local function drop_count(I, field)
  if redis.call('HINCRBY', I, field, -1) <= 0 then redis.call('HDEL', I, field) end
end

-- A new counted session `sid` of `user`. Returns how many the user has now and whether
-- the user's status changed ('join' on the first one).
local function user_joined(I, U, user, sid, away, hidden)
  local entry = user_entry(I, user)
  local large = redis.call('HEXISTS', I, '~L') == 1
  if not entry then
    entry = {0, 0, redis.call('HINCRBY', I, '~j', 1)}
    redis.call('HINCRBY', I, '~n', 1)
    recent_back(user) -- online again: not "recently here" (lib/recent.lua)
    if large then entry[4] = '' end
  end
  -- NX: a user already listed keeps their place; one whose sessions were all hidden
  -- until now comes in with their join number.
  if large and not hidden then redis.call('ZADD', U, 'NX', entry[3], user) end
  local was_active = entry[2] > 0
  entry[1] = entry[1] + 1
  if not away then entry[2] = entry[2] + 1 end
  if large then entry[4] = (entry[4] or '') .. sid end
  redis.call('HSET', I, user, cmsgpack.pack(entry))
  if not away and not was_active then redis.call('HINCRBY', I, '~a', 1) end
  return entry[1], (entry[1] > 1) and (was_active ~= (entry[2] > 0))
end

-- Counted session `sid` of `user` goes (left, timed out, erased). Returns how many the
-- user has left (0: offline) and whether the user's status changed while staying online.
local function user_left(I, U, user, sid, away)
  local entry = user_entry(I, user)
  if not entry then return 0, false end
  local was_active = entry[2] > 0
  entry[1] = entry[1] - 1
  if not away and entry[2] > 0 then entry[2] = entry[2] - 1 end
  if entry[1] <= 0 then
    redis.call('HDEL', I, user)
    redis.call('ZREM', U, user)
    drop_count(I, '~n')
    if was_active then drop_count(I, '~a') end
    return 0, false
  end
  local sids = entry[4]
  if sids then
    for i = 1, #sids, 9 do
      if string.sub(sids, i, i + 8) == sid then
        entry[4] = string.sub(sids, 1, i - 1) .. string.sub(sids, i + 9)
        break
      end
    end
  end
  redis.call('HSET', I, user, cmsgpack.pack(entry))
  if was_active and entry[2] == 0 then drop_count(I, '~a') end
  return entry[1], was_active and entry[2] == 0
end

-- A counted session changes status (a heartbeat said active or away). Returns whether the
-- user's status changed.
local function user_status(I, user, away)
  local entry = user_entry(I, user)
  if not entry then return false end
  local was_active = entry[2] > 0
  if away then entry[2] = math.max(0, entry[2] - 1) else entry[2] = entry[2] + 1 end
  redis.call('HSET', I, user, cmsgpack.pack(entry))
  local active = entry[2] > 0
  if active and not was_active then redis.call('HINCRBY', I, '~a', 1) end
  if was_active and not active then drop_count(I, '~a') end
  return active ~= was_active
end

-- Keep the room's mode: over LARGE_FIELDS hash fields a room gets U and each user's list
-- of sessions (built from its hash, still under 2 x LARGE_FIELDS fields: bounded); under
-- SMALL_FIELDS it drops them again. The gap keeps a room at the border from flapping.
local function fit(Z, I, U)
  local fields = redis.call('HLEN', I)
  local large = redis.call('HEXISTS', I, '~L') == 1
  if not large and fields > LARGE_FIELDS then
    redis.call('HSET', I, '~L', 1)
    local room = small_room(Z, I)
    local by_user, all = room.sessions, room.all
    for i = 1, #all, 2 do
      local field = all[i]
      local first = string.byte(field)
      if first ~= 35 and first ~= 126 then  -- a user ('#' sessions, '~' counters)
        local entry = cmsgpack.unpack(all[i + 1])
        entry[4] = table.concat(by_user[field] or {})
        redis.call('HSET', I, field, cmsgpack.pack(entry))
        if listed(by_user[field], room.infos) then redis.call('ZADD', U, entry[3], field) end
      end
    end
  elseif large and fields < SMALL_FIELDS then
    for _, user in ipairs(redis.call('ZRANGE', U, 0, -1)) do
      local entry = user_entry(I, user)
      if entry then
        entry[4] = nil
        redis.call('HSET', I, user, cmsgpack.pack(entry))
      end
    end
    redis.call('DEL', U)
    redis.call('HDEL', I, '~L')
  end
end

-- The info of one of `user`'s remaining counted sessions, for a status event.
local function some_session(Z, I, U, user)
  local entry = user_entry(I, user)
  local sid = entry and entry[4] and string.sub(entry[4], 1, 9)
  if entry and not sid then
    local list = small_room(Z, I).sessions[user]
    sid = list and list[1]
  end
  local raw = sid and redis.call('HGET', I, sid)
  return raw and cmsgpack.unpack(raw) or {user, '', ''}
end

-- When a counted session going at `now` with deadline `deadline` was last seen: now for a
-- leave, when its grace ran out for a grace leave, else at its last heartbeat (its
-- deadline less its status's timeout, as the presence rows say).
local function last_seen(info, deadline, now, timeout, away_timeout)
  if deadline > now then return now end
  if is_leaving(info) then return deadline end
  return deadline - (is_away(info) and away_timeout or timeout)
end

-- Events for a counted session `sid` (`info`) that went: leave, sessions, or state. The
-- user's last one puts them in the recently-here list as last seen at `seen` (nil: an
-- erasure, not kept).
local function session_gone(Z, I, U, sid, info, reason, events, seen)
  local user = info[1]
  local mine, changed = user_left(I, U, user, sid, is_away(info))
  if is_hidden(info) then
    -- counted, never announced (lib/hidden.lua); kept in R for the user's own where-now,
    -- which the recently-here pages leave out (the service filters them by the setting)
    quietly()
    if mine == 0 and seen then recent_left(user, seen, reason) end
  elseif mine == 0 then
    events[#events + 1] = {'leave', user, reason}
    if seen then recent_left(user, seen, reason) end
  else
    events[#events + 1] = {'sessions', user, mine}
    if changed then
      local other = some_session(Z, I, U, user)
      events[#events + 1] = {'state', user, other[2], other[3], 'away'}
    end
  end
end

-- Settle the sessions whose deadline passed (<= now) since the watermark, at most about
-- SETTLE_STEP of them; appends their events. Returns true when none is left to settle.
local function settle(Z, I, U, now, events, timeout, away_timeout)
  local mark = redis.call('HGET', I, WATERMARK)
  local low = '-inf'
  if mark then
    if tonumber(mark) >= now then return true end
    low = '(' .. mark
  end
  local expired = redis.call('ZRANGEBYSCORE', Z, low, now, 'WITHSCORES', 'LIMIT', 0, SETTLE_STEP)
  local done = #expired < 2 * SETTLE_STEP
  local upto = now
  local sids, deadlines = {}, {}
  if not done then
    -- Stop at the last deadline, taking every session that shares it, so the watermark
    -- can move there (as many as Redis can write in one millisecond, at most).
    upto = tonumber(expired[#expired])
  end
  for i = 1, #expired, 2 do
    local deadline = tonumber(expired[i + 1])
    if done or deadline < upto then
      sids[#sids + 1] = expired[i]
      deadlines[#sids] = deadline
    end
  end
  if not done then
    for _, sid in ipairs(redis.call('ZRANGEBYSCORE', Z, upto, upto)) do
      sids[#sids + 1] = sid
      deadlines[#sids] = upto
    end
  end
  for n, sid in ipairs(sids) do
    local raw = redis.call('HGET', I, sid)
    if raw then
      local info = cmsgpack.unpack(raw)
      local seen = last_seen(info, deadlines[n], now, timeout, away_timeout)
      session_gone(Z, I, U, sid, info, is_leaving(info) and 'left' or 'timeout', events, seen)
    end
  end
  -- None yet: nothing was settled, as every reader takes it (no deadline is ever set at or
  -- below a run's now, so a mark written now would settle nothing either).
  if #sids > 0 then redis.call('HSET', I, WATERMARK, upto) end
  COUNTS.settled = done -- lib/counts.lua
  return done
end

-- How long every key of an artifact (and the partition's index) lives after `schedule`
-- last rewrote the artifact's due: retention + 2 x the longer timeout. A heartbeat
-- rewrites the due at the latest when it is less than timeout / 3 away, and the stored due
-- is at most one timeout after that write while a session is online, so the keys always
-- outlive the last heartbeat by retention + timeout.
local function key_ttl(longest, retention)
  return retention + 2 * longest
end

local function touch(ttl, ...)
  for _, key in ipairs({...}) do redis.call('PEXPIRE', key, ttl) end
end

-- Point the partition's sweep index at the artifact's next deadline: its first online
-- session's deadline, or its oldest stale session's end of retention (retention - timeout
-- after its deadline: retention after the last heartbeat of an active session), or now while
-- sessions are left to settle; and renew the TTL of the artifact's keys and of the index.
-- An artifact without sessions has no keys.
local function schedule(Z, I, U, D, artifact, now, settled, timeout, longest, retention)
  local oldest = redis.call('ZRANGE', Z, 0, 0, 'WITHSCORES')
  if #oldest == 0 then
    timeline_spill() -- lib/timeline.lua: the minutes the info hash holds outlive it
    redis.call('DEL', I, U)
    redis.call('ZREM', D, artifact)
    counts_forget() -- lib/counts.lua
    return
  end
  fit(Z, I, U)
  local score = tonumber(oldest[2])
  local due
  if not settled then
    due = now
  elseif score > now then
    due = score
    COUNTS.first = oldest[2] -- lib/counts.lua: the first online deadline
  else
    due = score + retention - timeout
    local online = redis.call('ZRANGEBYSCORE', Z, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if #online > 0 then due = math.min(due, tonumber(online[2])) end
    COUNTS.first = online[2] or false
  end
  redis.call('ZADD', D, due, artifact)
  touch(key_ttl(longest, retention), Z, I, U, D, KEYS[10]) -- KEYS[10]: lib/counts.lua
end

-- Whether a heartbeat that only refreshed an online session must rewrite the due. A
-- refresh only moves a deadline later, so the stored due can only be earlier than needed
-- (the sweeper would look once for nothing): rewrite it only when it is near, so the
-- sweeper is not woken for a session that is still beating, and the TTLs get renewed.
local function due_soon(D, artifact, now, timeout)
  local due = redis.call('ZSCORE', D, artifact)
  return not due or tonumber(due) < now + math.floor(timeout / 3)
end

-- {users, sessions, active users} once everything due is settled; also kept in the
-- partition's counts hash for batch reads (lib/counts.lua).
local function counts(Z, I, now)
  local meta = redis.call('HMGET', I, '~n', '~a')
  local users, active = tonumber(meta[1] or '0'), tonumber(meta[2] or '0')
  local sessions = redis.call('ZCOUNT', Z, '(' .. now, '+inf')
  counts_keep(Z, I, users, sessions, active)
  return users, sessions, active
end

-- One message per script run that changed who is online: {online, sessions, events,
-- active}; events empty when only hidden sessions changed the counts. While the
-- partition's outbox stream exists (the webhook dispatcher creates it
-- when an endpoint exists), the same change is appended there too, durably:
-- field 'm' = msgpack {artifact, online, sessions, events, active, now, online before}:
-- the users online before this run (lib/writer.lua reads them first), so occupied and
-- vacated follow the counts even when hidden sessions announce nothing.
local OUTBOX = {before = nil}  -- before: set by lib/writer.lua while the outbox exists
local function publish(channel, events, online, sessions, active)
  local keys = page_mark_bump() -- lib/pagemark.lua: any page built before this run is out of date
  if #events == 0 and not QUIET.changed then return end
  timeline_note(online, sessions, keys) -- lib/timeline.lua
  redis.call('PUBLISH', channel, cmsgpack.pack({online, sessions, events, active}))
  if OUTBOX.before ~= nil then
    redis.call('XADD', KEYS[7], '*', 'm',
      cmsgpack.pack({ARGV[1], online, sessions, events, active, NOW, OUTBOX.before}))
  end
end
