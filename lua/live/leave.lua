-- leave.lua: take one session offline and return the artifact's online counts.
-- KEYS and ARGV[1..8] as in lib/writer.lua, then
-- ARGV[9] session id (packed)  ARGV[10] user id  ARGV[11] grace (ms): 0 leaves at once;
--         > 0 marks the session leaving so it goes offline after the grace unless a
--         heartbeat of the same session arrives first (a reload)
-- returns {online_users, online_sessions, active_users}, or {-1} if the session belongs
-- to another user. Leaving an unknown or already offline session changes no count and
-- publishes nothing; an offline one's stale record (version, state) is deleted.
--! include lib/now.lua
--! include lib/writer.lua
local sid, user, grace = ARGV[9], ARGV[10], tonumber(ARGV[11])

local raw = redis.call('HGET', I, sid)
if raw then
  local info = cmsgpack.unpack(raw)
  if info[1] ~= user then return refused() end
  local score = tonumber(redis.call('ZSCORE', Z, sid) or '0')
  local mark = tonumber(redis.call('HGET', I, '~w') or '-1')
  if score > mark then  -- counted (online, or timed out and not settled yet)
    if grace > 0 and score > now then
      -- Bring the deadline forward to the end of the grace; the flag makes that timeout
      -- a 'left'. A heartbeat inside the grace restores the session silently.
      set_flags(info, is_away(info), true, is_hidden(info))
      redis.call('HSET', I, sid, cmsgpack.pack(info))
      redis.call('ZADD', Z, math.min(score, now + grace), sid)
    else
      redis.call('ZREM', Z, sid)
      redis.call('HDEL', I, sid)
      local seen = last_seen(info, score, now, timeout, away_timeout)
      session_gone(Z, I, U, sid, info, score > now and 'left' or 'timeout', events, seen)
    end
  else
    redis.call('ZREM', Z, sid)
    redis.call('HDEL', I, sid)
  end
  schedule(Z, I, U, D, artifact, now, settled, timeout, longest, retention)
end

local online, sessions, active = counts(Z, I, now)
publish(channel, events, online, sessions, active)
return {online, sessions, active}
