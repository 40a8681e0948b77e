-- Accepts a batch of deliveries of one partition, each judged on its own, in order (a repeat
-- of an idempotency key within the batch is a duplicate of the first). ARGV: 1 now_ms,
-- 2 max_pending, 3 n = field/value pairs per entry, then 2 + 2n values per entry: its id, its
-- idempotency ttl in ms ('' when the request has no Idempotency-Key), the pairs of the stored
-- request. KEYS[5..]: per entry its record, then its idempotency index (the record again when
-- it has none). Returns per entry {'ok'}, {'dup', <original id>} or {'full'}. The token
-- carries the target key (`t`), so a worker can see that the target's cell is refusing work
-- before it starts an attempt.
local now, max_pending, pairs = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local stride = 2 + 2 * pairs
-- Entries held (live and dead), read once per batch and counted up as entries are accepted.
local held
local out = {}
for i = 1, (#ARGV - 3) / stride do
  local base = 3 + (i - 1) * stride
  local id, ttl = ARGV[base + 1], ARGV[base + 2]
  local rec, idem = KEYS[3 + 2 * i], KEYS[4 + 2 * i]
  local seen = ttl ~= '' and redis.call('GET', idem)
  if seen then
    out[i] = {'dup', seen}
  else
    -- The bound is on admission: trimming the stream instead would delete accepted work.
    -- Dead letters count too, so a stream of poison requests cannot fill Redis either.
    held = held or redis.call('ZCARD', KEYS[2]) + redis.call('ZCARD', KEYS[4])
    if held >= max_pending then
      out[i] = {'full'}
    else
      local fields = {'state', 'pending', 'attempts', '0', 'created_ms', now, 'since_ms', now,
        'updated_ms', now}
      local target = ''
      for f = base + 3, base + stride, 2 do
        fields[#fields + 1] = ARGV[f]
        fields[#fields + 1] = ARGV[f + 1]
        if ARGV[f] == 'target' then target = ARGV[f + 1] end
      end
      if ttl ~= '' then
        -- Remembered so that a purge can forget the acceptance too.
        fields[#fields + 1] = 'idem_key'
        fields[#fields + 1] = idem
      end
      redis.call('HSET', rec, unpack(fields))
      redis.call('ZADD', KEYS[2], now, id)
      redis.call('XADD', KEYS[1], '*', 'id', id, 't', target)
      if ttl ~= '' then redis.call('SET', idem, id, 'PX', ttl) end
      held = held + 1
      out[i] = {'ok'}
    end
  end
end
return out
