-- lib/view_record.lua: record_view(), counting one view of a version, at most once per
-- debounce window, and appending it to the partition's views stream for the ledger. All
-- its keys share the artifact's hash slot. Shared by stats/record_view.lua (its own call)
-- and stats/view.lua (with the user's notes, on a single server): both take these keys
-- and arguments first.
-- KEYS[1] debounce key (artifact, version, user)   KEYS[2] artifact stats hash
-- KEYS[3] artifact viewers set   KEYS[4] artifact versions zset (version -> last view)
-- KEYS[5] version stats hash   KEYS[6] version viewers hash (user -> msgpack
--         {views, firstViewedAt, lastViewedAt[, engagedMs[, hidden]]})
-- KEYS[7] version viewers by last view zset (hidden viewers are never in it)
-- KEYS[8] views stream
-- KEYS[9] partition outbox stream (webhooks: a first view of the version appends
--         version.seen, only while it exists; lib/outbox_event.lua)
-- KEYS[10] the artifact's latest-version hash (read for that event only)
-- ARGV[1] artifact id  ARGV[2] version id  ARGV[3] user id  ARGV[4] session id ('' none)
-- ARGV[5] view id (unique; the ledger is idempotent on it)  ARGV[6] debounce window (ms)
-- ARGV[7] '1' the user's view history is hidden: counted like any view, marked in the
--         entry (element 5, element 4 written 0 if absent) and kept out of KEYS[7], which
--         viewer lists page through; '' visible (a mark from before is cleared)
-- returns {counted (1|0), version views, version unique viewers, now (ms)}
-- Inside the window nothing is written: a reload or a spamming client counts once.
-- Needs lib/now.lua and lib/outbox_event.lua included before it.

local function record_view()
  local now = NOW
  local artifact, version, user = ARGV[1], ARGV[2], ARGV[3]

  if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[6]) then
    local views = tonumber(redis.call('HGET', KEYS[5], 'views') or '0')
    return {0, views, redis.call('HLEN', KEYS[6]), now}
  end

  redis.call('HINCRBY', KEYS[2], 'views', 1)
  redis.call('HSET', KEYS[2], 'last', now)
  redis.call('SADD', KEYS[3], user)
  redis.call('ZADD', KEYS[4], now, version)
  local views = redis.call('HINCRBY', KEYS[5], 'views', 1)

  local raw = redis.call('HGET', KEYS[6], user)
  local mine
  if raw then
    mine = cmsgpack.unpack(raw)
    mine[1] = mine[1] + 1
    mine[3] = now
    -- a later element present without engagedMs: fill the hole so msgpack keeps them all
    if mine[4] == nil and mine[5] ~= nil then mine[4] = 0 end
  else
    mine = {1, now, now}
  end
  if ARGV[7] == '1' then
    mine[4] = mine[4] or 0
    mine[5] = 1
    redis.call('ZREM', KEYS[7], user)
  else
    mine[5] = nil
    redis.call('ZADD', KEYS[7], now, user)
  end
  redis.call('HSET', KEYS[6], user, cmsgpack.pack(mine))
  -- webhooks: the user's first counted view of this version is version.seen
  if not raw then
    outbox_event(KEYS[9], KEYS[10], 'seen', user, ARGV[7] == '1', artifact, version, 0)
  end

  -- One field, msgpack [viewId, artifact, version, user, session, ms]: compact in Redis
  -- and decoded in C by the drain.
  local entry = cmsgpack.pack({ARGV[5], artifact, version, user, ARGV[4], now})
  redis.call('XADD', KEYS[8], '*', 'v', entry)
  return {1, views, redis.call('HLEN', KEYS[6]), now}
end
