-- lib/infos.lua: a session's packed info (msgpack {userId, versionId, stateJson[, flags[,
-- the engaged-time accumulator's 4]]}, see lib/presence.lua and lib/session_record.lua)
-- read without unpacking it. The page script needs only the user and
-- the flags of each session; it hands the packed infos on to the service, which decodes
-- them in one pass (unpacking them here was a third of a page's time in Redis).

-- The offset just past the msgpack str or nil at `at` in `raw`; nil for anything else.
local function past_str(raw, at)
  local b = string.byte(raw, at)
  if b == 0xc0 then return at + 1 end
  if b >= 0xa0 and b <= 0xbf then return at + 1 + b - 0xa0 end
  if b == 0xd9 then return at + 2 + string.byte(raw, at + 1) end
  if b == 0xda then return at + 3 + string.byte(raw, at + 1) * 256 + string.byte(raw, at + 2) end
end

-- The flags of a packed info (0 when none): a positive fixint (0..7), the last byte of a
-- 4-element array, and after the three strings (or nils) of an 8-element one (a session
-- holding an accumulator: most of those whose tab reports engaged time).
local function info_flags(raw)
  local head = string.byte(raw, 1)
  if head == 0x93 then return 0 end
  if head == 0x94 then
    local last = string.byte(raw, #raw)
    if last < 0x80 then return last end
  elseif head == 0x98 then
    local at = past_str(raw, 2)
    at = at and past_str(raw, at)
    at = at and past_str(raw, at)
    local flags = at and string.byte(raw, at)
    if flags and flags < 0x80 then return flags end
  end
  return cmsgpack.unpack(raw)[4] or 0
end

-- The user id of a packed info: the array's first element, a str of < 256 bytes.
local function info_user(raw)
  local head = string.byte(raw, 1)
  if head == 0x93 or head == 0x94 or head == 0x98 then
    local b = string.byte(raw, 2)
    if b >= 0xa0 and b <= 0xbf then return string.sub(raw, 3, 2 + b - 0xa0) end
    if b == 0xd9 then return string.sub(raw, 4, 3 + string.byte(raw, 3)) end
  end
  return cmsgpack.unpack(raw)[1]
end

-- `items` (packed msgpack values) as one packed msgpack array.
local function packed_array(items)
  local n = #items
  local head
  if n < 16 then
    head = string.char(0x90 + n)
  elseif n < 65536 then
    head = string.char(0xdc, math.floor(n / 256), n % 256)
  else
    head = string.char(0xdd, math.floor(n / 16777216), math.floor(n / 65536) % 256,
      math.floor(n / 256) % 256, n % 256)
  end
  return head .. table.concat(items)
end
