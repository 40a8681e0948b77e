-- Shared by every script of the delivery queue. KEYS, in every script:
--   1 stream, 2 live, 3 delayed, 4 dead, then the records (and idempotency index) it touches.
-- All keys carry the partition's hash tag, so each script runs on one Cluster slot.

-- Tokens to acknowledge and delete (the stream is a list of due work, not an archive). A
-- script that handles a batch collects them and does both in one call each at its end.
local acked = {}
local function ack(entry)
  if entry and entry ~= '' then acked[#acked + 1] = entry end
end
local function flush_acks()
  if #acked > 0 then
    redis.call('XACK', KEYS[1], 'workers', unpack(acked))
    redis.call('XDEL', KEYS[1], unpack(acked))
  end
end

-- `history` with `line` appended, keeping the last 50 lines (a long outage with breaker
-- probes must not grow a record without bound).
local function appended(history, line)
  local h = line
  if history and history ~= '' then h = history .. '\n' .. line end
  local lines = 0
  for _ in string.gmatch(h, '\n') do lines = lines + 1 end
  if lines >= 50 then
    local cut = 0
    for _ = 1, lines - 49 do cut = string.find(h, '\n', cut + 1, true) end
    h = string.sub(h, cut + 1)
  end
  return h
end

-- Appends one line to the history of record `rec`.
local function note(rec, line)
  redis.call('HSET', rec, 'history', appended(redis.call('HGET', rec, 'history'), line))
end

-- Dead-letters entry `id` (record `rec`): the DLQ index is written in the same atomic step
-- that removes it from the live set, so no crash can lose it between the two. `extra`:
-- more field/value pairs for the record, written in the same HSET.
local function bury(rec, id, now, reason, err, extra)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZADD', KEYS[4], now, id)
  redis.call('HSET', rec, 'state', 'dead', 'reason', reason, 'dead_ms', now,
    'updated_ms', now, 'last_error', err, unpack(extra or {}))
  redis.call('HDEL', rec, 'next_ms')
end
