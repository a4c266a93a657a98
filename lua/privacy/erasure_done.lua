-- erasure_done.lua: mark an erasure complete; the job forgets the user id.
-- KEYS[1] the job hash  KEYS[2] the user's pending-erasure pointer
-- ARGV[1] how long the finished job is kept (ms)
-- returns the completion time (ms)
--! include lib/now.lua
redis.call('HDEL', KEYS[1], 'user', 'cursor')
redis.call('HSET', KEYS[1], 'status', 'complete', 'completed', NOW)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return NOW
