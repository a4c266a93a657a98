-- take.lua: take tokens from a user's bucket for one route class (GCRA: the bucket is kept
-- as one number, the time its next token is free, so a take is a GET and a SET).
-- KEYS[1] the bucket (string: that time, ms since the epoch; expires when the bucket is full)
-- ARGV[1] ms one token takes to come back (1000 / rate; may be fractional)  ARGV[2] burst
-- ARGV[3] lease: tokens a process may take at once to spend by itself, given only while
-- the bucket keeps at least half of the burst after them (one is always taken)
-- returns {tokens taken, tokens left, ms until the bucket is full} when at least one is
--         free, or {0, 0, ms until one is} when none is (nothing written)
--! include lib/now.lua
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local free_at = tonumber(redis.call('GET', KEYS[1]) or '0')
if free_at < NOW then free_at = NOW end
local tokens = math.floor((NOW + burst * interval - free_at) / interval)
if tokens < 1 then
  return {0, 0, math.ceil(free_at + interval - burst * interval - NOW)}
end
local taken = 1
local spare = tokens - 1 - math.floor(burst / 2)
if spare > 0 then taken = taken + math.min(lease - 1, spare) end
local next_free = free_at + taken * interval
local full_in = math.ceil(next_free - NOW)
redis.call('SET', KEYS[1], string.format('%.3f', next_free), 'PX', full_in)
return {taken, tokens - taken, full_in}
