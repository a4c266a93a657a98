-- viewers.lua: one page of a version's viewers, most recent view first.
-- KEYS[1] version viewers by last view zset  KEYS[2] version viewers hash
-- KEYS[3] version stats hash ('erased': erasure tombstones in KEYS[2], never hidden viewers)
-- ARGV[1] page size  ARGV[2] cursor lastViewedAt (ms) and ARGV[3] cursor user id: the last
--         row of the previous page ('' for the first); order: last view desc, user id desc
-- ARGV[4] the caller's user id ('' none): a caller whose view history is hidden still
--         sees their own row, in its place
-- returns msgpack {{{userId, {views, firstViewedAt, lastViewedAt, ...}}, ...}, has_more,
-- hidden}: hidden = the viewers left out (their history is hidden: in the hash, not in
-- the zset; the caller's own row, when listed, not among them); read-only
local size = tonumber(ARGV[1])
local rows = {}
local function add(members)
  for i = 1, #members do
    if #rows == size + 1 then return end
    rows[#rows + 1] = members[i]
  end
end

if ARGV[2] == '' then
  add(redis.call('ZREVRANGE', KEYS[1], 0, size))
else
  local tied = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[2], ARGV[2])
  local after = {}
  for _, member in ipairs(tied) do
    if member < ARGV[3] then after[#after + 1] = member end
  end
  add(after)
  add(redis.call('ZREVRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], '-inf', 'LIMIT', 0, size + 1))
end

local has_more = 0
if #rows > size then rows[#rows] = nil; has_more = 1 end
local page = {}
if #rows > 0 then
  local infos = redis.call('HMGET', KEYS[2], unpack(rows))
  for i, user in ipairs(rows) do
    if infos[i] then page[#page + 1] = {user, cmsgpack.unpack(infos[i])} end
  end
end
local hidden = redis.call('HLEN', KEYS[2]) - redis.call('ZCARD', KEYS[1])
  - tonumber(redis.call('HGET', KEYS[3], 'erased') or '0')
local own = ARGV[4] ~= '' and redis.call('HGET', KEYS[2], ARGV[4])
if own then
  local mine = cmsgpack.unpack(own)
  local at, user = mine[3], ARGV[4]
  -- after the cursor, and not past this page's last row unless it is the last page
  local after = ARGV[2] == '' or at < tonumber(ARGV[2])
    or (at == tonumber(ARGV[2]) and user < ARGV[3])
  local last = page[#page]
  local within = has_more == 0 or (last and (at > last[2][3]
    or (at == last[2][3] and user > last[1])))
  if mine[5] and mine[5] ~= 0 then
    hidden = hidden - 1  -- listed to its owner, on whichever page it falls
    if after and within then
      local at_index = #page + 1
      for i, row in ipairs(page) do
        if at > row[2][3] or (at == row[2][3] and user > row[1]) then at_index = i; break end
      end
      table.insert(page, at_index, {user, mine})
    end
  end
end
return cmsgpack.pack({page, has_more, math.max(0, hidden)})
