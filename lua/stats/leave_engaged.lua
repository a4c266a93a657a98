-- leave_engaged.lua: a leave (the page-close beacon) carrying engaged time: lib/engage.lua's
-- engage(), then live/leave.lua as it is, in one atomic call (engage() reads the session's
-- version before the leave may delete it).
-- KEYS: the leave's, then LR and DIRTY (lib/engage.lua)
-- ARGV: the leave's, then engage()'s 12 (lib/engage.lua)
-- returns what live/leave.lua returns
--! include lib/now.lua
--! include lib/engage.lua
engage()
--! include live/leave.lua
