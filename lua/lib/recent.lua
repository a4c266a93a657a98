-- lib/recent.lua: who was on an artifact recently and is offline now (?include=recent),
-- kept by the presence writers (included by lib/presence.lua).
-- The writers pass these LAST, after every key and argument of their own, so the
-- numbering of the others never moves:
--   KEYS[#KEYS - 1] R   zset  user id -> lastSeen (ms) * 4 + reason (1 left, 2 timeout):
--                              the users whose last session went, newest first
--   KEYS[#KEYS]     RD  zset  (per partition) artifact id -> when its R expires (ms):
--                              how erasure finds an R whose artifact has no session left
--   ARGV[#ARGV - 1] how long an entry is kept (ms)  ARGV[#ARGV] entries kept at most
-- A user leaves R when a session of theirs comes back (user_joined) or they are erased.
-- Each write trims R by age and by count, so R never holds more than the cap, and renews
-- its TTL (and its RD entry) to the keep time: R outlives the artifact's other keys by
-- that much at most.

local R, RD = KEYS[#KEYS - 1], KEYS[#KEYS]
local RECENT_MS, RECENT_KEEP = tonumber(ARGV[#ARGV - 1]), tonumber(ARGV[#ARGV])

-- `user`'s last online session on the artifact went at `seen` (ms) for `reason`.
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

-- `user` is online again (or erased): no longer "recently here".
local function recent_back(user)
  redis.call('ZREM', R, user)
end
