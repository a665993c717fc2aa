-- wrk script: recommendation lookups for random users of the bench lake
-- (user ids as benches/common/events.rs generates them: skewed towards low ids).
math.randomseed(42)
request = function()
  local a = math.random(0, 999999)
  local b = math.random(0, 999999)
  local user = math.floor(a * b / 1000000)
  return wrk.format("GET", "/v1/users/user-" .. user .. "/recommendations")
end
