-- heartbeat.lua: upsert one session and return the artifact's online counts.
-- KEYS and ARGV[1..8] as in lib/writer.lua, then
-- ARGV[9] session id (packed)  ARGV[10] user id  ARGV[11] version id ('' keeps the current
-- one)  ARGV[12] state as JSON text ('' keeps it)  ARGV[13] '1' away, '' active
-- ARGV[14] '1' the user's presence is hidden (counted, never listed or announced: see
-- lib/hidden.lua), '' visible
-- returns {online_users, online_sessions, active_users[, 1 if the session (re)joined]},
-- or {-1} if the session belongs to another user (the flag tells the service to note
-- the session in the user's where-now index). The session's deadline becomes now + the
-- timeout of its status.
-- A heartbeat that only refreshes an online session publishes nothing, and writes
-- nothing but the session's deadline unless the artifact's due draws near.

-- The fast path, almost every heartbeat: an online session of this user beats again with
-- nothing new (status included), no session to settle, and the artifact's due still
-- far. It runs before the helpers below are defined (defining them costs Redis an
-- allocation each, every call) and writes only the score; anything else falls through to
-- the full path, which looks at everything again (nothing has been written yet).
--! include lib/now.lua
--! include lib/session_record.lua
do
  local Z, I, D = KEYS[1], KEYS[2], KEYS[4]
  local sid, user, version, state = ARGV[9], ARGV[10], ARGV[11], ARGV[12]
  local timeout = tonumber(ARGV[3])
  local away = ARGV[13] == '1'
  local flags = (away and 2 or 0) + (ARGV[14] == '1' and 4 or 0)
  local now = NOW
  local mark = redis.call('HGET', I, '~w')
  local settled = mark and tonumber(mark) >= now
  if not settled then
    local low = mark and ('(' .. mark) or '-inf'
    settled = #redis.call('ZRANGEBYSCORE', Z, low, now, 'LIMIT', 0, 1) == 0
  end
  local raw = settled and SESSION_RAW  -- read already by an engaged report, or nil
  if raw == nil then raw = redis.call('HGET', I, sid) end
  if raw then
    local info = SESSION_INFO or cmsgpack.unpack(raw)
    local score = redis.call('ZSCORE', Z, sid)
    local due = redis.call('ZSCORE', D, ARGV[1])
    if info[1] == user and (info[4] or 0) == flags
      and (version == '' or version == info[2]) and (state == '' or state == info[3])
      and score and tonumber(score) > now
      and due and tonumber(due) >= now + math.floor(timeout / 3) then
      redis.call('ZADD', Z, now + (away and tonumber(ARGV[5]) or timeout), sid)
      local meta = redis.call('HMGET', I, '~n', '~a', user)
      -- A user with several sessions here: this one may now be their latest, whose
      -- version and state their presence row shows, so kept pages go (lib/pagemark.lua).
      if meta[3] and cmsgpack.unpack(meta[3])[1] > 1
        and redis.call('HINCRBY', I, '~c', 1) == 1 then
        redis.call('HSET', I, '~c', string.format('%.0f', now * 1000))
      end
      return {tonumber(meta[1] or '0'), redis.call('ZCOUNT', Z, '(' .. now, '+inf'),
        tonumber(meta[2] or '0')}
    end
  end
end

--! include lib/writer.lua
local sid, user, version, state = ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local away = ARGV[13] == '1'
local hidden = ARGV[14] == '1'

local raw = redis.call('HGET', I, sid)
local info
local counted = false
if raw then
  info = cmsgpack.unpack(raw)
  if info[1] ~= user then return refused() end
  local score = redis.call('ZSCORE', Z, sid)
  local mark = redis.call('HGET', I, '~w')
  counted = score ~= false and (not mark or tonumber(score) > tonumber(mark))
else
  info = {user, '', ''}
  -- an engaged report started the session's accumulator (lib/session_record.lua)
  if SESSION_ACC then
    info[4], info[5], info[6], info[7], info[8] = 0, unpack(SESSION_ACC)
  end
end

-- A heartbeat inside a grace leave (a reload) clears the flag silently.
local was_away = raw ~= nil and raw ~= false and is_away(info)
local was_hidden = raw ~= nil and raw ~= false and is_hidden(info)
local dirty = not raw or is_leaving(info) or was_away ~= away or was_hidden ~= hidden
local moved = false
if version ~= '' and version ~= info[2] then info[2] = version; moved = true end
if state ~= '' and state ~= info[3] then info[3] = state; moved = true end
set_flags(info, away, false, hidden)
if dirty or moved then redis.call('HSET', I, sid, cmsgpack.pack(info)) end

-- Whether `user` has a counted visible session besides `sid`: then turning `sid` hidden
-- (or visible) changes nothing others see, the user stays (or already was) listed. Only
-- runs when a session's hidden flag flips, which a privacy change does once per session.
local function visible_elsewhere(user, sid)
  local entry = user_entry(I, user)
  local others, infos = {}, {}
  if entry and entry[4] then  -- a large room: the user's list of counted sessions
    for i = 1, #entry[4], 9 do
      local other = string.sub(entry[4], i, i + 8)
      if other ~= sid then others[#others + 1] = other end
    end
    if #others > 0 then
      local raws = redis.call('HMGET', I, unpack(others))
      for n, other in ipairs(others) do
        if raws[n] then infos[other] = cmsgpack.unpack(raws[n]) end
      end
    end
  else
    local room = small_room(Z, I)
    for _, other in ipairs(room.sessions[user] or {}) do
      if other ~= sid then others[#others + 1] = other end
    end
    infos = room.infos
  end
  return listed(others, infos)
end

local status = away and 'away' or 'active'
if hidden then
  -- Counted like any session, announced never (lib/hidden.lua); a counted session that
  -- just turned hidden leaves the list as if it left.
  if not counted then
    user_joined(I, U, user, sid, away, true)
    quietly()
  else
    if was_away ~= away and user_status(I, user, away) then quietly() end
    if not was_hidden and not visible_elsewhere(user, sid) then
      redis.call('ZREM', U, user)
      events[#events + 1] = {'leave', user, 'left'}
    end
  end
elseif counted and was_hidden then
  -- Visible again: into the list (and U, in a large room) as a join, unless another
  -- visible session of the user had them listed already.
  if was_away ~= away then user_status(I, user, away) end
  if not visible_elsewhere(user, sid) then
    local entry = user_entry(I, user)
    if entry and redis.call('HEXISTS', I, '~L') == 1 then
      redis.call('ZADD', U, 'NX', entry[3], user)
    end
    events[#events + 1] = {'join', user, info[2], info[3], now, status}
  end
elseif not counted then
  local mine, changed = user_joined(I, U, user, sid, away)
  if mine == 1 then
    events[#events + 1] = {'join', user, info[2], info[3], now, status}
  else
    events[#events + 1] = {'sessions', user, mine}
    if changed then events[#events + 1] = {'state', user, info[2], info[3], status} end
  end
else
  local changed = was_away ~= away and user_status(I, user, away)
  if moved or changed then
    local entry = user_entry(I, user)
    events[#events + 1] = {'state', user, info[2], info[3],
      entry and entry[2] > 0 and 'active' or 'away'}
  end
end

redis.call('ZADD', Z, now + (away and away_timeout or timeout), sid)
-- A session (re)joining can make the artifact due sooner and may have created keys (so
-- they need their TTL); a refresh only rewrites the due when it draws near.
if not counted or not settled or due_soon(D, artifact, now, timeout) then
  schedule(Z, I, U, D, artifact, now, settled, timeout, longest, retention)
end
local online, sessions, active = counts(Z, I, now)
publish(channel, events, online, sessions, active)
if not counted then return {online, sessions, active, 1} end
return {online, sessions, active}
