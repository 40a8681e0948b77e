-- Deletes dead-lettered `id` for good. ARGV: 1 id. Returns 1, or 0 when not in the DLQ.
if redis.call('ZREM', KEYS[4], ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[5])
return 1
