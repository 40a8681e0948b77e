-- One key's demand exchange. Called with EVALSHA once per active key per tick.
--
-- KEYS[1]  the key's hash, `{rl:<policy>:<escaped key>}`; one field per gateway, whose value
--          is "<demand, milli-requests per second>:<expiry, ms on Redis's clock>".
-- ARGV[1]  this gateway's id
-- ARGV[2]  its demand, milli-requests per second (integer)
-- ARGV[3]  how long its entry stays live, ms
--
-- Returns {total demand, live gateways, floored total}: the sums of the live entries' demands,
-- the second with each demand raised to total / (10 * live) (keep in step with share.rs).
-- Sums are strings: a Lua number returned to Redis would be truncated to an integer.
-- Expiry uses Redis TIME, so gateways' clocks need not agree.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. expiry)
local fields = redis.call('HGETALL', KEYS[1])
local demands, total, last = {}, 0, expiry
for i = 1, #fields, 2 do
  local v = fields[i + 1]
  local sep = string.find(v, ':', 1, true)
  local d = sep and tonumber(string.sub(v, 1, sep - 1))
  local e = sep and tonumber(string.sub(v, sep + 1))
  if d == nil or e == nil or e < now then
    redis.call('HDEL', KEYS[1], fields[i])
  else
    demands[#demands + 1] = d
    total = total + d
    if e > last then last = e end
  end
end
local floor = total / (10 * #demands)
local effective = 0
for _, d in ipairs(demands) do
  effective = effective + math.max(d, floor)
end
redis.call('PEXPIREAT', KEYS[1], last)
return {tostring(total), #demands, tostring(effective)}
