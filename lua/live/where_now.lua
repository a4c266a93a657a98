-- where_now.lua: check one user's where-now candidates on several artifacts of one
-- partition against the artifacts' own keys; read-only.
-- KEYS[3i-2] Z sessions zset, KEYS[3i-1] I session info hash, KEYS[3i] R recently-here
-- zset of the i-th artifact (all in one hash slot)
-- ARGV[1] online timeout (ms)  ARGV[2] recent keep time (ms)  ARGV[3] user id
-- ARGV[4..] for each artifact in KEYS order: n, then n packed session ids (the index's
--   candidates, newest index entry first)
-- returns msgpack {{online, lastSeen, versionId, status, sessions, reason, {prune...}}, ...}
--   one per artifact: online 1 with the user's online sessions (lastSeen and version of
--   the most recent); online 0 with lastSeen and reason ('left' | 'timeout') if the user
--   was here within the keep time; lastSeen -1 if neither. prune: positions (1-based) of
--   the candidates the index may drop (gone, another user's, or no longer needed).
-- Cost: one ZSCORE and one HGET per candidate, one ZSCORE of R per artifact offline.
--! include lib/now.lua

local limit = NOW - tonumber(ARGV[1])
local since = NOW - tonumber(ARGV[2])
local user = ARGV[3]

-- The session's status: rooms-core's away work stores it in the session info; until
-- then every online session is active.
local function status_of(info)
  if info[5] == 'away' then return 'away' end
  return 'active'
end

local out = {}
local a = 4
for k = 1, #KEYS, 3 do
  local Z, I, R = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local n = tonumber(ARGV[a])
  local online, stale = {}, {}
  local best, best_info, stale_best, stale_info = -1, nil, -1, nil
  local status = 'away'
  for j = 1, n do
    local sid = ARGV[a + j]
    local score = redis.call('ZSCORE', Z, sid)
    local raw = score and redis.call('HGET', I, sid)
    local info = raw and cmsgpack.unpack(raw)
    if info and info[1] == user then
      score = tonumber(score)
      if score > limit then
        online[#online + 1] = j
        if score > best then best, best_info = score, info end
        if status_of(info) == 'active' then status = 'active' end
      else
        stale[#stale + 1] = j
        if score > stale_best then stale_best, stale_info = score, info end
      end
    end
  end
  local prune = {}
  local function prune_all_but(keep)
    local online_at = {}
    for _, j in ipairs(keep) do online_at[j] = true end
    for j = 1, n do
      if not online_at[j] then prune[#prune + 1] = j end
    end
  end
  if #online > 0 then
    prune_all_but(online)
    out[#out + 1] = {1, best, best_info[2], status, #online, '', prune}
  else
    local seen, reason = -1, ''
    local left = redis.call('ZSCORE', R, user)
    if left then
      left = tonumber(left)
      seen = math.floor(left / 4)
      local code = left - seen * 4
      if code == 1 then reason = 'left' elseif code == 2 then reason = 'timeout' end
    elseif stale_best >= 0 then
      -- timed out, not settled into R yet: the session itself says when
      seen = stale_best
      reason = stale_info[4] == 1 and 'left' or 'timeout'
    end
    if seen >= since then
      prune_all_but({1})
    else
      seen, reason = -1, ''
      prune_all_but({})
    end
    out[#out + 1] = {0, seen, '', '', 0, reason, prune}
  end
  a = a + n + 1
end
return cmsgpack.pack(out)
