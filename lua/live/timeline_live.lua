-- timeline_live.lua: artifacts of one partition whose info hash holds minutes (its field
-- '~t', lib/timeline.lua) of an hour that ended: the rollup's other index, one step of a
-- scan of the partition's sweep index (every artifact with keys, so every '~t').
-- KEYS[1] D the partition's sweep index
-- ARGV[1] the partition's key prefix ('ps:{T}:': an artifact's I is that plus
-- '<artifact>:h', the same slot as D)  ARGV[2] ZSCAN cursor ('0' to start)  ARGV[3] how
-- many to scan (ZSCAN's COUNT)  ARGV[4] the current hour (ms / 3600000): hours before it
-- have ended
-- returns {next cursor ('0': done), artifact id, its oldest hour in '~t', ...}; read-only.
-- Every artifact in D throughout the scan is looked at (ZSCAN's guarantee).
local scan = redis.call('ZSCAN', KEYS[1], ARGV[2], 'COUNT', tonumber(ARGV[3]))
local out = {scan[1]}
local current = tonumber(ARGV[4])
local members = scan[2]
for i = 1, #members, 2 do
  local packed = redis.call('HGET', ARGV[1] .. members[i] .. ':h', '~t')
  if packed then
    local hour = math.floor(cmsgpack.unpack(packed)[1] / 60)
    if hour < current then
      out[#out + 1] = members[i]
      out[#out + 1] = hour
    end
  end
end
return out
