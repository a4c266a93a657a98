-- settle.lua: charge users' buckets (all on one slot: one partition's users) with the
-- requests one process admitted since its last settlement, and say what each holds now
-- (GCRA: a bucket is kept as one number, the time its next token is free, so each is a
-- GET and a SET). Every admitted request is charged, past empty too: the bucket then goes
-- into debt (that time lies more than a burst ahead), paid back by refusals.
-- KEYS[i] a bucket (string: that time, ms since the epoch; expires when the bucket is full)
-- ARGV[3i-2] ms one token of KEYS[i] takes to come back (1000 / rate; may be fractional)
-- ARGV[3i-1] its burst  ARGV[3i] requests to charge it with (>= 1)
-- returns, for each bucket in order, the tokens it holds after the charge, in thousandths
--         (negative: a debt)
--! include lib/now.lua
local left = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[3 * i - 2])
  local free_at = tonumber(redis.call('GET', key) or '0')
  if free_at < NOW then free_at = NOW end
  free_at = free_at + tonumber(ARGV[3 * i]) * interval
  redis.call('SET', key, string.format('%.3f', free_at), 'PX', math.ceil(free_at - NOW))
  left[i] = math.floor((NOW + tonumber(ARGV[3 * i - 1]) * interval - free_at) * 1000 / interval)
end
return left
