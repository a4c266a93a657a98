-- view.lua: a whole view in one call, on a SINGLE server only: note_view's notes on the
-- user's keys (lib/view_note.lua), then record_view's count on the artifact's keys
-- (lib/view_record.lua). The keys span two hash slots (the user's and the artifact's), so
-- a Cluster runs the two scripts (stats/note_view.lua, stats/record_view.lua) instead, in
-- one round trip to both nodes; one server does not care about slots and saves a call.
-- Same outcome either way: the notes first (idempotent on a retry), then the view.
-- KEYS[1..10] and ARGV[1..7]: record_view's (lib/view_record.lua)
-- KEYS[11] the user's views index set  KEYS[12] the user's recent zset
-- KEYS[13] the user's recent hash (note_view.lua's KEYS[1..3])
-- ARGV[8] recent entries kept  ARGV[9] TTL (ms) of an idle user's recent list
-- returns record_view's {counted (1|0), version views, version unique viewers, now (ms)}
--! include lib/now.lua
--! include lib/outbox_event.lua
--! include lib/view_note.lua
--! include lib/view_record.lua

note_view(KEYS[11], KEYS[12], KEYS[13], ARGV[1], ARGV[2], ARGV[8], ARGV[9])
return record_view()
