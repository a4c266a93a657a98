-- lib/reads.lua: read-only helpers for the read scripts.
-- Reads never write: sessions that timed out but were not settled yet are left out by
-- looking at them, so a read is exact even between two sweeps.

-- Users whose every counted session has timed out but is not settled yet; `mark` is the
-- artifact's watermark (field '~w' of I, false if none).
local function unsettled_offline_users(Z, I, limit, mark)
  local low = '-inf'
  if mark then
    if tonumber(mark) >= limit then return 0 end
    low = '(' .. mark
  end
  local expired = redis.call('ZRANGEBYSCORE', Z, low, limit)
  if #expired == 0 then return 0 end
  local per_user = {}
  for _, sid in ipairs(expired) do
    local raw = redis.call('HGET', I, sid)
    if raw then
      local user = cmsgpack.unpack(raw)[1]
      per_user[user] = (per_user[user] or 0) + 1
    end
  end
  local gone = 0
  for user, n in pairs(per_user) do
    if n >= tonumber(redis.call('HGET', I, user) or '0') then gone = gone + 1 end
  end
  return gone
end

-- Unique users online on one artifact (Z sessions, I info hash) at `limit`.
local function online_users(Z, I, limit)
  local meta = redis.call('HMGET', I, '~n', '~w')
  local users = tonumber(meta[1] or '0')
  if users > 0 then users = users - unsettled_offline_users(Z, I, limit, meta[2]) end
  return users
end
