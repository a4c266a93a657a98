-- online.lua: online counts of several artifacts of one partition in one call.
-- KEYS[2i-1] Z sessions zset, KEYS[2i] I session info and per-user hash of the i-th
-- artifact (all in one hash slot)
-- returns {users_1, sessions_1, active_1, users_2, ...}; read-only
--! include lib/now.lua
--! include lib/reads.lua

local since = '(' .. NOW
local out = {}
for i = 1, #KEYS, 2 do
  local Z, I = KEYS[i], KEYS[i + 1]
  local users, active = online_users(Z, I, NOW)
  out[#out + 1] = users
  out[#out + 1] = redis.call('ZCOUNT', Z, since, '+inf')
  out[#out + 1] = active
end
return out
