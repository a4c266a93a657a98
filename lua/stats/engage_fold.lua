-- engage_fold.lua: the worker's fold of the engaged-time accumulators whose fold is due
-- (sessions that stopped reporting: gone, timed out, or quiet), one bounded step of one
-- partition. A session still reporting folds its own at its next report
-- (lib/engage.lua); both are atomic, so whichever comes first credits the time once.
-- KEYS[1] FOLDS zset (per partition, lib/engage.lua)  KEYS[2] DIRTY zset (per partition)
-- KEYS[3] the partition's outbox stream (version.read, while it exists)
-- ARGV[1] read-after (ms)  ARGV[2] histogram bucket floors (s)  ARGV[3] the views key
-- prefix of the partition's tag ('vw:{T}:')  ARGV[4] the presence key prefix ('ps:{T}:')
-- ARGV[5] DAY's lifetime (ms)  ARGV[6] the UTC day  ARGV[7] the fold interval (ms)
-- ARGV[8] accumulators folded at most  ARGV[9] unused (was the accumulators hash's
-- lifetime)
-- returns {accumulators looked at, of them credited}
-- The accumulator is in the session's record (the info hash 'ps:{T}:<artifact>:h',
-- elements 5-8, lib/session_record.lua), with the session's user: a session erased or
-- deleted has neither, and its time went with it. An accumulator of a session still
-- online stays (emptied, its next fold an interval away) as the next report's clamp; the
-- others are taken out of their record. Before the accumulators moved into the records
-- they were kept in a hash per artifact ('vw:{T}:er:<artifact>'): one left there by an
-- older version is credited too (and deleted) when its session's fold comes due, unless
-- the session's first report or its leave did that first (lib/engage.lua).
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
  local I = live .. artifact .. ':h'
  local raw = redis.call('HGET', I, sid)
  local info = raw and cmsgpack.unpack(raw)
  local acc = info and info[8] ~= nil
  -- an accumulator an older version kept in its own hash (credited, then gone)
  local LR = prefix .. 'er:' .. artifact
  local old = redis.call('HGET', LR, sid)
  if old then
    redis.call('HDEL', LR, sid)
    old = cmsgpack.unpack(old)
    if info and type(old) == 'table' and old[2] > 0 then
      credit(OB, DIRTY, prefix, artifact, old[4], info[1], old[2], read_after, floors, day,
        day_ms)
      credited = credited + 1
    end
  end
  if acc and info[7] > now and info[6] > 0 then
    redis.call('ZADD', FOLDS, info[7], member)  -- folded and due again later
  else
    redis.call('ZREM', FOLDS, member)
    if acc then
      if info[6] > 0 then
        credit(OB, DIRTY, prefix, artifact, info[8], info[1], info[6], read_after, floors,
          day, day_ms)
        credited = credited + 1
      end
      local score = redis.call('ZSCORE', live .. artifact .. ':s', sid)
      if score and tonumber(score) > now then
        info[6], info[7] = 0, now + fold_ms
        redis.call('HSET', I, sid, cmsgpack.pack(info))
      else
        forget(I, FOLDS, sid, artifact, info)
      end
    end
  end
end
return {#due, credited}
