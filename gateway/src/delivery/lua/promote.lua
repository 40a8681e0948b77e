-- Moves due retries and deferrals back into the stream. ARGV: 1 now_ms, 2 at most this many.
-- Returns how many moved. Every gateway runs it; the script is atomic, so none moves twice.
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[3], id)
  redis.call('XADD', KEYS[1], '*', 'id', id)
end
return #due
