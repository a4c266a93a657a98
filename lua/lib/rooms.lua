-- lib/rooms.lua: reading a small room whole (its hash is compact: at most about 130
-- fields, see LARGE_FIELDS in lib/presence.lua), for its presence page and its mode switch.

-- Everything about a small room in one HGETALL and one ZMSCORE: `all` the hash as Redis
-- gives it, `infos` counted session id -> unpacked info, `scores` counted session id ->
-- deadline, `sessions` user -> its counted session ids, `users` {user, packed entry} of
-- each counted user.
local function small_room(Z, I)
  local all = redis.call('HGETALL', I)
  local mark = -1
  local sids, infos, users = {}, {}, {}
  for i = 1, #all, 2 do
    local first = string.byte(all[i])
    if first == 35 then  -- '#': a session
      sids[#sids + 1] = all[i]
      infos[all[i]] = all[i + 1]
    elseif first == 126 then  -- '~': a counter
      if all[i] == '~w' then mark = tonumber(all[i + 1]) end
    else
      users[#users + 1] = {all[i], all[i + 1]}
    end
  end
  local scores, sessions = {}, {}
  if #sids > 0 then
    local got = redis.call('ZMSCORE', Z, unpack(sids))
    for n, sid in ipairs(sids) do
      local score = tonumber(got[n])
      if score and score > mark then
        scores[sid] = score
        local info = cmsgpack.unpack(infos[sid])
        infos[sid] = info
        local user = info[1]
        local list = sessions[user] or {}
        list[#list + 1] = sid
        sessions[user] = list
      end
    end
  end
  return {all = all, infos = infos, scores = scores, sessions = sessions, users = users}
end
