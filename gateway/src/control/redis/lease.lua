-- Takes or renews the automation lease (see docs/control-plane.md, "Auto-evacuation lease").
-- Both keys share the {cellgate} hash tag, so on Redis Cluster this runs on one slot.
--
-- KEYS[1]  {cellgate}:autoevac:lease  "<token> <holder>", with a ttl
-- KEYS[2]  {cellgate}:autoevac:fence  the last fencing token handed out (integer)
-- ARGV[1]  the caller's gateway id
-- ARGV[2]  ttl, ms
-- ARGV[3]  the lease the caller believes it holds ("<token> <holder>"), or ''
--
-- Returns {1, lease} when the caller holds the lease (renewed with the same token, or newly
-- granted with a fresh token), {0, lease} when another term is in force.

local current = redis.call('GET', KEYS[1])
if current then
  if current == ARGV[3] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, current}
  end
  return {0, current}
end

local token = redis.call('INCR', KEYS[2])
local lease = token .. ' ' .. ARGV[1]
redis.call('SET', KEYS[1], lease, 'PX', ARGV[2])
return {1, lease}
