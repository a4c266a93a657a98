-- scrub_stream.lua: rewrite a views stream (or its dead letters, or a webhooks outbox:
-- presence changes and engagement events)
-- with one user's entries under a tombstone and without their session id or state,
-- leaving no byte of them behind.
-- KEYS[1] stream
-- ARGV[1] user id  ARGV[2] tombstone  ARGV[3] entries rewritten at most
-- ARGV[4] the group whose holdings are counted apart (webhooks: a worker may hold them in
-- memory longer than a drain holds a batch)
-- returns {entries rewritten, of the user's entries those a consumer holds unacknowledged
-- (a batch in flight may still write them as they were), of those the ones group ARGV[4]
-- holds}; {-1, 0, 0}: more than ARGV[3] entries are still owed to the ledger (try once it
-- drained)
-- XDEL and XTRIM only flag entries inside a node, whose bytes stay (DUMP, RDB), so the
-- stream is rebuilt: same ids, same last id. Entries every group has acknowledged go (they
-- are in the ledger; trim_stream.lua would drop them too), so the work is the backlog.
-- Each consumer group comes back with its last-delivered id just before its oldest
-- pending entry, so nothing pending is lost: it is delivered again (the ledger is
-- idempotent on the view id). A stream without groups (dead letters) is rebuilt whole.
local S, user, tomb, most = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', S) == 0 then return {0, 0, 0} end

local function before(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if tonumber(seq) > 0 then return ms .. '-' .. (tonumber(seq) - 1) end
  if tonumber(ms) == 0 then return '0-0' end
  return string.format('%.0f', tonumber(ms) - 1) .. '-18446744073709551615'
end

local info = redis.call('XINFO', 'STREAM', S)
local last = nil
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last = info[i + 1] end
end
local function less(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams < bms or (ams == bms and aseq < bseq)
end

-- Each group's restart point, and the oldest entry some group still needs ('-': all).
local groups, keep, owed, delivered = {}, nil, false, '0-0'
for _, group in ipairs(redis.call('XINFO', 'GROUPS', S)) do
  local g = {}
  for i = 1, #group, 2 do g[group[i]] = group[i + 1] end
  local from, need = g['last-delivered-id'], nil
  if less(delivered, from) then delivered = from end
  if tonumber(g['pending']) > 0 then
    need = redis.call('XPENDING', S, g['name'])[2]
    from = before(need)
  else
    local nxt = redis.call('XRANGE', S, '(' .. from, '+', 'COUNT', 1)
    if #nxt > 0 then need = nxt[1][1] end
  end
  if need then
    owed = true
    if keep == nil or less(need, keep) then keep = need end
  end
  groups[#groups + 1] = {g['name'], from}
end
if #groups == 0 then keep = '-' end

local names = {}
for _, g in ipairs(groups) do names[#names + 1] = g[1] end
local apart = ARGV[4]
local in_flight, held_apart = 0, 0
-- Counts `id` if a consumer holds it unacknowledged (read, maybe being written right now).
local function note_pending(id)
  local held = false
  for _, name in ipairs(names) do
    if #redis.call('XPENDING', S, name, id, id, 1) > 0 then
      held = true
      if name == apart then held_apart = held_apart + 1 break end
    end
  end
  if held then in_flight = in_flight + 1 end
end

local entries = {}
if #groups == 0 or owed then
  entries = redis.call('XRANGE', S, keep, '+', 'COUNT', most + 1)
  if #entries > most then return {-1, 0, 0} end
end
-- Everything is read and checked before the first write: a script is not rolled back.
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'v' then
      local ok, view = pcall(cmsgpack.unpack, fields[i + 1])
      -- [viewId, artifact, version, user, session, ms] (presence_svc/ledger/entry.py)
      if ok and type(view) == 'table' and view[4] == user then
        if not less(delivered, entry[1]) then note_pending(entry[1]) end
        view[4] = tomb
        view[5] = ''
        fields[i + 1] = cmsgpack.pack(view)
      end
    elseif fields[i] == 'm' then
      -- a presence outbox entry (lib/presence.lua's publish): [artifact, online, sessions,
      -- events, active, now]; each event names its user second, a join or state event
      -- carries the session's state fourth
      local ok, change = pcall(cmsgpack.unpack, fields[i + 1])
      local mine = false
      if ok and type(change) == 'table' and type(change[4]) == 'table' then
        for _, event in ipairs(change[4]) do
          if type(event) == 'table' and event[2] == user then
            mine = true
            event[2] = tomb
            if event[1] == 'join' or event[1] == 'state' then event[4] = '' end
          end
        end
      end
      if mine then
        if not less(delivered, entry[1]) then note_pending(entry[1]) end
        fields[i + 1] = cmsgpack.pack(change)
      end
    elseif fields[i] == 'e' then
      -- an engagement event (lib/outbox_event.lua): [kind, user, artifact, version, ...]
      local ok, event = pcall(cmsgpack.unpack, fields[i + 1])
      if ok and type(event) == 'table' and event[2] == user then
        if not less(delivered, entry[1]) then note_pending(entry[1]) end
        event[2] = tomb
        fields[i + 1] = cmsgpack.pack(event)
      end
    end
  end
end
redis.call('DEL', S)
for _, entry in ipairs(entries) do
  redis.call('XADD', S, entry[1], unpack(entry[2]))
end
for _, g in ipairs(groups) do
  redis.call('XGROUP', 'CREATE', S, g[1], g[2], 'MKSTREAM')
end
if last and redis.call('EXISTS', S) == 1 then redis.call('XSETID', S, last) end
return {#entries, in_flight, held_apart}
