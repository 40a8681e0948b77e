-- Accepts deliveries of one partition: one, or the enqueues that arrived together (the
-- gateway's group commit, delivery/batcher.rs) in one call instead of one each. Each entry is
-- judged on its own, in order, as if enqueued alone.
-- KEYS: 1-4 the partition's keys, then per entry: its record, its idempotency index (its
-- record again when it has no Idempotency-Key).
-- ARGV: 1 max_pending, then per entry: id, now_ms, idempotency ttl in ms ('' without
-- Idempotency-Key), the number of field/value words that follow, the fields.
-- Returns, per entry in order: {'ok'}, {'dup', <original id>} or {'full'}. The token carries
-- the target key (`t`), so a worker can see that the target's cell is refusing work before it
-- starts an attempt.
local max = tonumber(ARGV[1])
-- The bound is on admission: trimming the stream instead would delete accepted work. Dead
-- letters count too, so a stream of poison requests cannot fill Redis either.
local pending = redis.call('ZCARD', KEYS[2]) + redis.call('ZCARD', KEYS[4])
local out = {}
local a, k = 2, 5
while a <= #ARGV do
  local id, now, ttl, nf = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  local record, idem = KEYS[k], KEYS[k + 1]
  local seen = ttl ~= '' and redis.call('GET', idem)
  if seen then
    out[#out + 1] = {'dup', seen}
  elseif pending >= max then
    out[#out + 1] = {'full'}
  else
    local fields = {}
    local target = ''
    for i = a + 4, a + 3 + nf, 2 do
      fields[#fields + 1] = ARGV[i]
      fields[#fields + 1] = ARGV[i + 1]
      if ARGV[i] == 'target' then target = ARGV[i + 1] end
    end
    if ttl ~= '' then
      -- Remembered so that a purge can forget the acceptance too.
      fields[#fields + 1] = 'idem_key'
      fields[#fields + 1] = idem
    end
    redis.call('HSET', record, 'state', 'pending', 'attempts', '0', 'created_ms', now,
      'since_ms', now, 'updated_ms', now, unpack(fields))
    redis.call('ZADD', KEYS[2], now, id)
    redis.call('XADD', KEYS[1], '*', 'id', id, 't', target)
    if ttl ~= '' then redis.call('SET', idem, id, 'PX', ttl) end
    pending = pending + 1
    out[#out + 1] = {'ok'}
  end
  a, k = a + 4 + nf, k + 2
end
return out
