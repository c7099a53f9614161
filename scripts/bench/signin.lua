-- wrk script: POST /auth/signin, cycling through the accounts bench.sh
-- created (bench0..bench19@example.com), so that concurrent sign-ins rarely
-- share an account (attempts in flight count against its throttle).
local counter = 0
request = function()
  counter = counter + 1
  local body = string.format(
    '{"email":"bench%d@example.com","password":"correct horse battery"}', counter % 20)
  return wrk.format("POST", "/auth/signin", { ["Content-Type"] = "application/json" }, body)
end
