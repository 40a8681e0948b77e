-- Records the outcomes of a batch of attempts. ARGV: 1 retention_ms of delivered records,
-- then nine values per outcome: id, stream entry, attempt, time (ms), kind, a, b, c, d:
--   'ok'    the target answered 2xx/3xx: a status, b the cell that took it;
--   'fail'  a retry time ('' = dead-letter now), b reason if dead, c error text,
--           d HTTP status ('' if none);
--   'defer' the cell could not take it (breaker, bulkhead, no upstream) or it was a failed
--           breaker probe: the attempt is given back; a due time, b what happened, for the
--           history ('' = nothing was sent).
-- The outcomes' records are KEYS[5..], in the same order. Returns one reply per outcome:
-- 'delivered', 'retry', 'dead', 'deferred' or 'gone'.
--
-- Each outcome is judged alone: a failure or deferral counts only for the entry's current
-- attempt (still 'delivering' with that number), so a worker that resumes after its entry
-- was claimed by another changes nothing and does not acknowledge the token the other worker
-- now holds; the rest of the batch is recorded all the same. A late success still marks the
-- entry delivered (it was) and takes it out of the DLQ or the retry schedule.
local retention = ARGV[1]
local out = {}
local done = {}
for i = 1, (#ARGV - 1) / 9 do
  local rec = KEYS[4 + i]
  local base = 9 * (i - 1) + 1
  local id, entry, attempt, at, kind = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3],
    ARGV[base + 4], ARGV[base + 5]
  local a, b, c, d = ARGV[base + 6], ARGV[base + 7], ARGV[base + 8], ARGV[base + 9]
  -- 4.. are what a delivered record keeps of the stored request (see below).
  local r = redis.call('HMGET', rec, 'state', 'attempts', 'history', 'created_ms', 'method',
    'uri', 'idem')
  local state = r[1]
  local current = state == 'delivering' and tonumber(r[2]) == tonumber(attempt)
  if kind == 'ok' then
    ack(entry)
    if not state or state == 'delivered' then
      out[i] = 'gone'
    else
      done[#done + 1] = id
      if not current then
        -- A slow attempt that outlived a claim or a replay: take the entry out of wherever
        -- it waits (the DLQ too, so nobody replays it).
        redis.call('ZREM', KEYS[3], id)
        redis.call('ZREM', KEYS[4], id)
      end
      -- Delivered: the record keeps what a status lookup shows. The stored request is no
      -- longer needed (method and path stay), nor are the retry and dead-letter fields, the
      -- admission time (`since_ms`, for max_age) or the idempotency index key (for a purge
      -- of a dead letter); the history keeps earlier errors, the record no longer reports
      -- one. It is written anew rather than trimmed: a hash that once held the body keeps
      -- Redis's large encoding after its fields are deleted (about 1.1 KB for a 256-byte
      -- body), a new one of short fields is compact (about 0.35 KB), and delivered records
      -- are kept for the retention.
      local fields = {'state', 'delivered', 'attempts', r[2] or attempt, 'delivered_ms', at,
        'updated_ms', at, 'status', a, 'cell', b,
        'history', appended(r[3], at .. '\t' .. attempt .. '\t' .. b .. ' answered ' .. a)}
      for k, name in ipairs({'created_ms', 'method', 'uri', 'idem'}) do
        if r[3 + k] then
          fields[#fields + 1] = name
          fields[#fields + 1] = r[3 + k]
        end
      end
      redis.call('DEL', rec)
      redis.call('HSET', rec, unpack(fields))
      redis.call('PEXPIRE', rec, retention)
      out[i] = 'delivered'
    end
  elseif not current then
    out[i] = 'gone'
  elseif kind == 'fail' then
    ack(entry)
    local fields = {'history', appended(r[3], at .. '\t' .. attempt .. '\t' .. c)}
    if d ~= '' then
      fields[3] = 'status'
      fields[4] = d
    end
    if a ~= '' then
      redis.call('ZADD', KEYS[3], a, id)
      redis.call('HSET', rec, 'state', 'retrying', 'next_ms', a, 'updated_ms', at,
        'last_error', c, unpack(fields))
      out[i] = 'retry'
    else
      bury(rec, id, at, b, c, fields)
      out[i] = 'dead'
    end
  else
    ack(entry)
    local attempts = tonumber(attempt) - 1
    local next_state = 'retrying'
    if attempts <= 0 then
      attempts = 0
      next_state = 'pending'
    end
    if b ~= '' then
      redis.call('HSET', rec, 'state', next_state, 'attempts', attempts, 'next_ms', a,
        'updated_ms', at, 'last_error', b,
        'history', appended(r[3], at .. '\t' .. attempt .. '\t' .. b))
    else
      redis.call('HSET', rec, 'state', next_state, 'attempts', attempts, 'next_ms', a,
        'updated_ms', at)
    end
    redis.call('ZADD', KEYS[3], a, id)
    out[i] = 'deferred'
  end
end
if #done > 0 then redis.call('ZREM', KEYS[2], unpack(done)) end
flush_acks()
return out
