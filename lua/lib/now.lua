-- lib/now.lua: NOW, Redis's clock in milliseconds, read once per script call.
-- A value, not a function: scripts that include it first pay no closure for it.
redis.replicate_commands()
local NOW
do
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
