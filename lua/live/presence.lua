-- presence.lua: one page of an artifact's online users, in the order they came.
-- KEYS[1] Z sessions zset  KEYS[2] I session info and per-user hash  KEYS[3] U users zset
-- ARGV[1] online timeout of an active session (ms)  ARGV[2] of an away session (ms)
-- ARGV[3] page size  ARGV[4] the join number after which the page starts ('' for the
-- first page)  ARGV[5] '1' to list each user's sessions
-- returns msgpack {online_users, online_sessions, active_users, rows, next}: rows
--   {userId, versionId, stateJson, lastSeen, sessions, away (0/1), joinNumber[, sessions
--   list {{versionId, stateJson, lastSeen, away}, ...}]}, next the join number to start
--   the next page after (-1: no more); read-only
-- Hidden sessions (lib/hidden.lua) are counted and never listed: a user with no
-- visible online session has no row.
-- Rows sort by the user's join number: the order users came in, which heartbeats never
-- change, so a keyset cursor neither skips nor repeats a user who stays online. A large
-- room (field '~L' set, users in U) costs the page's users and their sessions (MAX_LISTED each at most)
-- plus at most SKIP_BUDGET users passed over because they timed out and are not settled
-- yet, never the room size (a page stopped by that budget is short and has a next); a
-- small room is read whole, which is bounded too (its hash stays under ~130 fields).
--! include lib/now.lua
--! include lib/reads.lua
--! include lib/rooms.lua
--! include lib/hidden.lua

local MAX_LISTED = 32
local SKIP_BUDGET = 100
local Z, I, U = KEYS[1], KEYS[2], KEYS[3]
local timeout, away_timeout = tonumber(ARGV[1]), tonumber(ARGV[2])
local page_size = tonumber(ARGV[3])
local after = ARGV[4] == '' and -1 or tonumber(ARGV[4])
local listing = ARGV[5] == '1'
local now = NOW

-- The row of one user from their counted sessions `sids`, their deadlines and unpacked
-- infos (nil if none is online now).
local function row_of(sids, scores, infos, counted, join)
  local row
  for n, _ in ipairs(sids) do
    local score = scores[n]
    local info = infos[n]
    if score and score > now and info and not is_hidden(info) then
      local away = info[4] ~= nil and bit.band(info[4], 2) ~= 0
      local seen = score - (away and away_timeout or timeout)
      if not row then
        row = {info[1], info[2], info[3], seen, 0, 1, join}
        if listing then row[8] = {} end
      elseif seen > row[4] then
        row[2], row[3], row[4] = info[2], info[3], seen
      end
      row[5] = row[5] + 1
      if not away then row[6] = 0 end
      if listing then
        local list = row[8]
        list[#list + 1] = {info[2], info[3], seen, away and 1 or 0}
      end
    end
  end
  if row then row[5] = row[5] + math.max(0, counted - #sids) end
  return row
end

local rows = {}
local next_after = -1

if redis.call('HEXISTS', I, '~L') == 0 then
  -- a small room: read whole, sorted by join number
  local room = small_room(Z, I)
  local users = {}
  for _, pair in ipairs(room.users) do
    local entry = cmsgpack.unpack(pair[2])
    if entry[3] > after then users[#users + 1] = {pair[1], entry} end
  end
  table.sort(users, function(a, b) return a[2][3] < b[2][3] end)
  for _, pair in ipairs(users) do
    local sids = room.sessions[pair[1]] or {}
    local listed, scores, infos = {}, {}, {}
    for n = 1, math.min(#sids, MAX_LISTED) do
      listed[n] = sids[n]
      scores[n] = room.scores[sids[n]]
      infos[n] = room.infos[sids[n]]
    end
    local row = row_of(listed, scores, infos, pair[2][1], pair[2][3])
    if row then
      if #rows == page_size then
        next_after = rows[#rows][7]
        break
      end
      rows[#rows + 1] = row
    end
  end
else
  -- a large room: the page's users from U, their sessions from their lists
  local low = after < 0 and '-inf' or '(' .. after
  local budget = page_size + 1 + SKIP_BUDGET
  local scanned = 0
  local full = false
  while not full do
    local want = math.min(page_size + 1 - #rows, budget - scanned)
    if want <= 0 then
      next_after = tonumber(string.sub(low, 2))
      break
    end
    local found = redis.call('ZRANGEBYSCORE', U, low, '+inf', 'LIMIT', 0, want)
    if #found == 0 then break end
    local entries = redis.call('HMGET', I, unpack(found))
    local sids, owner, unpacked = {}, {}, {}
    for k, raw in ipairs(entries) do
      if raw then
        local entry = cmsgpack.unpack(raw)
        unpacked[k] = entry
        local blob = entry[4] or ''
        for j = 1, math.min(#blob / 9, MAX_LISTED) do
          sids[#sids + 1] = string.sub(blob, 9 * j - 8, 9 * j)
          owner[#sids] = k
        end
      end
    end
    local scores, infos = {}, {}
    if #sids > 0 then
      scores = redis.call('ZMSCORE', Z, unpack(sids))
      infos = redis.call('HMGET', I, unpack(sids))
    end
    local per_user = {}
    for n, sid in ipairs(sids) do
      local mine = per_user[owner[n]] or {{}, {}, {}}
      local i = #mine[1] + 1
      mine[1][i], mine[2][i] = sid, tonumber(scores[n])
      mine[3][i] = infos[n] and cmsgpack.unpack(infos[n])
      per_user[owner[n]] = mine
    end
    for k = 1, #found do
      local mine, entry = per_user[k], unpacked[k]
      local row = mine and row_of(mine[1], mine[2], mine[3], entry[1], entry[3])
      if row then
        if #rows == page_size then
          next_after = rows[#rows][7]
          full = true
          break
        end
        rows[#rows + 1] = row
      end
    end
    scanned = scanned + #found
    local last = unpacked[#found]
    low = '(' .. (last and last[3] or redis.call('ZSCORE', U, found[#found]))
    if not full and #found < want then break end  -- the end of the room
  end
end

local online, active = online_users(Z, I, now)
local sessions = redis.call('ZCOUNT', Z, '(' .. now, '+inf')
return cmsgpack.pack({online, sessions, active, rows, next_after})
