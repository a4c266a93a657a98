-- lib/presence.lua: helpers shared by the presence writers (through lib/writer.lua).
--
-- Data model of one artifact (see docs/data-model.md), two keys:
--   Z  zset  session id -> last heartbeat (ms)
--   I  hash  session id -> msgpack {userId, versionId, stateJson[, 1 if leaving]}
--            userId -> number of that user's online sessions
--            '~n' -> number of users online (the count of user fields)
--            '~w' -> the watermark: sessions scored <= it were already taken out of
--                    the online counts ("settled")
--   D  zset  (per partition) artifact id -> when the sweeper should next look (ms)
-- Session ids come packed by the service: '#' + an 8-byte digest of the id. User ids
-- never start with '#' or '~', so session, user and '~' fields cannot collide.
-- A session is online while now - lastSeen < timeout.
--! include lib/recent.lua

local WATERMARK = '~w'

-- One more online session of `user`; returns how many the user has now.
local function user_joined(I, user)
  local mine = redis.call('HINCRBY', I, user, 1)
  if mine == 1 then
    redis.call('HINCRBY', I, '~n', 1)
    recent_back(user) -- where-now/last-seen hook (lib/recent.lua)
  end
  return mine
end

-- One online session of `user` fewer; returns how many the user has left (0: offline).
local function user_left(I, user)
  local mine = redis.call('HINCRBY', I, user, -1)
  if mine <= 0 then
    redis.call('HDEL', I, user)
    if redis.call('HINCRBY', I, '~n', -1) <= 0 then redis.call('HDEL', I, '~n') end
    return 0
  end
  return mine
end

-- Take sessions whose last heartbeat is <= limit out of the online counts, once each.
-- Appends a leave event for every user whose last online session went.
local function settle(Z, I, limit, events)
  local mark = redis.call('HGET', I, WATERMARK)
  local low = '-inf'
  if mark then
    if tonumber(mark) >= limit then return end
    low = '(' .. mark
  end
  local expired = redis.call('ZRANGEBYSCORE', Z, low, limit)
  if #expired == 0 then return end
  for _, sid in ipairs(expired) do
    local raw = redis.call('HGET', I, sid)
    if raw then
      local info = cmsgpack.unpack(raw)
      local user = info[1]
      local mine = user_left(I, user)
      if mine == 0 then
        local reason = 'timeout'
        if info[4] == 1 then reason = 'left' end
        events[#events + 1] = {'leave', user, reason}
        recent_left(user, tonumber(redis.call('ZSCORE', Z, sid)), reason) -- lib/recent.lua
      else
        events[#events + 1] = {'sessions', user, mine}
      end
    end
  end
  redis.call('HSET', I, WATERMARK, limit)
end

-- How long every key of an artifact (and the partition's index) lives after `schedule`
-- last rewrote the artifact's due: retention + 2 x timeout. A heartbeat rewrites the due
-- at the latest when it is less than `margin` away, and the stored due is at most one
-- timeout after that write while a session is online, so the keys always outlive the
-- last heartbeat by retention + timeout (what a TTL renewed by every heartbeat gave).
local function key_ttl(timeout, retention)
  return retention + 2 * timeout
end

local function touch(ttl, ...)
  for _, key in ipairs({...}) do redis.call('PEXPIRE', key, ttl) end
end

-- Point the partition's sweep index at the artifact's next deadline: when its oldest
-- online session times out, or its oldest stale session passes retention; and renew the
-- TTL of the artifact's keys and of the index. An artifact without sessions has no keys.
local function schedule(Z, I, D, artifact, limit, timeout, retention)
  local oldest = redis.call('ZRANGE', Z, 0, 0, 'WITHSCORES')
  if #oldest == 0 then
    redis.call('DEL', I)
    redis.call('ZREM', D, artifact)
    return
  end
  local score = tonumber(oldest[2])
  local due
  if score > limit then
    due = score + timeout
  else
    due = score + retention
    local online = redis.call('ZRANGEBYSCORE', Z, '(' .. limit, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if #online > 0 then due = math.min(due, tonumber(online[2]) + timeout) end
  end
  redis.call('ZADD', D, due, artifact)
  touch(key_ttl(timeout, retention), Z, I, D)
end

-- Whether a heartbeat that only refreshed an online session must rewrite the due. A
-- refresh only moves a session later, so the stored due can only be earlier than needed
-- (the sweeper would look once for nothing): rewrite it only when it is near, so the
-- sweeper is not woken for a session that is still beating, and the TTLs get renewed.
local function due_soon(D, artifact, now, timeout)
  local due = redis.call('ZSCORE', D, artifact)
  return not due or tonumber(due) < now + math.floor(timeout / 3)
end

local function counts(Z, I, limit)
  return tonumber(redis.call('HGET', I, '~n') or '0'), redis.call('ZCOUNT', Z, '(' .. limit, '+inf')
end

-- One message per script run that changed who is online: {online, sessions, events...}.
local function publish(channel, events, online, sessions)
  if #events == 0 then return end
  redis.call('PUBLISH', channel, cmsgpack.pack({online, sessions, events}))
end
