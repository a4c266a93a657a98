-- release.lua: give a lease back if we still hold it (on clean shutdown).
-- KEYS[1] lease key  ARGV[1] owner id
-- returns 1 if released, 0 if someone else holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
