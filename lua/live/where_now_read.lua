-- where_now_read.lua: a user's where-now candidates, newest first, and the time read.
-- KEYS[1] index zset ('<artifact>/<session digest hex>' -> when written, ms)
-- ARGV[1] entries read at most
-- returns {now (ms, this node's clock), member, member, ...}; read-only. Scores are not
-- sent (formatting doubles was most of the cost): a prune drops only entries written
-- before `now`, so an entry rewritten after this read is kept.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local members = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
table.insert(members, 1, now)
return members
