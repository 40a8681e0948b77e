-- Shared by every script of the delivery queue. KEYS, in every script:
--   1 stream, 2 live, 3 delayed, 4 dead, 5 record[, 6 idempotency index]
-- All keys carry the partition's hash tag, so each script runs on one Cluster slot.

-- Acknowledges and deletes a work token (the stream is a list of due work, not an archive).
local function ack(entry)
  if entry ~= '' then
    redis.call('XACK', KEYS[1], 'workers', entry)
    redis.call('XDEL', KEYS[1], entry)
  end
end

-- Appends one line to the record's attempt history.
local function note(line)
  local h = redis.call('HGET', KEYS[5], 'history')
  if h and h ~= '' then h = h .. '\n' .. line else h = line end
  redis.call('HSET', KEYS[5], 'history', h)
end

-- Dead-letters the entry: the DLQ index is written in the same atomic step that removes it
-- from the live set, so no crash can lose it between the two.
local function bury(id, now, reason, err)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZADD', KEYS[4], now, id)
  redis.call('HSET', KEYS[5], 'state', 'dead', 'reason', reason, 'dead_ms', now,
    'updated_ms', now, 'last_error', err)
  redis.call('HDEL', KEYS[5], 'next_ms')
end
