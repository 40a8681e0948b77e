-- The target cell could not take attempt ARGV[5] of `id` (breaker open, bulkhead full), or
-- the attempt was a breaker's half-open probe of a cell known to be failing: give the attempt
-- back and wait until ARGV[4] without burning it. ARGV: 1 id, 2 entry, 3 now_ms, 4 due_ms,
-- 5 attempt, 6 what happened, for the history ('' = nothing was sent).
-- Returns 1, or 0 when the entry moved on meanwhile.
if not current(ARGV[5]) then return 0 end
ack(ARGV[2])
local attempts = tonumber(ARGV[5]) - 1
local next_state = 'retrying'
if attempts <= 0 then attempts = 0; next_state = 'pending' end
redis.call('HSET', KEYS[5], 'state', next_state, 'attempts', attempts, 'next_ms', ARGV[4],
  'updated_ms', ARGV[3])
if ARGV[6] and ARGV[6] ~= '' then
  note(ARGV[3] .. '\t' .. ARGV[5] .. '\t' .. ARGV[6])
  redis.call('HSET', KEYS[5], 'last_error', ARGV[6])
end
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
return 1
