-- erasure_take.lua: take a pending erasure for a while (a lease), if one is due.
-- KEYS[1] zset erasure id -> when a runner may take it next (ms)
-- ARGV[1] lease (ms)  ARGV[2] erasure id to take ('' any one that is due)
-- returns the erasure id taken, or false when none is due
-- A runner that dies leaves its lease to run out: another one takes the erasure over.
--! include lib/now.lua
local id = ARGV[2]
if id == '' then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', NOW, 'LIMIT', 0, 1)
  if #due == 0 then return false end
  id = due[1]
else
  local at = redis.call('ZSCORE', KEYS[1], id)
  if at and tonumber(at) > NOW then return false end
end
redis.call('ZADD', KEYS[1], NOW + tonumber(ARGV[1]), id)
return id
