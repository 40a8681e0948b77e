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

-- Appends one line to the record's attempt history, keeping the last 50 lines (a long outage
-- with breaker probes must not grow a record without bound).
local function note(line)
  local h = redis.call('HGET', KEYS[5], 'history')
  if h and h ~= '' then h = h .. '\n' .. line else h = line end
  local lines = 0
  for _ in string.gmatch(h, '\n') do lines = lines + 1 end
  if lines >= 50 then
    local cut = 0
    for _ = 1, lines - 49 do cut = string.find(h, '\n', cut + 1, true) end
    h = string.sub(h, cut + 1)
  end
  redis.call('HSET', KEYS[5], 'history', h)
end

-- Whether attempt ARGV_attempt is the entry's current one: an outcome that arrives after the
-- entry moved on (claimed by another worker, replayed) must change nothing, and must not
-- acknowledge a token another worker now holds.
local function current(attempt)
  return redis.call('HGET', KEYS[5], 'state') == 'delivering'
    and tonumber(redis.call('HGET', KEYS[5], 'attempts')) == tonumber(attempt)
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
