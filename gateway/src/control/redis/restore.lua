-- Restores a directory that the store lost (Redis restarted without persistence, flushed, or
-- failed over to a replica that missed writes): writes it only if the stored version is
-- lower. Legitimate changes only ever raise the version, so a gateway that applied a higher
-- version than the store holds proves the store lost data.
--
-- KEYS as in cas.lua.
-- ARGV[1]  version of the directory to restore
-- ARGV[2]  the directory document
-- ARGV[3]  audit entry
-- ARGV[4]  audit cap
-- ARGV[5]  announcement channel
--
-- Returns {1, version} when restored, {0, current} when the store is not behind.

local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current == nil then
  return redis.error_reply('CORRUPT ' .. KEYS[2] .. ' is not an integer')
end
if current >= tonumber(ARGV[1]) then
  return {0, current}
end

redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('LPUSH', KEYS[3], ARGV[3])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[4]) - 1)
redis.call('PUBLISH', ARGV[5], ARGV[1])
return {1, tonumber(ARGV[1])}
