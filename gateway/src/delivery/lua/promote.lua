-- Moves due retries and deferrals back into the stream. ARGV: 1 now_ms, then the ids found
-- due (by a ZRANGEBYSCORE just before), whose records are KEYS[5..] in the same order: a
-- script may only touch keys it declares, so the records (read for the target each token
-- carries) cannot be found inside it. Returns how many moved.
-- Every gateway runs it; the script is atomic and checks each id is still waiting and due,
-- so none moves twice, and one promoted and scheduled again meanwhile waits for its new time.
local now = tonumber(ARGV[1])
local moved = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local due = redis.call('ZSCORE', KEYS[3], id)
  if due and tonumber(due) <= now then
    moved[#moved + 1] = id
    local target = redis.call('HGET', KEYS[3 + i], 'target')
    if target then
      redis.call('XADD', KEYS[1], '*', 'id', id, 't', target)
    else
      redis.call('XADD', KEYS[1], '*', 'id', id)
    end
  end
end
if #moved > 0 then redis.call('ZREM', KEYS[3], unpack(moved)) end
return #moved
