-- note_view.lua: what a view notes on the USER's slot, beside record_view.lua on the
-- artifact's slot (both in one round trip): the user's views index, which erasure walks,
-- and the user's "recently viewed" list, moved to the top at Redis's clock here.
-- KEYS[1] the user's views index set ('<artifact>/<version>')
-- KEYS[2] recent zset artifact -> last view (ms)  KEYS[3] recent hash artifact -> version
-- ARGV[1] artifact id  ARGV[2] version id  ARGV[3] recent entries kept
-- ARGV[4] TTL (ms) of an idle user's recent list
-- An older time never overwrites a newer one (ZADD GT), so a replayed call is harmless;
-- the list keeps only the most recent ARGV[3] artifacts.
-- returns {1 if the version is new to the index else 0, 1 if the recent entry moved else 0}
--! include lib/now.lua

local noted = redis.call('SADD', KEYS[1], ARGV[1] .. '/' .. ARGV[2])
local moved = redis.call('ZADD', KEYS[2], 'GT', 'CH', NOW, ARGV[1])
if moved == 1 then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
  local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
  if extra > 0 then
    local dropped = redis.call('ZRANGE', KEYS[2], 0, extra - 1)
    redis.call('ZREMRANGEBYRANK', KEYS[2], 0, extra - 1)
    redis.call('HDEL', KEYS[3], unpack(dropped))
  end
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return {noted, moved}
