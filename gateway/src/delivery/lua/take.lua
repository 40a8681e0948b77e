-- A worker took the token `entry` of delivery `id`. ARGV: 1 id, 2 entry, 3 now_ms,
-- 4 max_age_ms, 5 max_attempts.
-- Returns {'gone'}, {'dead', reason} or {'go', attempts, method, uri, headers, body, target,
-- idempotency_key, traceparent}. On 'go' the token stays pending with this worker until the
-- attempt is recorded: a worker that dies mid-attempt leaves it to be claimed by another.
local id, now = ARGV[1], tonumber(ARGV[3])
-- One read of everything this script needs.
local r = redis.call('HMGET', KEYS[5], 'state', 'since_ms', 'attempts', 'last_error', 'method',
  'uri', 'headers', 'body', 'target', 'idem', 'traceparent')
local state = r[1]
if not state or state == 'delivered' or state == 'dead' then
  -- A stale token: purged, or finished by another worker after a claim.
  ack(ARGV[2])
  return {'gone'}
end
local since = tonumber(r[2])
local attempts = tonumber(r[3])
if now - since > tonumber(ARGV[4]) then
  ack(ARGV[2])
  note(ARGV[3] .. '\t' .. attempts .. '\texpired')
  bury(id, ARGV[3], 'expired', 'undelivered after max_age')
  return {'dead', 'expired'}
end
if attempts >= tonumber(ARGV[5]) then
  -- Only after a claim: the worker that made the last attempt died before recording it.
  ack(ARGV[2])
  bury(id, ARGV[3], 'max_attempts', r[4] or 'worker lost during the attempt')
  return {'dead', 'max_attempts'}
end
attempts = attempts + 1
redis.call('HSET', KEYS[5], 'state', 'delivering', 'attempts', attempts, 'updated_ms', ARGV[3])
redis.call('HDEL', KEYS[5], 'next_ms')
return {'go', tostring(attempts), r[5], r[6], r[7], r[8], r[9], r[10], r[11]}
