-- online.lua: online counts of several artifacts of one partition in one call.
-- KEYS[1] C the partition's counts hash (lib/counts.lua)
-- ARGV[1] the partition's key prefix ('ps:{T}:'): an artifact's Z and I are that plus
-- '<artifact>:s' and '<artifact>:h' (the same slot as C)
-- ARGV[2] 'j': answer JSON, anything else: numbers
-- ARGV[3] the artifact ids, joined by '\n' (valid ids: no JSON escaping needed)
-- returns for 'j' one string, '"<id>":{"online":u,"sessions":s,"active":a,"away":w}' per
-- artifact joined by ',' (a slice of the answer's JSON object); else
-- {users_1, sessions_1, active_1, users_2, ...}, in the order given; read-only
-- An artifact's record is used while it holds (Redis's clock before its `until`); else
-- (a deadline passed and no writer has settled it yet, or no record) the counts are
-- worked out from the artifact's keys as before the records: exact either way.
--! include lib/now.lua
--! include lib/reads.lua

local prefix, json = ARGV[1], ARGV[2] == 'j'
local ids = {}
for id in string.gmatch(ARGV[3], '[^\n]+') do ids[#ids + 1] = id end
local records = redis.call('HMGET', KEYS[1], unpack(ids))
local since = '(' .. NOW
local out = {}
for i, id in ipairs(ids) do
  local raw, held = records[i], nil
  if raw then
    local brace = string.find(raw, '{', 1, true)
    if brace == 1 or (brace and tonumber(string.sub(raw, 1, brace - 1)) > NOW) then
      held = string.sub(raw, brace)
    end
  end
  if json and held then
    out[i] = '"' .. id .. '":' .. held
  else
    local users, sessions, active
    if held then
      users, sessions, active = string.match(held, '^{"online":(%d+),"sessions":(%d+),"active":(%d+)')
      users, sessions, active = tonumber(users), tonumber(sessions), tonumber(active)
    else
      local Z, I = prefix .. id .. ':s', prefix .. id .. ':h'
      users, active = online_users(Z, I, NOW)
      sessions = users > 0 and redis.call('ZCOUNT', Z, since, '+inf') or 0
    end
    if json then
      active = math.max(0, math.min(active, users))
      out[i] = '"' .. id .. '":{"online":' .. users .. ',"sessions":' .. sessions ..
        ',"active":' .. active .. ',"away":' .. (users - active) .. '}'
    else
      out[#out + 1] = users
      out[#out + 1] = sessions
      out[#out + 1] = active
    end
  end
end
if json then return table.concat(out, ',') end
return out
