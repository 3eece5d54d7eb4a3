#!/usr/bin/env python3
"""Acquire throughput and latency with the shared budget, side by side in one run:

  local    mdp serve, tokens from the pod's own bucket
  shared   mdp serve --budget-redis, every acquire runs the bucket script in Redis
  ceiling  redis-benchmark running the same script (EVALSHA) straight on Redis

    bench/budget.py --mdp target/release/mdp [--duration 10] [--connections 64]

Needs wrk, redis-server, redis-cli and redis-benchmark. Prints a Markdown table.
"""

import argparse
import atexit
import csv
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402  (the wrk runner and process helpers)

SCRIPT = os.path.join(HERE, "..", "src", "rate", "bucket.lua")
# A budget no run can exhaust: every acquire is granted, so the figures are the
# cost of the path, not of refusals.
PROVIDER = "bench=1000000000/s,burst=1000000000"
LOCAL = "local (the pod's own bucket)"
SHARED = "shared (`--budget-redis`)"
CEILING = "ceiling: `redis-benchmark` `EVALSHA` of the same script"
# Goal: the shared mode sustains at least half of what Redis itself does
# running the script.
GOAL_SHARED_SHARE = 0.50


def wait_shared(port, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
            if 'mdp_budget_mode{mode="shared"} 1' in text:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("mdp never reached the shared budget")


def mdp_run(args, label, extra, redis_port=None):
    port = harness.free_port()
    argv = [args.mdp, "serve", "--listen", f"127.0.0.1:{port}", "--provider", PROVIDER, *extra]
    server = harness.Server(label, argv, port, "/ready", args.workdir, env=dict(os.environ, MDP_LOG="warn"))
    server.start()
    try:
        if redis_port:
            wait_shared(port)
        return harness.wrk(server.url("/api/v1/acquire"), "acquire.lua", args, pid=server.pid,
                         env={"MDP_BENCH_PROVIDER": "bench"})
    finally:
        server.stop()


def ceiling(args, redis_port):
    sha = subprocess.run(["redis-cli", "-p", str(redis_port), "SCRIPT", "LOAD", open(SCRIPT).read()],
                         check=True, capture_output=True, text=True).stdout.strip()
    requests = 20000 if args.smoke else 400000
    out = subprocess.run(
        ["redis-benchmark", "-p", str(redis_port), "-c", str(args.connections), "-n", str(requests),
         "--csv", "EVALSHA", sha, "1", "mdp:budget:ceiling", "1000000000", "1000000000", "1", "60000"],
        check=True, capture_output=True, text=True).stdout
    row = next(csv.DictReader(io.StringIO(out)))
    return {"rps": float(row["rps"]), "p50_us": float(row["p50_latency_ms"]) * 1000,
            "p99_us": float(row["p99_latency_ms"]) * 1000, "non2xx": 0}


def redis_tools_missing():
    """The first of the tools this needs that is not installed, or None."""
    for tool in ("wrk", "redis-server", "redis-cli", "redis-benchmark"):
        if shutil.which(tool) is None:
            return tool
    return None


def measure(args):
    """args: mdp, duration, connections, threads, smoke, workdir. Returns
    {"rows": [(label, result)], "redis": version} with the three paths."""
    redis_port = harness.free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", args.workdir],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    harness.STARTED.append(redis)
    try:
        for _ in range(200):
            if subprocess.run(["redis-cli", "-p", str(redis_port), "PING"],
                              capture_output=True, text=True).stdout.strip() == "PONG":
                break
            time.sleep(0.05)
        rows = [
            (LOCAL, mdp_run(args, "local", [])),
            (SHARED, mdp_run(args, "shared", ["--budget-redis", f"redis://127.0.0.1:{redis_port}/0"], redis_port)),
            (CEILING, ceiling(args, redis_port)),
        ]
    finally:
        harness.stop(redis)
    banner = harness.tool_version(["redis-server", "--version"])
    match = re.search(r"v=(\S+)", banner)
    version = f"Redis {match.group(1)}" if match else banner
    for label, r in rows:
        harness.log(f"budget {label}: {r['rps']:,.0f} req/s, p99 {r['p99_us'] / 1000:.2f} ms")
    return {"rows": rows, "redis": version, "duration": args.duration, "threads": args.threads,
            "connections": args.connections}


def shared_share(result):
    """Shared req/s as a share of the ceiling's, or None."""
    rows = dict(result.get("rows") or [])
    if SHARED not in rows or CEILING not in rows or not rows[CEILING]["rps"]:
        return None
    return rows[SHARED]["rps"] / rows[CEILING]["rps"]


def table(result):
    """The Markdown table of one measure() result, verdict row included."""
    L = ["| path | requests/s | p50 | p99 | non-200 |", "|---|---:|---:|---:|---:|"]
    for label, r in result["rows"]:
        L.append(f"| {label} | {r['rps']:,.0f} | {r['p50_us'] / 1000:.2f} ms | "
                 f"{r['p99_us'] / 1000:.2f} ms | {r['non2xx']} |")
    share = shared_share(result)
    if share is not None:
        L.append(f"| **shared / ceiling** | {share * 100:.0f} % (goal ≥ {GOAL_SHARED_SHARE * 100:.0f} %: "
                 f"{harness.verdict(share >= GOAL_SHARED_SHARE)}) | | | |")
    return L


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mdp", required=True)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--smoke", action="store_true", help="one second per target")
    args = p.parse_args()
    args.mdp = os.path.abspath(args.mdp)
    if args.smoke:
        args.duration = 1
    missing = redis_tools_missing()
    if missing:
        sys.exit(f"budget: {missing} is not installed")
    atexit.register(harness.stop_all)
    args.workdir = tempfile.mkdtemp(prefix="mdp-budget-bench-")
    result = measure(args)
    m = harness.machine()
    print(f"acquire, {args.connections} connections, {args.duration:g} s per target; "
          f"{m['nproc']} cores ({m['cpu']}), load before {m['load_before'][0]:.2f}\n")
    print("\n".join(table(result)))


if __name__ == "__main__":
    main()
