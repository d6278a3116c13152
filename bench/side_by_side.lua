-- wrk script for bench/side_by_side.py: POST transfers with rotating customers and accounts.
--   wrk ... -s bench/side_by_side.lua URL -- MODE DATAFILE NONCE
-- MODE "bankcore": POST /api/v1/transfers as the source account's owner (a real JWT) with a
--   fresh Idempotency-Key per request (NONCE-thread-counter: unique across threads and rounds);
-- MODE "naive": POST /api/bench/naive-transfers (bench/naive_app), no auth, no key.
-- DATAFILE: one line per customer: "<access token> <account id> <iban>".
-- Source and destination: two different customers' accounts, uniformly at random.

local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count)
end

local mode, nonce
local customers = {}
local counter = 0
local json_headers = { ["Content-Type"] = "application/json" }

function init(args)
  mode, nonce = args[1], args[3]
  for line in io.lines(args[2]) do
    local token, account, iban = line:match("^(%S+) (%S+) (%S+)$")
    customers[#customers + 1] = { auth = "Bearer " .. token, account = account, iban = iban }
  end
  math.randomseed(os.time() + 7919 * thread_id)
end

function request()
  local count = #customers
  local s = math.random(count)
  local d = math.random(count - 1)
  if d >= s then d = d + 1 end
  local source, destination = customers[s], customers[d]
  local cents = math.random(1, 99)
  if mode == "naive" then
    local body = string.format('{"source":"%s","destination":"%s","amount":%d}', source.account, destination.account, cents)
    return wrk.format("POST", "/api/bench/naive-transfers", json_headers, body)
  end
  counter = counter + 1
  local body = string.format(
    '{"source_account":"%s","destination":"%s","amount":"0.%02d","currency":"EUR"}',
    source.account, destination.iban, cents
  )
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = source.auth,
    ["Idempotency-Key"] = string.format("%s-%d-%d", nonce, thread_id, counter),
  }
  return wrk.format("POST", "/api/v1/transfers", headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d\n", summary.requests, summary.duration,
    e.status, e.connect, e.read, e.write, e.timeout))
  io.write(string.format("LATENCY %.0f %.0f %.0f\n", latency:percentile(50), latency:percentile(99), latency.mean))
end
