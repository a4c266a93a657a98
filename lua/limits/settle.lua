-- settle.lua: charge a user's bucket for one route class with the requests one process
-- admitted since its last settlement, and say what the bucket holds now (GCRA: the bucket
-- is kept as one number, the time its next token is free, so a settlement is a GET and a
-- SET). Every admitted request is charged, past empty too: the bucket then goes into debt
-- (that time lies more than a burst ahead), which the user pays back by being refused.
-- KEYS[1] the bucket (string: that time, ms since the epoch; expires when the bucket is full)
-- ARGV[1] ms one token takes to come back (1000 / rate; may be fractional)  ARGV[2] burst
-- ARGV[3] requests to charge (>= 1)
-- returns the tokens the bucket holds after the charge, in thousandths (negative: a debt)
--! include lib/now.lua
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local free_at = tonumber(redis.call('GET', KEYS[1]) or '0')
if free_at < NOW then free_at = NOW end
free_at = free_at + tonumber(ARGV[3]) * interval
local full_in = math.ceil(free_at - NOW)
redis.call('SET', KEYS[1], string.format('%.3f', free_at), 'PX', full_in)
return math.floor((NOW + burst * interval - free_at) * 1000 / interval)
