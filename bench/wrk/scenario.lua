-- One wrk script for every scenario; bench/run.py sets these environment variables:
--   BENCH_METHOD  GET (default), POST or PATCH
--   BENCH_PATHS   request paths separated by "|"; requests cycle through them, each wrk
--                 thread starting at a different one (so connections hit different rows)
--   BENCH_TOKEN   access token for "Authorization: Bearer" (optional)
--   BENCH_CLIENT  X-TE-Client header (optional; the QGIS plugin sends one)
--   BENCH_BODY    none | progress | log_single | log_batch | login
--   BENCH_BATCH   lines per log_batch request (default 100)
--   BENCH_EMAIL, BENCH_PASSWORD  the login body
-- done() prints one line "BENCH_RESULT {json}" that bench/run.py parses.

local threads = {}

function setup(thread)
   thread:set("thread_index", #threads)
   table.insert(threads, thread)
end

local function split(value, sep)
   local items = {}
   for item in string.gmatch(value or "", "([^" .. sep .. "]+)") do
      table.insert(items, item)
   end
   return items
end

local function json_string(value)
   return '"' .. value:gsub('\\', '\\\\'):gsub('"', '\\"') .. '"'
end

local LOG_TEXTS = {
   "Computing productivity trajectory for tile %d with method ndvi_trend",
   "Earth Engine task RUNNING (export of tile %d to cloud storage, COG, Int16, 250 m)",
   "Exported tile %d: 4 bands, 2048 x 2048 pixels, no_data_value -32768",
   "WARNING: tile %d crosses a dataset boundary; using the nearest valid NDVI composite",
}

function init(args)
   method = os.getenv("BENCH_METHOD") or "GET"
   paths = split(os.getenv("BENCH_PATHS") or "/", "|")
   body_kind = os.getenv("BENCH_BODY") or "none"
   batch = tonumber(os.getenv("BENCH_BATCH") or "100")
   counter = (thread_index or 0) * 7919
   headers = {["Content-Type"] = "application/json", ["Accept"] = "application/json"}
   local token = os.getenv("BENCH_TOKEN")
   if token and token ~= "" then
      headers["Authorization"] = "Bearer " .. token
   end
   local client = os.getenv("BENCH_CLIENT")
   if client and client ~= "" then
      headers["X-TE-Client"] = client
   end
   if body_kind == "login" then
      login_body = '{"email": ' .. json_string(os.getenv("BENCH_EMAIL")) ..
         ', "password": ' .. json_string(os.getenv("BENCH_PASSWORD")) .. '}'
   end
end

local function log_line(n)
   local level = (n % 10 == 0) and "DEBUG" or "INFO"
   local text = string.format(LOG_TEXTS[(n % #LOG_TEXTS) + 1], n)
   return '{"text": ' .. json_string(text) .. ', "level": "' .. level .. '"}'
end

function request()
   counter = counter + 1
   local path = paths[(counter % #paths) + 1]
   local body = nil
   if body_kind == "progress" then
      body = string.format('{"progress": %d}', counter % 100)
   elseif body_kind == "log_single" then
      body = log_line(counter)
   elseif body_kind == "log_batch" then
      local lines = {}
      for i = 1, batch do
         lines[i] = log_line(counter * batch + i)
      end
      body = "[" .. table.concat(lines, ", ") .. "]"
   elseif body_kind == "login" then
      body = login_body
   end
   return wrk.format(method, path, headers, body)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, ' ..
      '"errors_connect": %d, "errors_read": %d, "errors_write": %d, ' ..
      '"errors_status": %d, "errors_timeout": %d}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
