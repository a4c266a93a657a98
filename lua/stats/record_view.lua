-- record_view.lua: count one view of a version, at most once per debounce window, and
-- append it to the partition's views stream for the ledger (lib/view_record.lua, where
-- KEYS and ARGV are described). All keys share one hash slot. On a Cluster it runs beside
-- note_view.lua (the user's slot); a single server runs both in one call (stats/view.lua).
-- KEYS[1..10] and ARGV[1..7]: lib/view_record.lua's
-- returns {counted (1|0), version views, version unique viewers, now (ms)}
--! include lib/now.lua
--! include lib/outbox_event.lua
--! include lib/view_record.lua

return record_view()
