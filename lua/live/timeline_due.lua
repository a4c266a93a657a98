-- timeline_due.lua: artifacts of one partition whose timeline has an hour that ended and
-- is not rolled up into the database yet.
-- KEYS[1] TI the partition's rollup index (lib/timeline.lua)
-- ARGV[1] the current hour (ms / 3600000): hours before it have ended  ARGV[2] at most
-- returns {artifact id, oldest hour not rolled up, ...}; read-only
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'WITHSCORES',
  'LIMIT', 0, tonumber(ARGV[2]))
