-- lib/reads.lua: read-only helpers for the read scripts.
-- Reads never write: sessions whose deadline passed but which are not settled yet are
-- left out by looking at them, so a read is exact between two sweeps. A read looks at
-- LOOK_UNSETTLED of them at most: only a mass timeout being settled in steps by the
-- sweeper leaves more, for the fraction of a second that takes.

local LOOK_UNSETTLED = 256

-- Users whose every counted session passed its deadline but is not settled yet, and
-- users whose every counted active session did (they are away, or gone, now); `mark` is
-- the artifact's watermark (field '~w' of I, false if none).
local function unsettled_changes(Z, I, now, mark)
  local low = '-inf'
  if mark then
    if tonumber(mark) >= now then return 0, 0 end
    low = '(' .. mark
  end
  local expired = redis.call('ZRANGEBYSCORE', Z, low, now, 'LIMIT', 0, LOOK_UNSETTLED)
  if #expired == 0 then return 0, 0 end
  local per_user = {}
  local infos = redis.call('HMGET', I, unpack(expired))
  for _, raw in ipairs(infos) do
    if raw then
      local info = cmsgpack.unpack(raw)
      local seen = per_user[info[1]] or {0, 0}
      seen[1] = seen[1] + 1
      if not (info[4] ~= nil and bit.band(info[4], 2) ~= 0) then seen[2] = seen[2] + 1 end
      per_user[info[1]] = seen
    end
  end
  local gone, inactive = 0, 0
  for user, seen in pairs(per_user) do
    local raw = redis.call('HGET', I, user)
    if raw then
      local entry = cmsgpack.unpack(raw)
      if seen[1] >= entry[1] then
        gone = gone + 1
        if entry[2] > 0 then inactive = inactive + 1 end
      elseif entry[2] > 0 and seen[2] >= entry[2] then
        inactive = inactive + 1
      end
    end
  end
  return gone, inactive
end

-- {users online, active users} of one artifact (Z sessions, I info hash) now.
local function online_users(Z, I, now)
  local meta = redis.call('HMGET', I, '~n', '~w', '~a')
  local users, active = tonumber(meta[1] or '0'), tonumber(meta[3] or '0')
  if users > 0 then
    local gone, inactive = unsettled_changes(Z, I, now, meta[2])
    users, active = users - gone, active - inactive
  end
  return users, active
end
