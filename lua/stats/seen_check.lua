-- seen_check.lua: which of an audience have seen and read a version, in one call.
-- KEYS[1] the artifact's latest-version hash (set_latest.lua: v, at)
-- ARGV[1] the artifact's viewers key prefix 'vw:{T}:vu:<artifact>/': a version's viewers
--         hash (user -> msgpack {views, firstViewedAt, lastViewedAt[, engagedMs[,
--         hidden]]}) is that plus the version id (the same slot as KEYS[1])
-- ARGV[2] the version id, '' for the artifact's latest
-- ARGV[3] the engaged ms at which a viewer has read it (PRESENCE_READ_AFTER_S)
-- ARGV[4] 'j': the lists as JSON arrays, anything else: as msgpack arrays
-- ARGV[5] the user ids, joined by '\n' (valid ids: nothing to escape in JSON); a repeat
--         counts once, where it first comes
-- returns false when ARGV[2] is '' and the artifact has no latest version; else
-- {version, hidden, seen, read, notSeen}: the lists are the ids in the order given, each
-- a whole JSON or msgpack array (the answer's members as they go out: no id passes
-- through the service's Python); hidden counts the viewers who hid their view history
-- (in no list); read-only
local version = ARGV[2]
if version == '' then
  version = redis.call('HGET', KEYS[1], 'v')
  if not version then return false end
end
local ids, given, n = {}, {}, 0
for id in string.gmatch(ARGV[5], '[^\n]+') do
  if not given[id] then
    given[id] = true
    n = n + 1
    ids[n] = id
  end
end
local entries = redis.call('HMGET', ARGV[1] .. version, unpack(ids))
local threshold = tonumber(ARGV[3])
local unmeasured_read = 0 >= threshold
local seen, read, not_seen, hidden = {}, {}, {}, 0
local s, r, u = 0, 0, 0
local byte, unpack_entry = string.byte, cmsgpack.unpack
for i = 1, n do
  local raw = entries[i]
  if not raw then
    u = u + 1
    not_seen[u] = ids[i]
  elseif byte(raw, 1) == 0x93 then
    -- three elements (a view, no engaged time, not hidden): no need to unpack it
    s = s + 1
    seen[s] = ids[i]
    if unmeasured_read then
      r = r + 1
      read[r] = ids[i]
    end
  else
    local entry = unpack_entry(raw)
    local mark = entry[5]
    if mark and mark ~= 0 and mark ~= '' then
      hidden = hidden + 1
    else
      s = s + 1
      seen[s] = ids[i]
      if (tonumber(entry[4]) or 0) >= threshold then
        r = r + 1
        read[r] = ids[i]
      end
    end
  end
end

local function json(list)
  if #list == 0 then return '[]' end
  return '["' .. table.concat(list, '","') .. '"]'
end

if ARGV[4] == 'j' then
  return {version, hidden, json(seen), json(read), json(not_seen)}
end
return {version, hidden, cmsgpack.pack(seen), cmsgpack.pack(read), cmsgpack.pack(not_seen)}
