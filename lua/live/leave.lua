-- leave.lua: take one session offline and return the artifact's online counts.
-- KEYS and ARGV[1..4] as in lib/writer.lua (artifact, channel, timeout, retention), then
-- ARGV[5] session id (packed)  ARGV[6] user id  ARGV[7] grace (ms): 0 leaves at once;
--         > 0 marks the session leaving so it goes offline after the grace unless a
--         heartbeat of the same session arrives first (a reload)
-- returns {online_users, online_sessions}, or {-1} if the session belongs to another user
-- Leaving an unknown or already offline session changes nothing.
--! include lib/now.lua
--! include lib/writer.lua
local sid, user, grace = ARGV[5], ARGV[6], tonumber(ARGV[7])

local raw = redis.call('HGET', I, sid)
if raw then
  local info = cmsgpack.unpack(raw)
  if info[1] ~= user then return {-1} end
  local score = redis.call('ZSCORE', Z, sid)
  if score ~= false and tonumber(score) > limit then
    if grace > 0 then
      -- Backdate the session so it times out when the grace ends; the flag makes that
      -- timeout a 'left'. A heartbeat inside the grace restores it silently.
      info[4] = 1
      redis.call('HSET', I, sid, cmsgpack.pack(info))
      redis.call('ZADD', Z, math.min(tonumber(score), limit + grace), sid)
    else
      redis.call('ZREM', Z, sid)
      redis.call('HDEL', I, sid)
      local mine = user_left(I, user)
      if mine == 0 then
        events[#events + 1] = {'leave', user, 'left'}
        recent_left(user, now, 'left') -- lib/recent.lua
      else
        events[#events + 1] = {'sessions', user, mine}
      end
    end
  else
    redis.call('ZREM', Z, sid)
    redis.call('HDEL', I, sid)
  end
  schedule(Z, I, D, artifact, limit, timeout, retention)
end

local online, sessions = counts(Z, I, limit)
publish(channel, events, online, sessions)
return {online, sessions}
