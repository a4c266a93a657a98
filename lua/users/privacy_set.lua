-- privacy_set.lua: mirror one user's privacy settings into the hidden-users hash every
-- API process keeps a copy of (presence_svc/live/privacy.py), and bump its generation so
-- the processes reload it.
-- KEYS[1] hidden-users hash: user id -> flags (1 view history hidden, 2 presence hidden;
--         no field: both visible), '~g' the generation (bumped on every change)
-- ARGV[1] user id  ARGV[2] flags (0 removes the user)
-- returns the new generation
if tonumber(ARGV[2]) == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return redis.call('HINCRBY', KEYS[1], '~g', 1)
