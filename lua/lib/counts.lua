-- lib/counts.lua: the partition's counts hash the presence writers keep, so a batch of
-- online counts is one HMGET per partition (live/online.lua) instead of three commands
-- per artifact.
-- KEYS[10] C hash (per partition): artifact id -> '<until>{"online":u,"sessions":s,
-- "active":a,"away":w}', the artifact's counts as the writer left them, in the batch
-- answer's JSON (a read copies it, no number is converted), exact while Redis's clock is
-- before `until` (ms; empty: no session is counted, the zeros hold until a writer changes
-- them).
-- `until` is the first deadline above the watermark: the first counted session to go
-- offline, or (while settling is behind) the run's clock, which makes the record void at
-- once. Every writer run that reaches its counts rewrites the record; a heartbeat's
-- fast path only moves a deadline later and changes no count, so the stored `until` can
-- only be earlier than needed (a read falls back to the full count, never to a wrong
-- one). A read also falls back for an artifact without a record (none written yet).

-- What this run learnt on the way: whether settle() left sessions to settle (then the
-- record is void at once), and the first online deadline if schedule() looked it up
-- (false: none; nil: not looked up), so the record costs no extra read in a sweep.
local COUNTS = {settled = true, first = nil}

local function counts_keep(Z, I, users, sessions, active)
  local C = KEYS[10]
  local till = ''
  if not COUNTS.settled then
    till = NOW -- a deadline already past: the record is void until a run settles it all
  else
    -- settled: no counted session lies in (watermark, now], so the first deadline above
    -- the watermark is the first one after now
    local first = COUNTS.first
    if first == nil then
      local found = redis.call('ZRANGEBYSCORE', Z, '(' .. NOW, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
      first = found[2] or false
    end
    if first then
      till = first
    elseif redis.call('EXISTS', Z) == 0 then -- no keys (a leave of nothing)
      redis.call('HDEL', C, ARGV[1])
      return
    end
  end
  active = math.max(0, math.min(active, users))
  local added = redis.call('HSET', C, ARGV[1], till .. '{"online":' .. users ..
    ',"sessions":' .. sessions .. ',"active":' .. active .. ',"away":' .. (users - active) .. '}')
  if added == 1 then -- a new field; else `schedule` renews the TTL with the sweep index's
    redis.call('PEXPIRE', C, tonumber(ARGV[4]) + 2 * math.max(tonumber(ARGV[3]), tonumber(ARGV[5])))
  end
end

-- The artifact's keys are gone: so is its record (a read of it falls back, and finds none).
local function counts_forget()
  redis.call('HDEL', KEYS[10], ARGV[1])
end
