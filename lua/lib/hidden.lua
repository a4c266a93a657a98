-- lib/hidden.lua: invisible presence (PUT /v1/users/{id}/privacy {"presence": "hidden"}).
-- A hidden session carries flag bit 4 in its info (see lib/presence.lua). It counts in
-- '~n', '~a' and the sessions like any other, but its user never enters U (the large
-- room's page order), no page lists it, no event names it (a run that changed the counts
-- only through hidden sessions still publishes the counts, with no events). It does
-- enter R (recently here), for the user's own where-now: the service leaves hidden users
-- out of the recently-here pages (presence_svc/live/rows.py, without_hidden).

local HIDDEN = 4
local QUIET = {changed = false}

local function is_hidden(info) return info[4] ~= nil and info[4] >= HIDDEN end

-- A hidden session changed the counts: publish them, even with no event.
local function quietly() QUIET.changed = true end

-- Whether any of the sessions `sids` (ids into `infos`, unpacked) is visible: a user
-- with one is listed.
local function listed(sids, infos)
  for _, sid in ipairs(sids or {}) do
    local info = infos[sid]
    if info and not is_hidden(info) then return true end
  end
  return false
end
