-- lib/pagemark.lua: the artifact's page mark, field '~c' of I (KEYS[2]): a number every
-- presence writer run past the heartbeat's fast path changes (lib/presence.lua's
-- publish), and the fast path too for a user with several sessions here (which of them
-- is latest, and so the row's version and state, may change: live/heartbeat.lua), so a presence page built when the mark had one value still holds while it
-- has it, apart from sessions that timed out and are not settled yet (live/presence.lua
-- looks for those) and lastSeen times, which only fast-path heartbeats move.
-- The service keeps built pages by their mark (presence_svc/http/page_cache.py) and asks
-- live/presence.lua for a new page only if the mark moved. Under one mark no deadline
-- moves earlier (only the fast path writes one, the session's own, from now on), so a
-- kept page holds until the first deadline it was built with: the service tells that
-- with a plain HGET of the mark and TIME (presence_svc/redis/page_checks.py).
-- A new mark starts at Redis's clock in microseconds (NOW * 1000), not at 1, so a room
-- whose keys expired and came back never repeats a mark an old page was built at (that
-- would take more than 1 000 writer runs a millisecond on one artifact).

-- Returns whether the artifact has keys (I exists).
local function page_mark_bump()
  local I = KEYS[2]
  if redis.call('EXISTS', I) == 0 then return false end  -- the keys are gone: none to mark
  if redis.call('HINCRBY', I, '~c', 1) == 1 then
    redis.call('HSET', I, '~c', string.format('%.0f', NOW * 1000))
  end
  return true
end
