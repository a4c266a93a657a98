-- where_now_read.lua: a user's where-now candidates, newest first, and the time read.
-- KEYS[1] index zset ('<artifact>/<session digest hex>' -> when written, ms)
-- KEYS[2] the index's generation (a string where_now_add.lua changes at each join and
-- each member added or dropped, where_now_prune.lua at each member dropped)
-- ARGV[1] entries read at most  ARGV[2] how recent a write makes an entry fresh (ms)
-- ARGV[3] the generation the caller last read the members at ('' for none)
-- returns {now (ms, this node's clock), fresh, generation ('' if none), the members
-- joined by '\n' ('' for none)}, or just {now} when the generation is ARGV[3]: nothing
-- joined, left the index or came into it since, so the caller's members (and what it
-- learnt of them) still hold. Read-only. The first `fresh` members were written within
-- ARGV[2] of now: an online session's entry is rewritten often enough to be one of those
-- (a hint, which saves asking an artifact likely online for its recently-here entry).
-- Scores are not sent (formatting doubles was most of the cost): a prune drops only
-- entries written before `now`, so an entry rewritten after this read is kept. One
-- string, not one per member: the service keeps what it parsed of it by its content (and
-- passing the members through Lua is most of this script's cost: a poll with no join
-- or prune since does without).
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local generation = redis.call('GET', KEYS[2]) or ''
if generation ~= '' and generation == ARGV[3] then
  return {now}
end
local members = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
local fresh = redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[2]), '+inf')
return {now, math.min(fresh, #members), generation, table.concat(members, '\n')}
