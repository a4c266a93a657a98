-- sweep.lua: garbage-collect one artifact the sweep index says is due, one bounded step.
-- KEYS and ARGV as in lib/writer.lua
-- Sessions past their deadline leave the counts (a 'leave' with reason 'timeout', or
-- 'left' after a grace leave); settled sessions silent for longer than the retention are
-- deleted; an artifact left with no session has no keys left. Each run settles and
-- deletes at most about SETTLE_STEP sessions, so no run holds Redis for long.
-- returns {online_users, online_sessions, sessions_deleted, more}: more = 1 when work is
-- left (the artifact stays due now; the sweeper calls again)
--! include lib/now.lua
--! include lib/writer.lua

local mark = tonumber(redis.call('HGET', I, '~w') or '-1')
-- Retention runs from the last heartbeat of an active session: deleted `retention -
-- timeout` after its deadline.
local old = redis.call('ZRANGEBYSCORE', Z, '-inf', math.min(mark, now - retention + timeout),
  'LIMIT', 0, SETTLE_STEP)
if #old > 0 then
  redis.call('ZREM', Z, unpack(old))
  redis.call('HDEL', I, unpack(old))
end
local more = (not settled or #old == SETTLE_STEP) and 1 or 0

if redis.call('ZCARD', Z) == 0 then
  timeline_spill() -- lib/timeline.lua: the minutes the info hash holds outlive it
  redis.call('DEL', Z, I, U)
  redis.call('ZREM', D, artifact)
  counts_forget() -- lib/counts.lua
  publish(channel, events, 0, 0, 0)
  return {0, 0, #old, 0}
end

schedule(Z, I, U, D, artifact, now, more == 0, timeout, longest, retention)
local online, sessions, active = counts(Z, I, now)
publish(channel, events, online, sessions, active)
return {online, sessions, #old, more}
