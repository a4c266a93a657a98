-- scrub_stream.lua: rewrite a views stream (or its dead letters) with one user's entries
-- under a tombstone and without their session id, leaving no byte of them behind.
-- KEYS[1] stream
-- ARGV[1] user id  ARGV[2] tombstone  ARGV[3] entries rewritten at most
-- returns entries rewritten (-1: the stream is longer than ARGV[3]; try once it drained)
-- XDEL and XTRIM only flag entries inside a node, whose bytes stay (DUMP, RDB), so the
-- stream is rebuilt: same ids, same last id. Each consumer group comes back with its
-- last-delivered id just before its oldest pending entry, so nothing pending is lost: it
-- is delivered again (the ledger is idempotent on the view id).
local S, user, tomb, most = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', S) == 0 then return 0 end
if redis.call('XLEN', S) > most then return -1 end

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
local groups = {}
for _, group in ipairs(redis.call('XINFO', 'GROUPS', S)) do
  local g = {}
  for i = 1, #group, 2 do g[group[i]] = group[i + 1] end
  local from = g['last-delivered-id']
  if tonumber(g['pending']) > 0 then
    local oldest = redis.call('XPENDING', S, g['name'])[2]
    from = before(oldest)
  end
  groups[#groups + 1] = {g['name'], from}
end

local entries = redis.call('XRANGE', S, '-', '+')
redis.call('DEL', S)
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'v' then
      local ok, view = pcall(cmsgpack.unpack, fields[i + 1])
      -- [viewId, artifact, version, user, session, ms] (presence_svc/ledger/entry.py)
      if ok and type(view) == 'table' and view[4] == user then
        view[4] = tomb
        view[5] = ''
        fields[i + 1] = cmsgpack.pack(view)
      end
    end
  end
  redis.call('XADD', S, entry[1], unpack(fields))
end
for _, g in ipairs(groups) do
  redis.call('XGROUP', 'CREATE', S, g[1], g[2], 'MKSTREAM')
end
if last and redis.call('EXISTS', S) == 1 then redis.call('XSETID', S, last) end
return #entries
