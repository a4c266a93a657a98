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
-- Redis's clock without lib/now.lua: a read-only script needs no replicate_commands(),
-- which costs more than the rest of a small call (about 3 us of Redis 6.2's time).
local clock = redis.call('TIME')
local NOW = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local limit = NOW - tonumber(ARGV[1])
local since = NOW - tonumber(ARGV[2])
local user = ARGV[3]

-- No function is defined here: each would be an allocation per call (see heartbeat.lua).
-- A session's status: rooms-core's away work stores it in the session info (element 5
-- here, to adjust at the merge); until then every online session is active.
local out = {}
local a = 4
for k = 1, #KEYS, 3 do
  local Z, I = KEYS[k], KEYS[k + 1]
  local n = tonumber(ARGV[a])
  local online, best, best_info, stale_best, stale_info = 0, -1, nil, -1, nil
  local active = false
  local prune = {}
  local keep = {}
  for j = 1, n do
    local sid = ARGV[a + j]
    local score = redis.call('ZSCORE', Z, sid)
    local raw = score and redis.call('HGET', I, sid)
    local info = raw and cmsgpack.unpack(raw)
    if info and info[1] == user then
      score = tonumber(score)
      if score > limit then
        online = online + 1
        keep[j] = true
        if score > best then best, best_info = score, info end
        if info[5] ~= 'away' then active = true end
      elseif score > stale_best then
        stale_best, stale_info = score, info
      end
    end
  end
  if online > 0 then
    for j = 1, n do
      if not keep[j] then prune[#prune + 1] = j end
    end
    out[#out + 1] = {1, best, best_info[2], active and 'active' or 'away', online, '', prune}
  else
    local seen, reason = -1, ''
    local left = redis.call('ZSCORE', KEYS[k + 2], user)
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
    -- a recently-left artifact keeps one candidate (the newest); otherwise none is kept
    local first = 2
    if seen < since then seen, reason, first = -1, '', 1 end
    for j = first, n do prune[#prune + 1] = j end
    out[#out + 1] = {0, seen, '', '', 0, reason, prune}
  end
  a = a + n + 1
end
return cmsgpack.pack(out)
