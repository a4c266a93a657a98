-- heartbeat_engaged.lua: a heartbeat carrying engaged time: lib/engage.lua's engage(),
-- then live/heartbeat.lua as it is, in one atomic call.
-- KEYS: the heartbeat's, then LR and DIRTY (lib/engage.lua)
-- ARGV: the heartbeat's, then engage()'s 12 (lib/engage.lua)
-- returns what live/heartbeat.lua returns
--! include lib/now.lua
--! include lib/engage.lua
engage()
--! include live/heartbeat.lua
