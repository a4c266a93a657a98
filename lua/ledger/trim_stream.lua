-- trim_stream.lua: drop the entries of a views stream that every consumer group has
-- delivered and acknowledged, and report what is still owed to the ledger.
-- KEYS[1] views stream
-- returns {entries left, id of the oldest entry not yet acknowledged or '' if none}
-- Never trims below the oldest entry still pending or not yet delivered to some group
-- (a plain XTRIM MAXLEN could drop views the ledger never got). Without any group,
-- nothing is trimmed: no worker has ever read the stream.
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  local oldest = ''
  if #first > 0 then oldest = first[1][1] end
  return {redis.call('XLEN', KEYS[1]), oldest}
end

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local ams, aseq = parse(a)
  local bms, bseq = parse(b)
  return ams < bms or (ams == bms and aseq < bseq)
end

-- The oldest entry some group still needs: its oldest pending entry, else the first
-- entry after the last one it was delivered; nil when it needs nothing.
local keep = nil
for _, group in ipairs(groups) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  local need = nil
  if tonumber(info['pending']) > 0 then
    need = redis.call('XPENDING', KEYS[1], info['name'])[2]
  else
    local nxt = redis.call('XRANGE', KEYS[1], '(' .. info['last-delivered-id'], '+', 'COUNT', 1)
    if #nxt > 0 then need = nxt[1][1] end
  end
  if need and (keep == nil or less(need, keep)) then keep = need end
end

if keep == nil then
  redis.call('XTRIM', KEYS[1], 'MAXLEN', 0)
  return {0, ''}
end
redis.call('XTRIM', KEYS[1], 'MINID', keep)
return {redis.call('XLEN', KEYS[1]), keep}
