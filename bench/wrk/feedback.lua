-- POST /feedback with the store broadcaster's exact payload, cycling through
-- four coordinators and the levels a flapping store emits (ok/soft/hard), so
-- the control loop sees tightening, held relaxes and transitions.
dofile("report.lua")

local bodies = {}
local levels = {
   { 500, "ok", "queue_recovered" }, { 6000, "soft", "null" },
   { 5000, "ok", "queue_recovered" }, { 9500, "hard", "null" },
   { 8500, "soft", "null" }, { 800, "ok", "queue_recovered" },
}
for c = 1, 4 do
   for _, l in ipairs(levels) do
      local reason = l[3] == "null" and "null" or ('"' .. l[3] .. '"')
      bodies[#bodies + 1] = string.format(
         '{"coordinator_id":"store_%02d","queue_size":%d,"capacity":10000,' ..
         '"level":"%s","reason":%s,"utilization":%.2f}',
         c, l[1], l[2], reason, l[1] / 10000)
   end
end

local requests = {}
local n = 0

function init(args)
   for i, body in ipairs(bodies) do
      requests[i] = wrk.format("POST", "/feedback",
         { ["Content-Type"] = "application/json" }, body)
   end
end

function request()
   n = n + 1
   return requests[(n % #requests) + 1]
end
