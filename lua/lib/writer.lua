-- lib/writer.lua: the opening every presence writer shares (heartbeat, leave, sweep,
-- erase_user): the artifact's keys and arguments, the clock, and settling (in a bounded
-- step) the sessions whose deadline passed since the last look. Defines Z, I, U, D,
-- artifact, channel, timeout, away_timeout, retention, longest, now, settled (false while
-- sessions are left to settle) and events (the events the script publishes at its end).
-- KEYS[1] Z sessions zset  KEYS[2] I session info and per-user hash  KEYS[3] U users zset
-- KEYS[4] D partition sweep index  KEYS[5] R recently-here zset  KEYS[6] RD partition
-- index of the R zsets (see lib/recent.lua)  KEYS[7] OB partition outbox stream (webhooks;
-- written only while it exists)  KEYS[8] TL the artifact's timeline hash  KEYS[9] TI the
-- partition's index of timeline hashes with minutes not rolled up yet (lib/timeline.lua:
-- while they fit, an artifact with keys keeps them in I instead)  KEYS[10] C the
-- partition's counts hash (see lib/counts.lua)
-- ARGV[1] artifact id  ARGV[2] event channel  ARGV[3] online timeout of an active session
-- (ms)  ARGV[4] retention (ms)  ARGV[5] online timeout of an away session (ms)
-- ARGV[6] how long R keeps a user (ms)  ARGV[7] users R keeps at most  ARGV[8] how long
-- the timeline keeps a minute (ms; 0: no timeline); each script's own arguments follow
-- from ARGV[9]
--! include lib/presence.lua

local Z, I, U, D = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local artifact, channel = ARGV[1], ARGV[2]
local timeout, retention = tonumber(ARGV[3]), tonumber(ARGV[4])
local away_timeout = tonumber(ARGV[5])
local longest = math.max(timeout, away_timeout)
local now = NOW
local events = {}
if redis.call('EXISTS', KEYS[7]) == 1 then  -- webhooks: the count the change starts from
  OUTBOX.before = tonumber(redis.call('HGET', I, '~n') or '0')
end
local settled = settle(Z, I, U, now, events, timeout, away_timeout)

-- A write refused because the session is another user's: settling above may already have
-- taken timed-out sessions offline, so the run still ends as every writer run does (the
-- due, the counts, the events and the page mark) before the script answers {-1}.
local function refused()
  schedule(Z, I, U, D, artifact, now, settled, timeout, longest, retention)
  publish(channel, events, counts(Z, I, now))
  return {-1}
end
