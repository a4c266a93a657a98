-- lib/view_note.lua: note_view(), what a view notes on the USER's slot: the user's views
-- index, which erasure walks, and the user's "recently viewed" list, moved to the top at
-- Redis's clock (NOW, lib/now.lua). Shared by stats/note_view.lua (its own call, on a
-- Cluster) and stats/view.lua (one call with the view, on a single server).
-- IX the views index set ('<artifact>/<version>')  RZ recent zset artifact -> last view
-- (ms)  RH recent hash artifact -> version; keep: recent entries kept; ttl: TTL (ms) of an
-- idle user's recent list.
-- An older time never overwrites a newer one (ZADD GT), so a replayed call is harmless
-- (a later call in the same millisecond still sets the version it viewed);
-- the list keeps only the most recent `keep` artifacts.
-- returns noted (1 if the version is new to the index else 0), moved (1 if the recent
-- entry moved else 0)
local function note_view(IX, RZ, RH, artifact, version, keep, ttl)
  local noted = redis.call('SADD', IX, artifact .. '/' .. version)
  local moved = redis.call('ZADD', RZ, 'GT', 'CH', NOW, artifact)
  if moved == 0 and tonumber(redis.call('ZSCORE', RZ, artifact)) == NOW then
    -- another version of the artifact viewed in the same millisecond: the later is shown
    redis.call('HSET', RH, artifact, version)
  elseif moved == 1 then
    redis.call('HSET', RH, artifact, version)
    local extra = redis.call('ZCARD', RZ) - tonumber(keep)
    if extra > 0 then
      local dropped = redis.call('ZRANGE', RZ, 0, extra - 1)
      redis.call('ZREMRANGEBYRANK', RZ, 0, extra - 1)
      redis.call('HDEL', RH, unpack(dropped))
    end
  end
  redis.call('PEXPIRE', RZ, ttl)
  redis.call('PEXPIRE', RH, ttl)
  return noted, moved
end
