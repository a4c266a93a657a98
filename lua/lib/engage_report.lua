-- lib/engage_report.lua: the hot path of a heartbeat's engaged time (stats/heartbeat_engaged.lua),
-- inline and before lib/engage.lua is defined (defining its functions costs Redis an
-- allocation each, every call): a report of the session's own user on the version its
-- accumulator holds, its fold not due yet, only clamps the delta and adds it to the
-- accumulator, exactly as engage(false) does on that path. Sets ENGAGED true when it
-- handled the report (a session of another user included: nothing counts, as in
-- engage()); anything else (no accumulator, another version, the fold due, no version
-- named) leaves ENGAGED false for engage(false, REPORT_HELD), which looks at everything
-- again (nothing has been written yet) but the accumulator it read. Keys and arguments as lib/engage.lua's. The session's
-- record it reads is left for live/heartbeat.lua's fast path (lib/session_record.lua).
--! include lib/session_record.lua
local ENGAGED, REPORT_HELD = false, nil  -- the accumulator as read here (nil: not read)
do
  local n, a = #KEYS, #ARGV - 4
  local sid, version = ARGV[9], ARGV[11]
  local held = false
  if version ~= '' then
    held = redis.call('HGET', KEYS[n - 2], sid)
    REPORT_HELD = held
  end
  local acc = held and cmsgpack.unpack(held)
  if type(acc) == 'table' and acc[4] == version and NOW < acc[3] then
    local raw = redis.call('HGET', KEYS[2], sid)
    SESSION_RAW = raw
    if raw then
      ENGAGED = true
      SESSION_INFO = cmsgpack.unpack(raw)
      if SESSION_INFO[1] == ARGV[10] then
        local add = math.min(tonumber(ARGV[a + 4]), math.max(0, NOW - acc[1])
          + tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]))
        acc[1] = NOW
        if add > 0 then
          if acc[2] == 0 then redis.call('ZADD', KEYS[n], acc[3], sid .. ARGV[1]) end
          acc[2] = acc[2] + add
        end
        redis.call('HSET', KEYS[n - 2], sid, cmsgpack.pack(acc))
      end
    end
  end
end
