-- note_viewed.lua: note in the user's views index that they viewed a version (on the
-- USER's slot, beside the view's own script on the artifact's slot): what erasure walks.
-- KEYS[1] the user's views index set ('<artifact>/<version>')
-- ARGV[1] artifact id  ARGV[2] version id
-- returns 1 if the version is new to the index, else 0
return redis.call('SADD', KEYS[1], ARGV[1] .. '/' .. ARGV[2])
