-- take.lua: take one token from a user's bucket for one route class (GCRA: the bucket is
-- kept as one number, the time its next token is free, so a take is a GET and a SET).
-- KEYS[1] the bucket (string: that time, ms since the epoch; expires when the bucket is full)
-- ARGV[1] ms one token takes to come back (1000 / rate; may be fractional)  ARGV[2] burst
-- returns {1, tokens left, ms until the bucket is full} when taken, or
--         {0, 0, ms until a token is free} when the bucket is empty (nothing written)
--! include lib/now.lua
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local free_at = tonumber(redis.call('GET', KEYS[1]) or '0')
if free_at < NOW then free_at = NOW end
local next_free = free_at + interval
local allowed_from = next_free - burst * interval
if NOW < allowed_from then
  return {0, 0, math.ceil(allowed_from - NOW)}
end
local full_in = math.ceil(next_free - NOW)
redis.call('SET', KEYS[1], string.format('%.3f', next_free), 'PX', full_in)
return {1, math.floor((NOW - allowed_from) / interval), full_in}
