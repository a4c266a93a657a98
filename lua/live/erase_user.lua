-- erase_user.lua: remove the sessions (online or stale) of one user from one artifact,
-- one bounded step of a scan of the artifact's sessions, and the user from its
-- recently-here list.
-- KEYS and ARGV[1..8] as in lib/writer.lua, then
-- ARGV[9] user id  ARGV[10] ZSCAN cursor ('0' to start)
-- returns {sessions removed, next cursor ('0': done)}. The caller repeats until the
-- cursor is '0': every session present throughout is visited (ZSCAN's guarantee).
--! include lib/now.lua
--! include lib/writer.lua
local user, cursor = ARGV[9], ARGV[10]

local removed = 0
local scan = redis.call('ZSCAN', Z, cursor, 'COUNT', SETTLE_STEP)
local mark = tonumber(redis.call('HGET', I, '~w') or '-1')
local sids = {}
for i = 1, #scan[2], 2 do sids[#sids + 1] = scan[2][i] end
if #sids > 0 then
  local infos = redis.call('HMGET', I, unpack(sids))
  for n, raw in ipairs(infos) do
    if raw then
      local info = cmsgpack.unpack(raw)
      if info[1] == user then
        local score = tonumber(redis.call('ZSCORE', Z, sids[n]) or '0')
        redis.call('ZREM', Z, sids[n])
        redis.call('HDEL', I, sids[n])
        if score > mark then session_gone(Z, I, U, sids[n], info, 'left', events) end
        removed = removed + 1
      end
    end
  end
end
recent_back(user) -- and out of the artifact's recently-here list (lib/recent.lua)
schedule(Z, I, U, D, artifact, now, settled, timeout, longest, retention)
local online, sessions, active = counts(Z, I, now)
publish(channel, events, online, sessions, active)
return {removed, scan[1]}
