-- lib/engage_report.lua: the hot path of a heartbeat's engaged time (stats/heartbeat_engaged.lua),
-- inline and before lib/engage.lua is defined (defining its functions costs Redis an
-- allocation each, every call): a report of the session's own user on the version its
-- accumulator holds, its fold not due yet, only clamps the delta and adds it to the
-- accumulator (already holding time: its fold entry is there), exactly as engage(false)
-- does on that path. The accumulator is in the
-- session's own record (elements 5-8, lib/session_record.lua), which the heartbeat reads
-- anyway: one HGET for both, left to live/heartbeat.lua's fast path, and one HSET. Sets
-- ENGAGED true when it handled the report (a session of another user included: nothing
-- counts, as in engage()); anything else (no record, no accumulator or an empty one,
-- another version, the fold due) leaves ENGAGED false for engage(false), which looks at
-- everything again (nothing has been written yet). Arguments as lib/engage.lua's.
--! include lib/session_record.lua
local ENGAGED = false
do
  local sid = ARGV[9]
  local raw = redis.call('HGET', KEYS[2], sid)
  SESSION_RAW = raw
  if raw then
    local info = cmsgpack.unpack(raw)
    SESSION_INFO = info
    local version = ARGV[11]
    if version == '' then version = info[2] end
    if info[8] == version and NOW < info[7] and info[6] > 0 then
      ENGAGED = true
      if info[1] == ARGV[10] then
        -- engage()'s clamp, min(ms, max(0, gap) + slack, ceiling), without its calls
        local a = #ARGV - 4
        local add, gap = tonumber(ARGV[a + 4]), NOW - info[5]
        if gap < 0 then gap = 0 end
        local most = gap + tonumber(ARGV[a + 1])
        if add > most then add = most end
        most = tonumber(ARGV[a + 2])
        if add > most then add = most end
        info[5] = NOW
        if add > 0 then info[6] = info[6] + add end
        redis.call('HSET', KEYS[2], sid, cmsgpack.pack(info))
      end
    end
  end
end
