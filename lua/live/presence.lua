-- presence.lua: one page of an artifact's online users, in the order they came.
-- KEYS[1] Z sessions zset  KEYS[2] I session info and per-user hash  KEYS[3] U users zset
-- ARGV[1] online timeout of an active session (ms)  ARGV[2] of an away session (ms)
-- ARGV[3] page size  ARGV[4] the join number after which the page starts ('' for the
-- first page)  ARGV[5] '1' to list each user's sessions
-- returns msgpack {online_users, online_sessions, active_users, rows, next}: rows
--   {userId, versionId, stateJson, lastSeen, sessions, away (0/1), joinNumber[, sessions
--   list {{versionId, stateJson, lastSeen, away}, ...}]}, next the join number to start
--   the next page after (-1: no more); read-only
-- Rows sort by the user's join number: the order users came in, which heartbeats never
-- change, so a keyset cursor neither skips nor repeats a user who stays online. Cost: the
-- page's users and their sessions (MAX_LISTED each at most) plus, at most SKIP_BUDGET
-- users passed over because they timed out and are not settled yet: never the room size.
-- A page stopped by that budget is short and still has a next.
--! include lib/now.lua
--! include lib/reads.lua

local MAX_LISTED = 32
local SKIP_BUDGET = 200
local Z, I, U = KEYS[1], KEYS[2], KEYS[3]
local timeout, away_timeout = tonumber(ARGV[1]), tonumber(ARGV[2])
local page_size = tonumber(ARGV[3])
local listing = ARGV[5] == '1'
local now = NOW
local low = ARGV[4] == '' and '-inf' or '(' .. ARGV[4]

local rows = {}
local next_after = -1
local budget = page_size + 1 + SKIP_BUDGET
local scanned = 0
local full = false
while not full do
  local want = math.min(page_size + 1 - #rows, budget - scanned)
  if want <= 0 then
    next_after = tonumber(string.sub(low, 2))
    break
  end
  local found = redis.call('ZRANGEBYSCORE', U, low, '+inf', 'WITHSCORES', 'LIMIT', 0, want)
  if #found == 0 then break end
  local users = {}
  for i = 1, #found, 2 do users[#users + 1] = found[i] end
  local entries = redis.call('HMGET', I, unpack(users))
  local sids, owner, counted = {}, {}, {}
  for k, raw in ipairs(entries) do
    counted[k] = 0
    if raw then
      local blob = cmsgpack.unpack(raw)[2]
      counted[k] = #blob / 9
      for j = 1, math.min(counted[k], MAX_LISTED) do
        sids[#sids + 1] = string.sub(blob, 9 * j - 8, 9 * j)
        owner[#sids] = k
      end
    end
  end
  local per_user = {}
  if #sids > 0 then
    local scores = redis.call('ZMSCORE', Z, unpack(sids))
    local infos = redis.call('HMGET', I, unpack(sids))
    for n, sid in ipairs(sids) do
      local score = tonumber(scores[n])
      if score and score > now and infos[n] then
        local info = cmsgpack.unpack(infos[n])
        local away = info[4] ~= nil and info[4] >= 2
        local seen = score - (away and away_timeout or timeout)
        local row = per_user[owner[n]]
        if not row then
          row = {info[1], info[2], info[3], seen, 0, 1, 0}
          if listing then row[8] = {} end
          per_user[owner[n]] = row
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
  end
  for k = 1, #users do
    local row = per_user[k]
    if row then
      if #rows == page_size then
        next_after = rows[#rows][7]
        full = true
        break
      end
      row[5] = row[5] + math.max(0, counted[k] - MAX_LISTED)
      row[7] = tonumber(found[2 * k])
      rows[#rows + 1] = row
    end
  end
  scanned = scanned + #users
  low = '(' .. found[#found]
  if not full and #found < 2 * want then break end  -- the end of the room
end

local online, active = online_users(Z, I, now)
local sessions = redis.call('ZCOUNT', Z, '(' .. now, '+inf')
return cmsgpack.pack({online, sessions, active, rows, next_after})
