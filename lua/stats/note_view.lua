-- note_view.lua: what a view notes on the USER's slot, beside record_view.lua on the
-- artifact's slot (both in one round trip, on a Cluster; a single server runs both in one
-- call, stats/view.lua): the user's views index, which erasure walks, and the user's
-- "recently viewed" list, moved to the top at Redis's clock here (lib/view_note.lua).
-- KEYS[1] the user's views index set ('<artifact>/<version>')
-- KEYS[2] recent zset artifact -> last view (ms)  KEYS[3] recent hash artifact -> version
-- ARGV[1] artifact id  ARGV[2] version id  ARGV[3] recent entries kept
-- ARGV[4] TTL (ms) of an idle user's recent list
-- returns {1 if the version is new to the index else 0, 1 if the recent entry moved else 0}
--! include lib/now.lua
--! include lib/view_note.lua

return {note_view(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])}
