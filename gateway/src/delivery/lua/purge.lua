-- Deletes dead-lettered `id` for good, with its idempotency acceptance (KEYS[6], read from the
-- record's `idem_key` by the caller; the record key itself when there is none), so a repeat
-- of the same Idempotency-Key is accepted anew instead of answering with a purged id.
-- ARGV: 1 id. Returns 1, or 0 when not in the DLQ.
if redis.call('ZREM', KEYS[4], ARGV[1]) == 0 then return 0 end
if KEYS[6] ~= KEYS[5] and redis.call('GET', KEYS[6]) == ARGV[1] then
  redis.call('DEL', KEYS[6])
end
redis.call('DEL', KEYS[5])
return 1
