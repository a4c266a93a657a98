-- engage.lua: credit one session's engaged time (a heartbeat's or a page-close beacon's
-- "engagedMs") to its viewer of a version, clamped to what could have happened.
-- Runs just BEFORE the presence writer of the same request (same pipeline), so it sees
-- the session as the previous heartbeat left it. All keys share the artifact's hash tag.
-- KEYS[1] Z the artifact's sessions zset (session -> deadline)  KEYS[2] I its session info
--         hash (lib/presence.lua)  KEYS[3] LR hash: packed session id -> its last
--         engagement report (ms)  KEYS[4] DAY hash (per partition and UTC day):
--         '<artifact>/<version>/<user>' -> engaged ms that day  KEYS[5] DIRTY zset (per
--         partition): '<day>/<artifact>/<version>/<user>' -> its engaged ms that day
--         (the DAY value), drained by the worker into the database
-- ARGV[1] artifact id  ARGV[2] session id (packed)  ARGV[3] user id  ARGV[4] version id
--         ('' the session's current one)  ARGV[5] engaged ms claimed (> 0)  ARGV[6] slack
--         (ms)  ARGV[7] ceiling of one report (ms)  ARGV[8] online timeout of an active
--         session (ms)  ARGV[9] of an away one (ms)  ARGV[10] read-after (ms)  ARGV[11]
--         histogram bucket floors (s, ascending, comma-separated, the first 0)
--         ARGV[12] the views key prefix of the artifact's tag ('vw:{T}:')  ARGV[13] the UTC
--         day (YYYY-MM-DD)  ARGV[14] LR's lifetime (ms)  ARGV[15] DAY's lifetime (ms)
-- returns {credited ms, the viewer's engaged total on the version (-1: dropped: no
-- version, a session of another user, or no view record of the version by the user)}
-- The version's keys (its viewers hash 'vu:' and stats hash 'v:', see stats/record_view.lua)
-- are built here from ARGV[12]: which version is only known here (the session's); they
-- carry the same hash tag as KEYS, so the script still touches one slot.
--! include lib/now.lua

local Z, I, LR, DAY, DIRTY = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local artifact, sid, user, version = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local claimed = tonumber(ARGV[5])
local now = NOW

-- The clamp: no more than the time since this session's previous report or, for its
-- first report, since its previous heartbeat (read from its deadline), plus the slack,
-- and never above the ceiling. A session with neither (new) gets the slack only.
local last = redis.call('HGET', LR, sid)
local base = last and tonumber(last)
local raw = redis.call('HGET', I, sid)
local info = raw and cmsgpack.unpack(raw)
if info then
  if info[1] ~= user then return {0, -1} end
  local deadline = not base and redis.call('ZSCORE', Z, sid)
  if deadline then
    local away = info[4] ~= nil and info[4] >= 2
    base = tonumber(deadline) - tonumber(away and ARGV[9] or ARGV[8])
  end
  if version == '' then version = info[2] or '' end
end
redis.call('HSET', LR, sid, now)
redis.call('PEXPIRE', LR, ARGV[14])

local allowed = tonumber(ARGV[6])
if base and now > base then allowed = allowed + now - base end
local credit = math.min(claimed, allowed, tonumber(ARGV[7]))
if version == '' or credit <= 0 then return {0, -1} end

-- Credited only to a viewer with a view record of the version: engaged time without a
-- counted view is dropped.
local VU = ARGV[12] .. 'vu:' .. artifact .. '/' .. version
local V = ARGV[12] .. 'v:' .. artifact .. '/' .. version
local entry = redis.call('HGET', VU, user)
if not entry then return {0, -1} end
-- msgpack [views, firstViewedAt, lastViewedAt, engagedMs, ...]: elements 5+ (the
-- hidden-viewer flag...) are kept as they are.
local mine = cmsgpack.unpack(entry)
local before = tonumber(mine[4] or 0)
local after = before + credit
mine[4] = after
redis.call('HSET', VU, user, cmsgpack.pack(mine))

redis.call('HINCRBY', V, 'engagedMs', credit)
local read_after = tonumber(ARGV[10])
if before < read_after and after >= read_after then redis.call('HINCRBY', V, 'readers', 1) end

-- The histogram: each viewer with engaged time in the bucket of its total ('h:<floor s>').
local function bucket(ms)
  local found
  for floor in string.gmatch(ARGV[11], '%d+') do
    if ms >= tonumber(floor) * 1000 then found = floor else break end
  end
  return found
end
local was, now_in = before > 0 and bucket(before), bucket(after)
if was ~= now_in then
  if was then redis.call('HINCRBY', V, 'h:' .. was, -1) end
  redis.call('HINCRBY', V, 'h:' .. now_in, 1)
end

local member = artifact .. '/' .. version .. '/' .. user
local today = redis.call('HINCRBY', DAY, member, credit)
redis.call('PEXPIRE', DAY, ARGV[15])
redis.call('ZADD', DIRTY, today, ARGV[13] .. '/' .. member)
return {credit, after}
