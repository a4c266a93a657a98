-- sweep.lua: garbage-collect one artifact the sweep index says is due.
-- KEYS and ARGV as in lib/writer.lua (artifact, channel, timeout, retention)
-- Timed-out sessions leave the counts (a 'leave' with reason 'timeout', or 'left' after a
-- grace leave); sessions silent for longer than the retention are deleted; an artifact
-- left with no session has no keys left.
-- returns {online_users, online_sessions, sessions_deleted}
--! include lib/now.lua
--! include lib/writer.lua

local old = redis.call('ZRANGEBYSCORE', Z, '-inf', now - retention)
if #old > 0 then
  redis.call('ZREMRANGEBYSCORE', Z, '-inf', now - retention)
  for i = 1, #old, 1000 do
    redis.call('HDEL', I, unpack(old, i, math.min(i + 999, #old)))
  end
end

if redis.call('ZCARD', Z) == 0 then
  redis.call('DEL', Z, I)
  redis.call('ZREM', D, artifact)
  publish(channel, events, 0, 0)
  return {0, 0, #old}
end

schedule(Z, I, D, artifact, limit, timeout, retention)
local online, sessions = counts(Z, I, limit)
publish(channel, events, online, sessions)
return {online, sessions, #old}
