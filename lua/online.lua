-- online.lua: online counts of several artifacts of one partition in one call.
-- KEYS[3i-2] Z sessions zset, KEYS[3i-1] I session info hash, KEYS[3i] U per-user
-- count hash of the i-th artifact (all in one hash slot)
-- ARGV[1] online timeout (ms)
-- returns {users_1, sessions_1, users_2, sessions_2, ...}; read-only
--! include lib/reads.lua

local limit = now_ms() - tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS, 3 do
  local Z, I, U = KEYS[i], KEYS[i + 1], KEYS[i + 2]
  local users = redis.call('HLEN', U)
  if users > 0 then users = users - unsettled_offline_users(Z, I, U, limit) end
  out[#out + 1] = users
  out[#out + 1] = redis.call('ZCOUNT', Z, '(' .. limit, '+inf')
end
return out
