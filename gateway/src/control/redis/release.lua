-- Gives up the automation lease, only if the caller's term is still the one in force.
--
-- KEYS[1]  {cellgate}:autoevac:lease
-- ARGV[1]  the caller's lease ("<token> <holder>")
--
-- Returns 1 when released, 0 when another term (or none) was in force.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
