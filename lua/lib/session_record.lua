-- lib/session_record.lua: SESSION_RAW and SESSION_INFO, the writer's session record
-- (KEYS[2] I, field ARGV[9]: msgpack {user, version, state, flags...}) as a script read it
-- before live/heartbeat.lua's fast path (stats/heartbeat_engaged.lua's report checks whose
-- session it is: lib/engage_report.lua), so that the fast path does not read and unpack it
-- again. SESSION_RAW nil: not read; else HGET's answer (false: no record). SESSION_INFO
-- nil: not unpacked; else the record unpacked, which nobody may change. Values, not
-- functions (a closure costs Redis an allocation each call). Only code that runs before
-- anything writes KEYS[2] may set or use them.
local SESSION_RAW, SESSION_INFO
