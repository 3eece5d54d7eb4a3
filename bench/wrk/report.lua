-- Shared by every wrk script of the harness: one machine-readable line at
-- the end of a run (latencies in microseconds), parsed by bench/bench.py.
-- `releases` sums the global of that name in every thread (the scripts that
-- return leases count them there; 0 for the others).
local threads = {}

function setup(thread)
   threads[#threads + 1] = thread
end

function done(summary, latency, requests)
   local e = summary.errors
   local releases = 0
   for _, thread in ipairs(threads) do
      releases = releases + (thread:get("releases") or 0)
   end
   io.write(string.format(
      "WRK_JSON {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d," ..
      "\"connect_errors\":%d,\"read_errors\":%d,\"write_errors\":%d," ..
      "\"status_errors\":%d,\"timeouts\":%d,\"lat_mean_us\":%.1f," ..
      "\"lat_max_us\":%d,\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d,\"p999_us\":%d," ..
      "\"releases\":%d}\n",
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.max,
      latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9), releases))
end
