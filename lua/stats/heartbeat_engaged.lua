-- heartbeat_engaged.lua: a heartbeat carrying engaged time: lib/engage.lua's engage()
-- (into the session's accumulator, folded at most once per fold interval; its hot path
-- inline first, lib/engage_report.lua), then live/heartbeat.lua as it is, in one atomic
-- call.
-- KEYS: the heartbeat's (lib/engage.lua builds its own from the rules' prefix)
-- ARGV: the heartbeat's, then engage()'s last 4 (lib/engage.lua)
-- returns what live/heartbeat.lua returns
--! include lib/now.lua
--! include lib/engage_report.lua
if not ENGAGED then
--! include lib/engage.lua
  engage(false)
end
--! include live/heartbeat.lua
