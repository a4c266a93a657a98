-- claim.lua: take or keep a lease (a lock with an expiry) on one partition's chore.
-- KEYS[1] lease key  ARGV[1] owner id  ARGV[2] lease time (ms)
-- returns 1 if the caller holds the lease now (newly taken or renewed), else 0.
-- A holder that dies stops renewing; its lease lapses and another worker takes it.
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
