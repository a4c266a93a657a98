-- settle.lua: charge users' buckets of one route class (all on one slot: one partition's
-- users) with the requests one process admitted since its last settlement, and say what
-- each holds now (GCRA: a bucket is kept as one number, the time its next token is free,
-- so each is a GET and a SET). Every admitted request is charged, past empty too: the
-- bucket then goes into debt (that time lies more than a burst ahead), paid back by
-- refusals.
-- KEYS[i] a bucket (string: that time, whole ms since the epoch, rounded up; expires when
--         the bucket is full)
-- ARGV[1] ms one token takes to come back (1000 / rate; may be fractional)  ARGV[2] burst
-- ARGV[2+i] requests to charge KEYS[i] with (>= 1)
-- returns, for each bucket in order, the tokens it holds after the charge, in thousandths
--         (negative: a debt)
--! include lib/now.lua
local interval = tonumber(ARGV[1])
local full = NOW + tonumber(ARGV[2]) * interval
local left = {}
for i, key in ipairs(KEYS) do
  local free_at = tonumber(redis.call('GET', key) or '0')
  if free_at < NOW then free_at = NOW end
  free_at = math.ceil(free_at + tonumber(ARGV[2 + i]) * interval)
  redis.call('SET', key, free_at, 'PX', free_at - NOW)
  left[i] = math.floor((full - free_at) * 1000 / interval)
end
return left
