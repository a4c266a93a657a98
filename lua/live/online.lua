-- online.lua: online counts of several artifacts of one partition in one call.
-- KEYS[2i-1] Z sessions zset, KEYS[2i] I session info and per-user count hash of the
-- i-th artifact (all in one hash slot)
-- ARGV[1] online timeout (ms)
-- returns {users_1, sessions_1, users_2, sessions_2, ...}; read-only
--! include lib/now.lua
--! include lib/reads.lua

local limit = NOW - tonumber(ARGV[1])
local since = '(' .. limit
local out = {}
for i = 1, #KEYS, 2 do
  local Z, I = KEYS[i], KEYS[i + 1]
  out[#out + 1] = online_users(Z, I, limit)
  out[#out + 1] = redis.call('ZCOUNT', Z, since, '+inf')
end
return out
