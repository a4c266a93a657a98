-- presence.lua: one page of an artifact's online users, in the order they came.
-- KEYS[1] Z sessions zset  KEYS[2] I session info and per-user hash  KEYS[3] U users zset
-- ARGV[1] online timeout of an active session (ms)  ARGV[2] of an away session (ms)
-- ARGV[3] page size  ARGV[4] the join number after which the page starts ('' for the
-- first page)  ARGV[5] '1' to list each user's sessions  ARGV[6] the page mark a page the
-- caller keeps was built at ('' none; lib/pagemark.lua)  ARGV[7] when that page was built
-- (its `built`, below; '' or absent: not asked)
-- returns '' (an empty string) when ARGV[6] is the artifact's page mark and no session
-- timed out unsettled since: the caller's page still holds (lastSeen times aside); '='
-- when, besides, no session has beaten since ARGV[7] (no deadline at or past ARGV[7] plus
-- the active timeout: a heartbeat since then set one there, an away one further; a room
-- with an away session that beat within the away timeout answers '' instead): the page
-- holds, lastSeen times too;
-- else msgpack {online_users, online_sessions, active_users, rows, next, infos, mark,
-- built, until}: rows
--   flat, each row {lastSeen, sessions, away (0/1), joinNumber[, n, then n times
--   lastSeen, away: its sessions, with the list]} in a row, next the join number to
--   start the next page after (-1: no more), infos the packed session infos as stored
--   ({userId, versionId, stateJson[, flags]}, lib/presence.lua): per row, its most
--   recent session's, then (with the list) each listed session's, in order; read-only.
--   Flat and passed through: tables and unpacking per row were most of a page's time.
--   mark: the page mark ('' none) this page was built at; built: Redis's clock (ms) then;
--   until: the first deadline of a session online then (-1: none online), whole ms down:
--   while the mark holds, deadlines only move later (lib/pagemark.lua), so the page
--   holds until then (the service tells that from the mark and TIME, no script).
-- Hidden sessions (lib/hidden.lua) are counted and never listed: a user with no
-- visible online session has no row.
-- Rows sort by the user's join number: the order users came in, which heartbeats never
-- change, so a keyset cursor neither skips nor repeats a user who stays online. A large
-- room (field '~L' set, users in U) costs the page's users and their sessions (MAX_LISTED each at most)
-- plus at most SKIP_BUDGET users passed over because they timed out and are not settled
-- yet, never the room size (a page stopped by that budget is short and has a next); a
-- small room is read whole, which is bounded too (its hash stays under ~130 fields).
--! include lib/now.lua

-- A kept page that still holds, checked before the helpers below are defined (defining
-- them costs Redis an allocation each, every call): nothing written since it was built
-- (the page mark, lib/pagemark.lua), and no session timed out unsettled since.
local mark_now = redis.call('HGET', KEYS[2], '~c') or ''
if ARGV[6] ~= '' and ARGV[6] == mark_now then
  local settled_to = redis.call('HGET', KEYS[2], '~w')
  local low = settled_to and ('(' .. settled_to) or '-inf'
  if #redis.call('ZRANGEBYSCORE', KEYS[1], low, NOW, 'LIMIT', 0, 1) == 0 then
    local built = tonumber(ARGV[7] or '')
    if built and #redis.call('ZRANGEBYSCORE', KEYS[1], built + tonumber(ARGV[1]), '+inf',
      'LIMIT', 0, 1) == 0 then
      return '='
    end
    return ''
  end
end

--! include lib/reads.lua
--! include lib/hidden.lua
--! include lib/infos.lua

local MAX_LISTED = 32
local SKIP_BUDGET = 100
local Z, I, U = KEYS[1], KEYS[2], KEYS[3]
local timeout, away_timeout = tonumber(ARGV[1]), tonumber(ARGV[2])
local page_size = tonumber(ARGV[3])
local after = ARGV[4] == '' and -1 or tonumber(ARGV[4])
local listing = ARGV[5] == '1'
local now = NOW

local rows, infos = {}, {}
local listed_rows = 0
local next_after = -1
local last_join = nil

