-- erase_user.lua: remove every session (online or stale) of one user from one artifact.
-- KEYS[1] Z sessions zset  KEYS[2] I session info and per-user count hash
-- KEYS[3] D partition sweep index
-- ARGV[1] artifact id  ARGV[2] event channel  ARGV[3] user id
-- ARGV[4] online timeout (ms)  ARGV[5] retention (ms)
-- returns the number of sessions removed. Cost is the artifact's session count: this is
-- the rare erase path (DELETE /v1/users/{id}), never the hot one.
--! include lib/presence.lua

local Z, I, D = KEYS[1], KEYS[2], KEYS[3]
local artifact, channel, user = ARGV[1], ARGV[2], ARGV[3]
local timeout, retention = tonumber(ARGV[4]), tonumber(ARGV[5])

local now = now_ms()
local limit = now - timeout
local events = {}
settle(Z, I, limit, events)

local removed = 0
local sids = redis.call('ZRANGE', Z, 0, -1)
for i = 1, #sids, 500 do
  local chunk = {unpack(sids, i, math.min(i + 499, #sids))}
  local infos = redis.call('HMGET', I, unpack(chunk))
  for n, raw in ipairs(infos) do
    if raw and cmsgpack.unpack(raw)[1] == user then
      redis.call('ZREM', Z, chunk[n])
      redis.call('HDEL', I, chunk[n])
      removed = removed + 1
    end
  end
end
if redis.call('HDEL', I, user) == 1 then
  if redis.call('HINCRBY', I, '~n', -1) <= 0 then redis.call('HDEL', I, '~n') end
  events[#events + 1] = {'leave', user, 'left'}
end
schedule(Z, I, D, artifact, limit, timeout, retention)
local online, sessions = counts(Z, I, limit)
publish(channel, events, online, sessions)
return removed
