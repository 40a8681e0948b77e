-- Delivery `id` was answered 2xx/3xx. ARGV: 1 id, 2 entry, 3 now_ms, 4 retention_ms,
-- 5 status, 6 cell that took it, 7 attempt. Returns 1, or 0 when the record is gone.
local state = redis.call('HGET', KEYS[5], 'state')
ack(ARGV[2])
if not state or state == 'delivered' then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
if not current(ARGV[7]) then
  -- A slow attempt that outlived a claim or a replay still delivered: say so, and take the
  -- entry out of wherever it waits (the DLQ too, so nobody replays it).
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
end
redis.call('HSET', KEYS[5], 'state', 'delivered', 'delivered_ms', ARGV[3], 'updated_ms',
  ARGV[3], 'status', ARGV[5], 'cell', ARGV[6])
-- The history keeps earlier errors; the record no longer reports one.
-- Delivered: the stored request is no longer needed (method and path stay for operators).
redis.call('HDEL', KEYS[5], 'body', 'headers', 'target', 'traceparent', 'next_ms', 'reason',
  'dead_ms', 'last_error')
note(ARGV[3] .. '\t' .. ARGV[7] .. '\t' .. ARGV[6] .. ' answered ' .. ARGV[5])
redis.call('PEXPIRE', KEYS[5], ARGV[4])
return 1
