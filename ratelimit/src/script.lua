-- One slot group's demand exchange: all due keys of one policy's group in one call.
--
-- KEYS[1]  the group's hash, `{rl:<policy>:g<n>}`; one field per key (its escaped bytes),
--          whose value lists the gateways' live entries, comma-separated:
--          "<gateway>:<demand, milli-requests per second>:<expiry, ms on Redis's clock>".
--          Gateway ids are escaped like keys, so they hold no ':' or ','. The field `#gc`
--          (no escaped key starts with '#') holds the cursor of the expired-entry sweep.
-- ARGV[1]  this gateway's (escaped) id
-- ARGV[2]  the group's lifetime after this call, ms (the longest entry TTL)
-- ARGV[3k], ARGV[3k+1], ARGV[3k+2], k = 1..n: a key's field, this gateway's demand for it
--          (integer), how long the entry stays live (ms)
--
-- Returns, per key, {total demand, live gateways, floored total}: the sums of the key's live
-- entries' demands, the second with each demand raised to total / (10 * live) (keep in step
-- with share.rs). Sums are strings: a Lua number returned to Redis would be truncated.
-- Expiry uses Redis TIME, so gateways' clocks need not agree.
--
-- Commands per call, whatever n: TIME, HMGET, HSCAN, HSET, PEXPIRE, and HDEL when the sweep
-- found fields whose entries all expired (keys nobody reports any more).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gw = ARGV[1]
local n = (#ARGV - 2) / 3

local fields = {}
for k = 1, n do fields[k] = ARGV[3 * k] end
fields[n + 1] = '#gc'
local current = redis.call('HMGET', KEYS[1], unpack(fields))

-- Sweep a few fields per call: drop those with no live entry.
local swept = redis.call('HSCAN', KEYS[1], current[n + 1] or '0', 'COUNT', 32)
local dead = {}
for i = 1, #swept[2], 2 do
  local f = swept[2][i]
  if f ~= '#gc' then
    local live = false
    for _, _, e in string.gmatch(swept[2][i + 1], '([^,:]+):(%d+):(%d+)') do
      if tonumber(e) >= now then live = true break end
    end
    if not live then dead[#dead + 1] = f end
  end
end
if #dead > 0 then redis.call('HDEL', KEYS[1], unpack(dead)) end

local writes, out = {}, {}
for k = 1, n do
  local d = tonumber(ARGV[3 * k + 1])
  local parts = {gw .. ':' .. d .. ':' .. (now + tonumber(ARGV[3 * k + 2]))}
  local demands, total = {d}, d
  if current[k] then
    for g, dd, e in string.gmatch(current[k], '([^,:]+):(%d+):(%d+)') do
      if g ~= gw and tonumber(e) >= now then
        parts[#parts + 1] = g .. ':' .. dd .. ':' .. e
        demands[#demands + 1] = tonumber(dd)
        total = total + tonumber(dd)
      end
    end
  end
  local floor = total / (10 * #demands)
  local effective = 0
  for _, x in ipairs(demands) do effective = effective + math.max(x, floor) end
  writes[#writes + 1] = fields[k]
  writes[#writes + 1] = table.concat(parts, ',')
  out[k] = {tostring(total), #demands, tostring(effective)}
end
writes[#writes + 1] = '#gc'
writes[#writes + 1] = swept[1]
redis.call('HSET', KEYS[1], unpack(writes))
-- Every entry expires within ARGV[2] of its write, so the group outlives its entries and
-- goes when the policy's keys all stop.
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return out
