-- wrk script: POST /auth/signin, cycling through the accounts bench.sh
-- created (bench0..bench19@example.com), so that concurrent sign-ins rarely
-- share an account (attempts in flight count against its throttle). Each wrk
-- thread starts at its own offset: with a shared start, both threads would
-- send the same accounts at the same moment.
local threads = 0
function setup(thread)
  thread:set("offset", threads * 10)
  threads = threads + 1
end

local counter = 0
function init(args)
  counter = tonumber(wrk.thread:get("offset")) or 0
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"email":"bench%d@example.com","password":"correct horse battery"}', counter % 20)
  return wrk.format("POST", "/auth/signin", { ["Content-Type"] = "application/json" }, body)
end
