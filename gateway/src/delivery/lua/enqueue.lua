-- Accepts one delivery. ARGV: 1 id, 2 now_ms, 3 max_pending, 4 idempotency ttl in ms ('' when
-- the request has no Idempotency-Key), 5.. field/value pairs of the stored request.
-- Returns {'ok'}, {'dup', <original id>} or {'full'}. The token carries the target key (`t`),
-- so a worker can see that the target's cell is refusing work before it starts an attempt.
if ARGV[4] ~= '' then
  local seen = redis.call('GET', KEYS[6])
  if seen then return {'dup', seen} end
end
-- The bound is on admission: trimming the stream instead would delete accepted work. Dead
-- letters count too, so a stream of poison requests cannot fill Redis either.
if redis.call('ZCARD', KEYS[2]) + redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[3]) then
  return {'full'}
end
local fields = {}
local target = ''
for i = 5, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
  if ARGV[i] == 'target' then target = ARGV[i + 1] end
end
if ARGV[4] ~= '' then
  -- Remembered so that a purge can forget the acceptance too.
  fields[#fields + 1] = 'idem_key'
  fields[#fields + 1] = KEYS[6]
end
redis.call('HSET', KEYS[5], 'state', 'pending', 'attempts', '0', 'created_ms', ARGV[2],
  'since_ms', ARGV[2], 'updated_ms', ARGV[2], unpack(fields))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('XADD', KEYS[1], '*', 'id', ARGV[1], 't', target)
if ARGV[4] ~= '' then redis.call('SET', KEYS[6], ARGV[1], 'PX', ARGV[4]) end
return {'ok'}
