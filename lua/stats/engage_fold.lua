-- engage_fold.lua: the worker's fold of the engaged-time accumulators whose fold is due
-- (sessions that stopped reporting: gone, timed out, or quiet), one bounded step of one
-- partition. A session still reporting folds its own at its next report
-- (lib/engage.lua); both are atomic, so whichever comes first credits the time once.
-- KEYS[1] FOLDS zset (per partition, lib/engage.lua)  KEYS[2] DIRTY zset (per partition)
-- KEYS[3] the partition's outbox stream (version.read, while it exists)
-- ARGV[1] read-after (ms)  ARGV[2] histogram bucket floors (s)  ARGV[3] the views key
-- prefix of the partition's tag ('vw:{T}:')  ARGV[4] the presence key prefix ('ps:{T}:')
-- ARGV[5] DAY's lifetime (ms)  ARGV[6] the UTC day  ARGV[7] the fold interval (ms)
-- ARGV[8] accumulators folded at most  ARGV[9] the accumulators hash's lifetime (ms)
-- returns {accumulators looked at, of them credited}
-- The session's user is its record's (the info hash 'ps:{T}:<artifact>:h'): a session
-- erased or deleted has none, and its time is dropped. An accumulator of a session still
-- online stays (emptied, its next fold an interval away) as the next report's clamp,
-- and its hash lives on from now (reports add to it, unrenewed, until that fold); the
-- others go.
--! include lib/now.lua
--! include lib/engage.lua
local FOLDS, DIRTY, OB = KEYS[1], KEYS[2], KEYS[3]
local read_after, floors, prefix, live = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local day_ms, day, fold_ms = ARGV[5], ARGV[6], tonumber(ARGV[7])
local now = NOW
local due = redis.call('ZRANGEBYSCORE', FOLDS, '-inf', now, 'LIMIT', 0, tonumber(ARGV[8]))
local credited = 0
for _, member in ipairs(due) do
  local sid, artifact = string.sub(member, 1, 9), string.sub(member, 10)
  local LR = prefix .. 'er:' .. artifact
  local held = redis.call('HGET', LR, sid)
  local acc = held and cmsgpack.unpack(held)
  if type(acc) ~= 'table' then acc = nil end
  if acc and acc[3] > now and acc[2] > 0 then
    redis.call('ZADD', FOLDS, acc[3], member)  -- folded and due again later
  else
    redis.call('ZREM', FOLDS, member)
    if acc then
      local raw = redis.call('HGET', live .. artifact .. ':h', sid)
      local info = raw and cmsgpack.unpack(raw)
      if info and acc[2] > 0 then
        credit(OB, DIRTY, prefix, artifact, acc[4], info[1], acc[2], read_after, floors, day,
          day_ms)
        credited = credited + 1
      end
      local score = redis.call('ZSCORE', live .. artifact .. ':s', sid)
      if info and score and tonumber(score) > now then
        acc[2], acc[3] = 0, now + fold_ms
        redis.call('HSET', LR, sid, cmsgpack.pack(acc))
        redis.call('PEXPIRE', LR, ARGV[9])
      else
        redis.call('HDEL', LR, sid)
      end
    end
  end
end
return {#due, credited}
