-- lib/outbox_event.lua: outbox_event(), appending one engagement event for webhooks
-- (version.seen, version.read) to the partition's outbox stream in the script that makes
-- the change, only while the stream exists (the webhook dispatcher makes it while an
-- endpoint wants the outbox's events): a change that did not happen sends nothing.
-- Field 'e' = msgpack {kind ('seen' | 'read'), user ('' when the viewer hid their view
-- history), artifact, version, now (ms), latest (1 if the version is the artifact's latest
-- at that moment, else 0), engaged ms (a read's total at the crossing; 0 for a seen)}.
-- OB: the outbox; LV: the artifact's latest-version hash (stats/set_latest.lua), on the
-- same slot as OB (the artifact's tag).
local function outbox_event(OB, LV, kind, user, hidden, artifact, version, engaged)
  if redis.call('EXISTS', OB) == 0 then return end
  local latest = 0
  if redis.call('HGET', LV, 'v') == version then latest = 1 end
  if hidden then user = '' end
  redis.call('XADD', OB, '*', 'e',
    cmsgpack.pack({kind, user, artifact, version, NOW, latest, engaged}))
end
