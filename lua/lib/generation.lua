-- lib/generation.lua: bump_generation(key) moves a where-now index's generation on: one
-- above its last value and at least Redis's clock in microseconds (NOW, lib/now.lua), so a
-- value a reader may have kept never comes back: not after the key expired or was erased
-- (it starts again at the clock), nor after a failover lost the last few bumps (the clock
-- has passed them). The key keeps its TTL.
local function bump_generation(key)
  local last = tonumber(redis.call('GET', key) or '0') or 0
  redis.call('SET', key, string.format('%.0f', math.max(last + 1, NOW * 1000)), 'KEEPTTL')
end
