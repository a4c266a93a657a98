-- lib/recent.lua: who was on an artifact recently and is offline now (?include=recent,
-- and where-now's "recent"), kept by the presence writers (included by lib/presence.lua).
--   KEYS[5] R   zset  user id -> lastSeen (ms) * 4 + reason (1 left, 2 timeout): the
--                     users whose last counted session went, newest first
--   KEYS[6] RD  zset  (per partition) artifact id -> when its R expires (ms): how erasure
--                     finds an R whose artifact has no session left
--   ARGV[6] how long an entry is kept (ms)  ARGV[7] entries kept at most
-- A user leaves R when a session of theirs is counted again (user_joined) or they are
-- erased. Each write trims R by age and by count, so R never holds more than the cap, and
-- renews its TTL (and its RD entry) to the keep time: R outlives the artifact's other
-- keys by that much at most.

local R, RD = KEYS[5], KEYS[6]
local RECENT_MS, RECENT_KEEP = tonumber(ARGV[6]), tonumber(ARGV[7])

-- `user`'s last counted session on the artifact went; they were last seen at `seen` (ms).
local function recent_left(user, seen, reason)
  local at = NOW
  local code = 0
  if reason == 'left' then code = 1 elseif reason == 'timeout' then code = 2 end
  redis.call('ZADD', R, seen * 4 + code, user)
  redis.call('ZREMRANGEBYSCORE', R, '-inf', '(' .. ((at - RECENT_MS) * 4))
  local extra = redis.call('ZCARD', R) - RECENT_KEEP
  if extra > 0 then redis.call('ZREMRANGEBYRANK', R, 0, extra - 1) end
  redis.call('PEXPIRE', R, RECENT_MS)
  redis.call('ZADD', RD, at + RECENT_MS, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', RD, '-inf', '(' .. at)
  redis.call('PEXPIRE', RD, RECENT_MS)
end

-- `user` is counted again (or erased): no longer "recently here".
local function recent_back(user)
  redis.call('ZREM', R, user)
end
