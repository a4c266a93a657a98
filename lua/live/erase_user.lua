-- erase_user.lua: remove every session (online or stale) of one user from one artifact,
-- and the user from its recently-here list.
-- KEYS and ARGV[1..4] as in lib/writer.lua (artifact, channel, timeout, retention), then
-- ARGV[5] user id
-- returns the number of sessions removed. Cost is the artifact's session count: this is
-- the rare erase path (DELETE /v1/users/{id}), never the hot one.
--! include lib/now.lua
--! include lib/writer.lua
local user = ARGV[5]

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
recent_back(user) -- and out of the artifact's recently-here list (lib/recent.lua)
schedule(Z, I, D, artifact, limit, timeout, retention)
local online, sessions = counts(Z, I, limit)
publish(channel, events, online, sessions)
return removed
