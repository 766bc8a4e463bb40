-- wrk script: one stateless MCP 2026-07-28 `tools/call` per request, answers checked.
--
-- bench/native_load.py defines the request once (REQUEST_BODY, REQUEST_HEADERS, EXPECT) and
-- passes it here in the environment (native_load.wrk_env): WRK_BODY, WRK_HEADERS ("Name: value"
-- lines), WRK_EXPECT (a plain substring every answer must contain) and, optionally, WRK_HOST
-- (the Host header: a gateway on a loopback alias is asked by its tailnet name, as serve asks it).
-- The request is built once (wrk's fast path: no Lua per request); response() reads every answer
-- and counts it bad unless it is a 200 holding WRK_EXPECT. done() prints one JSON line
-- ("wrk-result {...}") with the count, duration, latency percentiles and every kind of failure.

local body = os.getenv("WRK_BODY")
local expect = os.getenv("WRK_EXPECT")
local header_lines = os.getenv("WRK_HEADERS")
if not body or not expect or not header_lines then
  error("set WRK_BODY, WRK_HEADERS and WRK_EXPECT (bench/native_load.py wrk_env)")
end
wrk.method = "POST"
wrk.body = body
for name, value in string.gmatch(header_lines, "([^:\n]+):%s*([^\n]*)") do
  wrk.headers[name] = value
end
local host = os.getenv("WRK_HOST")
if host and host ~= "" then
  wrk.headers["Host"] = host
end

local threads = {}
bad = 0
first_bad = ""

function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, answer)
  if status ~= 200 or not string.find(answer or "", expect, 1, true) then
    bad = bad + 1
    if first_bad == "" then
      first_bad = status .. " " .. string.sub(answer or "", 1, 200)
    end
  end
end

local function quote(s)
  return '"' .. string.gsub(s, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end) .. '"'
end

function done(summary, latency, requests)
  local nbad, sample = 0, ""
  for _, t in ipairs(threads) do
    nbad = nbad + t:get("bad")
    if sample == "" then sample = t:get("first_bad") end
  end
  local e = summary.errors
  io.write(string.format(
    'wrk-result {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,'
      .. '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,'
      .. '"bad":%d,"first_bad":%s}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, nbad, quote(sample)))
end
