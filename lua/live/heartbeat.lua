-- heartbeat.lua: upsert one session and return the artifact's online counts.
-- KEYS and ARGV[1..4] as in lib/writer.lua (artifact, channel, timeout, retention), then
-- ARGV[5] session id (packed)  ARGV[6] user id  ARGV[7] version id ('' keeps the current
-- one)  ARGV[8] state as JSON text ('' keeps it)
-- returns {online_users, online_sessions[, 1 if the session (re)joined]}, or {-1} if the
-- session belongs to another user (the flag tells the service to write the where-now index)
-- A heartbeat that only refreshes an online session publishes nothing, and writes
-- nothing but the session's score unless the artifact's due draws near.

-- The fast path, almost every heartbeat: an online session of this user beats again with
-- nothing new, no session to settle, and the artifact's due still far. It runs before the
-- helpers below are defined (defining them costs Redis an allocation each, every call)
-- and writes only the score; anything else falls through to the full path, which looks
-- at everything again (nothing has been written yet).
--! include lib/now.lua
do
  local Z, I, D = KEYS[1], KEYS[2], KEYS[3]
  local sid, user, version, state = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
  local timeout = tonumber(ARGV[3])
  local now = NOW
  local limit = now - timeout
  local mark = redis.call('HGET', I, '~w')
  local settled = mark and tonumber(mark) >= limit
  if not settled then
    local low = mark and ('(' .. mark) or '-inf'
    settled = #redis.call('ZRANGEBYSCORE', Z, low, limit, 'LIMIT', 0, 1) == 0
  end
  local raw = settled and redis.call('HGET', I, sid)
  if raw then
    local info = cmsgpack.unpack(raw)
    local score = redis.call('ZSCORE', Z, sid)
    local due = redis.call('ZSCORE', D, ARGV[1])
    if info[1] == user and info[4] == nil
      and (version == '' or version == info[2]) and (state == '' or state == info[3])
      and score and tonumber(score) > limit
      and due and tonumber(due) >= now + math.floor(timeout / 3) then
      redis.call('ZADD', Z, now, sid)
      return {tonumber(redis.call('HGET', I, '~n') or '0'), redis.call('ZCOUNT', Z, '(' .. limit, '+inf')}
    end
  end
end

--! include lib/writer.lua
local sid, user, version, state = ARGV[5], ARGV[6], ARGV[7], ARGV[8]

local raw = redis.call('HGET', I, sid)
local info
local was_online = false
if raw then
  info = cmsgpack.unpack(raw)
  if info[1] ~= user then return {-1} end
  local score = redis.call('ZSCORE', Z, sid)
  was_online = score ~= false and tonumber(score) > limit
else
  info = {user, '', ''}
end

-- A heartbeat inside a grace leave (a reload) clears the flag silently.
local dirty = not raw or info[4] == 1
local moved = false
if version ~= '' and version ~= info[2] then info[2] = version; moved = true end
if state ~= '' and state ~= info[3] then info[3] = state; moved = true end
info[4] = nil
if dirty or moved then redis.call('HSET', I, sid, cmsgpack.pack(info)) end

if not was_online then
  local mine = user_joined(I, user)
  if mine == 1 then
    events[#events + 1] = {'join', user, info[2], info[3], now}
  else
    events[#events + 1] = {'sessions', user, mine}
  end
elseif moved then
  events[#events + 1] = {'state', user, info[2], info[3]}
end

redis.call('ZADD', Z, now, sid)
-- A session (re)joining can make the artifact due sooner and may have created keys (so
-- they need their TTL); a refresh only rewrites the due when it draws near.
if not was_online or due_soon(D, artifact, now, timeout) then
  schedule(Z, I, D, artifact, limit, timeout, retention)
end
local online, sessions = counts(Z, I, limit)
publish(channel, events, online, sessions)
if not was_online then return {online, sessions, 1} end
return {online, sessions}
