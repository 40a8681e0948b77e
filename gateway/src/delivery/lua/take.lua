-- A worker read a batch of tokens. ARGV: 1 now_ms, 2 max_age_ms, 3 max_attempts, 4 reply
-- budget in bytes, then three values per token: id, stream entry, and a time (ms) to wait
-- until instead of starting an attempt ('' = start one). The tokens' records are KEYS[5..],
-- in the same order. Returns one reply per token, in order:
--   {'go', attempts, method, uri, headers, body, target, idempotency_key, traceparent}
--   {'deferred'}, {'dead', reason}, {'gone'}, or {'later'}: untouched, because the stored
--   requests already in the reply exceed the budget (bodies may be large: one call must not
--   hold dozens of them in Lua and in the reply); the caller asks again for those.
-- On 'go' the token stays pending with this worker until the attempt's outcome is recorded
-- (settle.lua): a worker that dies mid-attempt leaves it to be claimed by another. A wait
-- time means the target cell's breaker is open: the entry is scheduled for then without an
-- attempt being counted, which is cheaper than starting one and giving it back.
local now, max_age, max_attempts = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local budget = tonumber(ARGV[4])
local bytes = 0

-- One token's answer.
local function take(rec, id, entry, wait)
  -- The stored request is read only for an attempt: a deferral must not copy the body.
  local r
  if wait == '' then
    r = redis.call('HMGET', rec, 'state', 'since_ms', 'attempts', 'last_error', 'next_ms',
      'method', 'uri', 'headers', 'body', 'target', 'idem', 'traceparent')
  else
    r = redis.call('HMGET', rec, 'state', 'since_ms', 'attempts', 'last_error', 'next_ms')
  end
  local state = r[1]
  local attempts = tonumber(r[3]) or 0
  if not state or state == 'delivered' or state == 'dead' then
    -- A stale token: purged, or finished by another worker after a claim.
    ack(entry)
    return {'gone'}
  end
  if now - (tonumber(r[2]) or now) > max_age then
    ack(entry)
    note(rec, ARGV[1] .. '\t' .. attempts .. '\texpired')
    bury(rec, id, ARGV[1], 'expired', 'undelivered after max_age')
    return {'dead', 'expired'}
  end
  if attempts >= max_attempts then
    -- Only after a claim: the worker that made the last attempt died before recording it.
    ack(entry)
    bury(rec, id, ARGV[1], 'max_attempts', r[4] or 'worker lost during the attempt')
    return {'dead', 'max_attempts'}
  end
  if wait ~= '' then
    -- Claimed from a dead worker ('delivering'), its lost attempt counts, as in a take.
    ack(entry)
    local next_state = 'retrying'
    if attempts == 0 then next_state = 'pending' end
    redis.call('HSET', rec, 'state', next_state, 'next_ms', wait, 'updated_ms', ARGV[1])
    redis.call('ZADD', KEYS[3], wait, id)
    return {'deferred'}
  end
  attempts = attempts + 1
  redis.call('HSET', rec, 'state', 'delivering', 'attempts', attempts, 'updated_ms', ARGV[1])
  if r[5] then redis.call('HDEL', rec, 'next_ms') end
  bytes = bytes + (r[8] and #r[8] or 0) + (r[9] and #r[9] or 0)
  return {'go', tostring(attempts), r[6], r[7], r[8], r[9], r[10], r[11], r[12]}
end

local out = {}
for i = 1, (#ARGV - 4) / 3 do
  if bytes > budget then
    out[i] = {'later'}
  else
    out[i] = take(KEYS[4 + i], ARGV[3 * i + 2], ARGV[3 * i + 3], ARGV[3 * i + 4])
  end
end
flush_acks()
return out
