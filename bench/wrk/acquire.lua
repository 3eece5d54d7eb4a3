-- POST /api/v1/acquire for one token of the provider named in the
-- environment variable MDP_BENCH_PROVIDER (default "bench").
dofile("report.lua")

wrk.method = "POST"
wrk.path = "/api/v1/acquire"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format('{"provider":"%s","tokens":1}',
   os.getenv("MDP_BENCH_PROVIDER") or "bench")
