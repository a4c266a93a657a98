-- trim_stream.lua: drop the entries of a stream that every consumer group has delivered
-- and acknowledged, and report what is still owed; a group other than the protected one
-- that lags too far loses its oldest entries instead of holding the stream.
-- KEYS[1] stream (a views stream, or a webhooks outbox)
-- ARGV[1] the group never capped (the ledger's: it never loses a view; '' none)
-- ARGV[2] the most entries any other group (webhooks) may hold the stream by (0: no cap)
-- returns {entries left, id of the oldest entry not yet acknowledged or '' if none,
-- entries dropped for a capped group (acknowledged or skipped for it, never delivered)}
-- Never trims below the oldest entry still pending or not yet delivered to the protected
-- group (a plain XTRIM MAXLEN could drop views the ledger never got). Without any group,
-- nothing is trimmed: no worker has ever read the stream. The cap: when the group needing
-- the oldest entry is a capped one and the stream (trimmed to that entry) still has more
-- than ARGV[2] entries, that group's oldest ones are given up (its pending ones
-- acknowledged, its position moved past them with XGROUP SETID), at most MOST_DROPPED per
-- call (later calls go on), and the trim moves on.
local MOST_DROPPED, CHUNK = 50000, 1000
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, '', 0} end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  local oldest = ''
  if #first > 0 then oldest = first[1][1] end
  return {redis.call('XLEN', KEYS[1]), oldest, 0}
end
local protected, cap = ARGV[1] or '', tonumber(ARGV[2] or '0') or 0

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local ams, aseq = parse(a)
  local bms, bseq = parse(b)
  return ams < bms or (ams == bms and aseq < bseq)
end

-- The oldest entry a group still needs: its oldest pending entry, else the first entry
-- after the last one it was delivered; nil when it needs nothing.
local function need_of(name, pending, delivered)
  if pending > 0 then return redis.call('XPENDING', KEYS[1], name)[2] end
  local nxt = redis.call('XRANGE', KEYS[1], '(' .. delivered, '+', 'COUNT', 1)
  if #nxt > 0 then return nxt[1][1] end
  return nil
end

local keep, holder = nil, nil  -- the oldest entry needed, and the group needing it
for _, group in ipairs(groups) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  local need = need_of(info['name'], tonumber(info['pending']), info['last-delivered-id'])
  if need and (keep == nil or less(need, keep)) then keep, holder = need, info end
end

if keep == nil then
  redis.call('XTRIM', KEYS[1], 'MAXLEN', 0)
  return {0, '', 0}
end
redis.call('XTRIM', KEYS[1], 'MINID', keep)

local dropped = 0
local len = redis.call('XLEN', KEYS[1])
if cap > 0 and holder['name'] ~= protected and len > cap then
  -- Give up the capped group's oldest `excess` entries: a chunk at a time (bounded
  -- memory), counting those it was never delivered, then its pending ones up to the cut.
  local name, delivered = holder['name'], holder['last-delivered-id']
  local left, start, cut = math.min(len - cap, MOST_DROPPED), keep, nil
  while left > 0 do
    local chunk = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', math.min(left, CHUNK))
    if #chunk == 0 then break end
    for _, entry in ipairs(chunk) do
      if less(delivered, entry[1]) then dropped = dropped + 1 end
    end
    cut = chunk[#chunk][1]
    left = left - #chunk
    start = '(' .. cut
  end
  if cut then
    while true do
      local pending = redis.call('XPENDING', KEYS[1], name, '-', cut, CHUNK)
      if #pending == 0 then break end
      local ids = {}
      for i, p in ipairs(pending) do ids[i] = p[1] end
      local acked = redis.call('XACK', KEYS[1], name, unpack(ids))
      dropped = dropped + acked
      if acked == 0 then break end
    end
    if less(delivered, cut) then redis.call('XGROUP', 'SETID', KEYS[1], name, cut) end
    -- Everyone's needs again (the capped group's moved), and the trim to the oldest.
    keep = nil
    for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
      local info = {}
      for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
      local need = need_of(info['name'], tonumber(info['pending']), info['last-delivered-id'])
      if need and (keep == nil or less(need, keep)) then keep = need end
    end
    if keep == nil then
      redis.call('XTRIM', KEYS[1], 'MAXLEN', 0)
      return {0, '', dropped}
    end
    redis.call('XTRIM', KEYS[1], 'MINID', keep)
    len = redis.call('XLEN', KEYS[1])
  end
end
return {len, keep, dropped}
