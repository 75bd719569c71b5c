-- wrk script for the orders API, as one customer (TOKEN from the environment).
--   MODE=place: POST /api/orders for PRODUCT; every response should be 201.
--   MODE=get:   GET /api/orders/ORDER; every response should be 200.
local mode = os.getenv("MODE") or "place"
local expected = 200
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
if mode == "place" then
  expected = 201
  wrk.method = "POST"
  wrk.path = "/api/orders"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = string.format(
    '{"items":[{"productId":"%s","quantity":2}],"shippingAddress":{"name":"Bench","line1":"1 Road","city":"London","postalCode":"N1","country":"GB"},"paymentToken":"tok_success"}',
    os.getenv("PRODUCT"))
else
  wrk.method = "GET"
  wrk.path = "/api/orders/" .. os.getenv("ORDER")
end

-- DELAY_MS: a pause before each request, to hold the rate below what the saga drains.
local pause = tonumber(os.getenv("DELAY_MS") or "0")
if pause > 0 then
  delay = function() return pause end
end

local unexpected = 0
response = function(status)
  if status ~= expected then unexpected = unexpected + 1 end
end

done = function(summary, latency)
  io.write(string.format("responses other than %d: %d\n", expected, unexpected))
end
