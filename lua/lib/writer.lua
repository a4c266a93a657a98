-- lib/writer.lua: the opening every presence writer shares (heartbeat, leave, sweep,
-- erase_user): the artifact's keys and arguments, the clock, and settling the sessions
-- that timed out since the last look. Defines Z, I, D, artifact, channel, timeout,
-- retention, now, limit and events (the events the script publishes at its end).
-- KEYS[1] Z sessions zset  KEYS[2] I session info and per-user count hash
-- KEYS[3] D partition sweep index
-- ARGV[1] artifact id  ARGV[2] event channel  ARGV[3] online timeout (ms)
-- ARGV[4] retention (ms); each script's own arguments follow from ARGV[5]
-- then, LAST after each script's own keys and arguments: the recent zset and its
-- partition index (KEYS), the recent keep time and cap (ARGV); see lib/recent.lua
--! include lib/presence.lua

local Z, I, D = KEYS[1], KEYS[2], KEYS[3]
local artifact, channel = ARGV[1], ARGV[2]
local timeout, retention = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = NOW
local limit = now - timeout
local events = {}
settle(Z, I, limit, events)
