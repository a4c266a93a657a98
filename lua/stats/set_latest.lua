-- set_latest.lua: mark the version of an artifact that people are expected to read.
-- KEYS[1] the artifact's latest-version hash (fields v: version id, at: when set, ms)
-- ARGV[1] version id (any valid id: a version need not have views yet)
-- returns now (ms), the time recorded as the version's setAt
--! include lib/now.lua

redis.call('HSET', KEYS[1], 'v', ARGV[1], 'at', NOW)
return NOW
