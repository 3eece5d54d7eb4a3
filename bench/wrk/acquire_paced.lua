-- POST /api/v1/acquire as an IBKR historical-data worker sends it: class
-- historical, one of 100 contracts as `key`, one of 1000 requests as
-- `fingerprint` (each repeats every 1000 requests), kind TRADES. Every lease
-- a grant carries is returned with POST /api/v1/release by the next request
-- of this thread, as a worker returns it when its request ends; a plain
-- provider's grant carries none, so there only acquires are sent. The
-- number of releases is reported so bench.py counts acquires apart.
dofile("report.lua")

local acquires = {}
local leases = {}
releases = 0

function init(args)
   for i = 0, 999 do
      acquires[i + 1] = wrk.format("POST", "/api/v1/acquire",
         { ["Content-Type"] = "application/json" },
         string.format('{"provider":"ibkr","class":"historical","key":"AAPL%02d:SMART:TRADES",' ..
            '"fingerprint":"AAPL%02d:SMART:TRADES:1 D:5 mins:%03d","kind":"TRADES"}',
            i % 100, i % 100, i))
   end
end

local n = 0

function request()
   local lease = table.remove(leases)
   if lease then
      releases = releases + 1
      return wrk.format("POST", "/api/v1/release",
         { ["Content-Type"] = "application/json" },
         '{"lease":"' .. lease .. '"}')
   end
   n = n + 1
   return acquires[(n % #acquires) + 1]
end

function response(status, headers, body)
   -- A release answers with its lease too: only a grant's is queued.
   if status == 200 and body:find('"granted":true', 1, true) then
      local lease = body:match('"lease":"([^"]+)"')
      if lease then
         leases[#leases + 1] = lease
      end
   end
end
