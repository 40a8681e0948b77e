-- Compare-and-set of the cell directory (see docs/control-plane.md).
-- Every key shares the {cellgate} hash tag, so on Redis Cluster this runs on one slot.
--
-- KEYS[1]  {cellgate}:directory          the directory document (JSON)
-- KEYS[2]  {cellgate}:directory:version  its version (integer; the cheap poll)
-- KEYS[3]  {cellgate}:audit              audit entries (JSON), newest first
-- KEYS[4]  {cellgate}:autoevac:lease     the automation lease ("<token> <holder>")
-- ARGV[1]  expected version (the version the change was computed from)
-- ARGV[2]  next version (ARGV[1] + 1, checked by the client)
-- ARGV[3]  next document
-- ARGV[4]  audit entry
-- ARGV[5]  audit cap
-- ARGV[6]  announcement channel
-- ARGV[7]  deadline, unix ms on this server's clock (0: none): the client stops waiting then,
--          so a script that only gets to run later (a frozen or overloaded server) must not
--          write anything, or a change reported as failed would appear afterwards.
-- ARGV[8]  fence: the automation lease the write is made under ("<token> <holder>"), or ''
--          for an operator's write. A fenced write is refused unless that lease is still the
--          one in force, so a gateway that lost the lease cannot act on an old decision.
--
-- Returns {1, next} when stored, {0, current} on a version conflict, {-1, now_ms} when the
-- deadline had passed, {-2, 0} when the fence no longer holds. Nothing is written unless the
-- result is {1, next}.

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local deadline = tonumber(ARGV[7])
if deadline > 0 and now_ms > deadline then
  return {-1, now_ms}
end

if ARGV[8] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[8] then
  return {-2, 0}
end

local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current == nil then
  return redis.error_reply('CORRUPT ' .. KEYS[2] .. ' is not an integer')
end
if current ~= tonumber(ARGV[1]) then
  return {0, current}
end

redis.call('SET', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('LPUSH', KEYS[3], ARGV[4])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
redis.call('PUBLISH', ARGV[6], ARGV[2])
return {1, tonumber(ARGV[2])}