-- Adds the row of one user (if they have a visible online session and the page has room;
-- false when it had none): their counted sessions are positions `from`..`to` of `scores`
-- (deadlines, as Redis gives them) and `raws` (packed infos), through `idx` if given.
local function add(scores, raws, idx, from, to, counted, join)
  local seen, sessions, away_all, latest = nil, 0, 1, nil
  local metas, mraws
  for i = from, to do
    local n = idx and idx[i] or i
    local score, raw = tonumber(scores[n]), raws[n]
    if score and score > now and raw then
      local flags = info_flags(raw)
      if flags < HIDDEN then
        local away = bit.band(flags, 2) ~= 0
        local at = score - (away and away_timeout or timeout)
        if not seen or at > seen then seen, latest = at, raw end
        sessions = sessions + 1
        if not away then away_all = 0 end
        if listing then
          if not metas then metas, mraws = {}, {} end
          metas[#metas + 1] = at
          metas[#metas + 1] = away and 1 or 0
          mraws[#mraws + 1] = raw
        end
      end
    end
  end
  if not seen then return true end
  if listed_rows == page_size then
    next_after = last_join
    return false
  end
  local m = #rows
  rows[m + 1], rows[m + 2], rows[m + 3], rows[m + 4] =
    seen, sessions + math.max(0, counted - (to - from + 1)), away_all, join
  infos[#infos + 1] = latest
  if listing then
    rows[m + 5] = #mraws
    for j = 1, #metas do rows[m + 5 + j] = metas[j] end
    for j = 1, #mraws do infos[#infos + 1] = mraws[j] end
  end
  listed_rows = listed_rows + 1
  last_join = join
  return true
end

if redis.call('HEXISTS', I, '~L') == 0 then
  -- a small room: read whole (one HGETALL, one ZMSCORE), sorted by join number; its
  -- sessions' users read from their packed infos
  local all = redis.call('HGETALL', I)
  local mark = -1
  local sids, raws, users = {}, {}, {}
  for i = 1, #all, 2 do
    local first = string.byte(all[i])
    if first == 35 then  -- '#': a session
      sids[#sids + 1] = all[i]
      raws[#raws + 1] = all[i + 1]
    elseif first == 126 then  -- '~': a counter
      if all[i] == '~w' then mark = tonumber(all[i + 1]) end
    else
      local entry = cmsgpack.unpack(all[i + 1])
      if entry[3] > after then users[#users + 1] = {all[i], entry} end
    end
  end
  local mine, scores = {}, {}  -- user -> positions of their counted sessions (MAX_LISTED)
  if #sids > 0 then
    scores = redis.call('ZMSCORE', Z, unpack(sids))
    for n = 1, #sids do
      local score = tonumber(scores[n])
      if score and score > mark then
        local user = info_user(raws[n])
        local list = mine[user]
        if not list then
          mine[user] = {n}
        elseif #list < MAX_LISTED then
          list[#list + 1] = n
        end
      end
    end
  end
  table.sort(users, function(a, b) return a[2][3] < b[2][3] end)
  for _, pair in ipairs(users) do
    local list = mine[pair[1]]
    if list and not add(scores, raws, list, 1, #list, pair[2][1], pair[2][3]) then break end
  end
else
  -- a large room: the page's users from U, their sessions from their lists
  local low = after < 0 and '-inf' or '(' .. after
  local budget = page_size + 1 + SKIP_BUDGET
  local scanned = 0
  local full = false
  while not full do
    local want = math.min(page_size + 1 - listed_rows, budget - scanned)
    if want <= 0 then
      next_after = tonumber(string.sub(low, 2))
      break
    end
    local found = redis.call('ZRANGEBYSCORE', U, low, '+inf', 'LIMIT', 0, want)
    if #found == 0 then break end
    local entries = redis.call('HMGET', I, unpack(found))
    -- user k's sessions are positions first[k]..first[k + 1] - 1 of sids
    local sids, first, counted, joins = {}, {}, {}, {}
    for k = 1, #found do
      first[k] = #sids + 1
      local raw = entries[k]
      if raw then
        local entry = cmsgpack.unpack(raw)
        counted[k], joins[k] = entry[1], entry[3]
        local blob = entry[4] or ''
        for j = 1, math.min(#blob / 9, MAX_LISTED) do
          sids[#sids + 1] = string.sub(blob, 9 * j - 8, 9 * j)
        end
      end
    end
    first[#found + 1] = #sids + 1
    local scores, raws = {}, {}
    if #sids > 0 then
      scores = redis.call('ZMSCORE', Z, unpack(sids))
      raws = redis.call('HMGET', I, unpack(sids))
    end
    for k = 1, #found do
      if first[k] < first[k + 1]
        and not add(scores, raws, nil, first[k], first[k + 1] - 1, counted[k], joins[k]) then
        full = true
        break
      end
    end
    scanned = scanned + #found
    local last = joins[#found]
    low = '(' .. (last or redis.call('ZSCORE', U, found[#found]))
    if not full and #found < want then break end  -- the end of the room
  end
end

local online, active = online_users(Z, I, now)
local sessions = redis.call('ZCOUNT', Z, '(' .. now, '+inf')
local first = redis.call('ZRANGEBYSCORE', Z, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local holds_until = first[2] and math.floor(tonumber(first[2])) or -1
-- the infos as a sixth element of the packed answer, passed through as stored, the mark
-- as the seventh, the clock as the eighth, until as the ninth
local packed = cmsgpack.pack({online, sessions, active, rows, next_after})
return string.char(0x99) .. string.sub(packed, 2) .. packed_array(infos)
  .. cmsgpack.pack(mark_now) .. cmsgpack.pack(NOW) .. cmsgpack.pack(holds_until)
