-- Puts dead-lettered `id` back in the queue with its attempts reset; the idempotency key is
-- unchanged. ARGV: 1 id, 2 now_ms. Returns 1, or 0 when `id` is not in the DLQ.
if redis.call('ZREM', KEYS[4], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[5], 'state', 'pending', 'attempts', '0', 'since_ms', ARGV[2],
  'updated_ms', ARGV[2])
redis.call('HDEL', KEYS[5], 'reason', 'dead_ms', 'next_ms')
redis.call('PERSIST', KEYS[5])
note(KEYS[5], ARGV[2] .. '\t0\treplayed')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('XADD', KEYS[1], '*', 'id', ARGV[1], 't',
  redis.call('HGET', KEYS[5], 'target') or '')
return 1
