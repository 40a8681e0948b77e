-- An attempt of `id` failed. ARGV: 1 id, 2 entry, 3 now_ms, 4 retry-at ms ('' = dead-letter
-- now), 5 reason when dead-lettered, 6 error text, 7 attempt, 8 HTTP status ('' if none).
-- Returns 'retry', 'dead' or 'gone'.
if not current(ARGV[7]) then return 'gone' end
ack(ARGV[2])
note(ARGV[3] .. '\t' .. ARGV[7] .. '\t' .. ARGV[6])
if ARGV[8] ~= '' then redis.call('HSET', KEYS[5], 'status', ARGV[8]) end
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
  redis.call('HSET', KEYS[5], 'state', 'retrying', 'next_ms', ARGV[4], 'updated_ms', ARGV[3],
    'last_error', ARGV[6])
  return 'retry'
end
bury(ARGV[1], ARGV[3], ARGV[5], ARGV[6])
return 'dead'
