-- erasure_open.lua: open an erasure of a user, or find the one still pending (idempotent).
-- KEYS[1] the user's pending-erasure pointer  KEYS[2] the new job hash (user's slot)
-- ARGV[1] new erasure id  ARGV[2] user id  ARGV[3] tombstone
-- returns {erasure id, 1 if opened now else 0}
--! include lib/now.lua
local pending = redis.call('GET', KEYS[1])
if pending then return {pending, 0} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'status', 'pending', 'user', ARGV[2], 'tombstone', ARGV[3],
  'requested', NOW, 'step', 0, 'cursor', '')
return {ARGV[1], 1}
