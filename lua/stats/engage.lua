-- engage.lua: credit one session's engaged time (a heartbeat's or a page-close beacon's
-- "engagedMs") to its viewer of a version, clamped to what could have happened. Sent in
-- the same pipeline as the presence writer of the request; it does not depend on which
-- of the two runs first. All keys share the artifact's hash tag.
-- KEYS[1] I the artifact's session info hash (lib/presence.lua; read only when no version
--         is given)  KEYS[2] LR hash: packed session id -> its last engagement report (ms)
--         KEYS[3] DAY hash (per partition and UTC day): '<artifact>/<version>/<user>' ->
--         engaged ms that day  KEYS[4] DIRTY zset (per partition):
--         '<day>/<artifact>/<version>/<user>' -> that day's total, drained by the worker
-- ARGV[1] artifact id  ARGV[2] slack (ms)  ARGV[3] ceiling of one report (ms)
--         ARGV[4] read-after (ms)  ARGV[5] histogram bucket floors (s, ascending,
--         comma-separated, the first 0)  ARGV[6] the views key prefix of the artifact's tag
--         ('vw:{T}:')  ARGV[7] the UTC day (YYYY-MM-DD)  ARGV[8] LR's lifetime (ms)
--         ARGV[9] DAY's lifetime (ms)  ARGV[10] session id (packed)  ARGV[11] user id
--         ARGV[12] version id ('' the session's current one)  ARGV[13] engaged ms (> 0)
-- returns {credited ms, the viewer's engaged total on the version (-1: dropped: no
-- version, or no view record of the version by the user)}
-- The version's keys (its viewers hash 'vu:' and stats hash 'v:', see stats/record_view.lua)
-- are built here from ARGV[6]: which version may only be known here (the session's); they
-- carry the same hash tag as KEYS, so the script still touches one slot.
--! include lib/now.lua

local I, LR, DAY, DIRTY = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local artifact, sid, user, version = ARGV[1], ARGV[10], ARGV[11], ARGV[12]
local now = NOW

if version == '' then
  local raw = redis.call('HGET', I, sid)
  local info = raw and cmsgpack.unpack(raw)
  if not info or info[1] ~= user then return {0, -1} end
  version = info[2] or ''
  if version == '' then return {0, -1} end
end

-- Credited only to a viewer with a view record of the version: engaged time without a
-- counted view is dropped.
local VU = ARGV[6] .. 'vu:' .. artifact .. '/' .. version
local entry = redis.call('HGET', VU, user)
if not entry then return {0, -1} end
-- msgpack [views, firstViewedAt, lastViewedAt, engagedMs, ...]: elements 5+ (the
-- hidden-viewer flag...) are kept as they are.
local mine = cmsgpack.unpack(entry)

-- The clamp: no more than the time since this session's previous report, or for its first
-- one since the viewer's last counted view of the version (what a page records when it
-- opens), plus the slack, and never above the ceiling.
local base = tonumber(mine[3])
local last = redis.call('HGET', LR, sid)
if last and tonumber(last) > base then base = tonumber(last) end
redis.call('HSET', LR, sid, now)
redis.call('PEXPIRE', LR, ARGV[8])
local credit = math.min(tonumber(ARGV[13]), math.max(0, now - base) + tonumber(ARGV[2]),
  tonumber(ARGV[3]))
if credit <= 0 then return {0, tonumber(mine[4] or 0)} end

local before = tonumber(mine[4] or 0)
local after = before + credit
mine[4] = after
redis.call('HSET', VU, user, cmsgpack.pack(mine))

local V = ARGV[6] .. 'v:' .. artifact .. '/' .. version
redis.call('HINCRBY', V, 'engagedMs', credit)
local read_after = tonumber(ARGV[4])
if before < read_after and after >= read_after then redis.call('HINCRBY', V, 'readers', 1) end

-- The histogram: each viewer with engaged time in the bucket of its total ('h:<floor s>').
local function bucket(ms)
  local found
  for floor in string.gmatch(ARGV[5], '%d+') do
    if ms >= tonumber(floor) * 1000 then found = floor else break end
  end
  return found
end
local was, is = before > 0 and bucket(before), bucket(after)
if was ~= is then
  if was then redis.call('HINCRBY', V, 'h:' .. was, -1) end
  redis.call('HINCRBY', V, 'h:' .. is, 1)
end

local member = artifact .. '/' .. version .. '/' .. user
local today = redis.call('HINCRBY', DAY, member, credit)
if today == credit then redis.call('PEXPIRE', DAY, ARGV[9]) end
redis.call('ZADD', DIRTY, today, ARGV[7] .. '/' .. member)
return {credit, after}
