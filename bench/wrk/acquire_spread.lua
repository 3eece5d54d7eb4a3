-- POST /api/v1/acquire for one token, spread round-robin over the providers
-- p0000 .. p(N-1), N from the environment variable MDP_BENCH_PROVIDERS
-- (default 1).
dofile("report.lua")

local requests = {}
local n = 0

function init(args)
   local count = tonumber(os.getenv("MDP_BENCH_PROVIDERS") or "1")
   for i = 0, count - 1 do
      requests[i + 1] = wrk.format("POST", "/api/v1/acquire",
         { ["Content-Type"] = "application/json" },
         string.format('{"provider":"p%04d","tokens":1}', i))
   end
end

function request()
   n = n + 1
   return requests[(n % #requests) + 1]
end
