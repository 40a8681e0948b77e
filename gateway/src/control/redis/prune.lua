-- Removes expired gateway heartbeats, but only those unchanged since they were read as
-- expired: a gateway that heartbeated in between keeps its fresh entry.
--
-- KEYS[1]  {cellgate}:gateways  hash: gateway id -> heartbeat (JSON)
-- ARGV     id1, heartbeat1, id2, heartbeat2, ...  as read
--
-- Returns the number of entries removed.

local removed = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return removed
