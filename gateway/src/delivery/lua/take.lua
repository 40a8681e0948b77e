-- A worker took the token `entry` of delivery `id`. ARGV: 1 id, 2 entry, 3 now_ms,
-- 4 max_age_ms, 5 max_attempts.
-- Returns {'gone'}, {'dead', reason} or {'go', attempts, method, uri, headers, body, target,
-- idempotency_key, traceparent}. On 'go' the token stays pending with this worker until the
-- attempt is recorded: a worker that dies mid-attempt leaves it to be claimed by another.
local id, now = ARGV[1], tonumber(ARGV[3])
local state = redis.call('HGET', KEYS[5], 'state')
if not state or state == 'delivered' or state == 'dead' then
  -- A stale token: purged, or finished by another worker after a claim.
  ack(ARGV[2])
  return {'gone'}
end
local since = tonumber(redis.call('HGET', KEYS[5], 'since_ms'))
local attempts = tonumber(redis.call('HGET', KEYS[5], 'attempts'))
if now - since > tonumber(ARGV[4]) then
  ack(ARGV[2])
  note(ARGV[3] .. '\t' .. attempts .. '\texpired')
  bury(id, ARGV[3], 'expired', 'undelivered after max_age')
  return {'dead', 'expired'}
end
if attempts >= tonumber(ARGV[5]) then
  -- Only after a claim: the worker that made the last attempt died before recording it.
  ack(ARGV[2])
  local last = redis.call('HGET', KEYS[5], 'last_error') or 'worker lost during the attempt'
  bury(id, ARGV[3], 'max_attempts', last)
  return {'dead', 'max_attempts'}
end
attempts = attempts + 1
-- Whatever scheduled it again (a late outcome of an older attempt) is superseded.
redis.call('ZREM', KEYS[3], id)
redis.call('HSET', KEYS[5], 'state', 'delivering', 'attempts', attempts, 'updated_ms', ARGV[3])
redis.call('HDEL', KEYS[5], 'next_ms')
local r = redis.call('HMGET', KEYS[5], 'method', 'uri', 'headers', 'body', 'target', 'idem',
  'traceparent')
return {'go', tostring(attempts), r[1], r[2], r[3], r[4], r[5], r[6], r[7]}
