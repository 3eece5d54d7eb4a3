#!/usr/bin/env python3
"""Benchmark driver for mdp (stdlib only): mdp, the Python service it replaces
and a bare warp server, loaded side by side with wrk. Called by bench/run.sh,
which builds the binaries and the venv; see BENCHMARKS.md.

Every load run is bounded in time and aimed at 127.0.0.1 only.
"""

import argparse
import atexit
import datetime
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import types

import budget
import curves
import document
from acquire import acquire_section, start_acquire_servers
from report import goals, report, report_sections
from harness import (
    HERE, STARTED, Server, free_port, histogram, histogram_quantile, log, machine,
    post_coordinators, proc_cpu_seconds, proc_status, scrape, stop, stop_all, time_to_ready,
    tool_version, tree_size, wrk,
)

# The /metrics req/s baseline (a figure from an earlier run, compared across
# runs): bench/notes/baseline.json unless --metrics-baseline is given.
BASELINE_FILE = os.path.join(HERE, "notes", "baseline.json")


# ---------------------------------------------------------------- measurements


def measure_startup(targets, args, workdir):
    out = {}
    for name, make_argv, path, n in targets:
        times = []
        for _ in range(n):
            port = free_port()
            times.append(time_to_ready(make_argv(port), port, path, workdir))
        out[name] = {
            "median_ms": statistics.median(times) * 1e3,
            "min_ms": min(times) * 1e3, "max_ms": max(times) * 1e3, "n": n,
            "path": path,
        }
        log(f"startup {name}: median {out[name]['median_ms']:.1f} ms over {n}")
    return out


def load_rounds(plan, args):
    """plan: list of (target, route, Server, path, script, env). Each round
    runs every entry once; the order rotates between rounds."""
    results = {}
    for rnd in range(args.rounds):
        order = plan[rnd % len(plan):] + plan[:rnd % len(plan)]
        for target, route, server, path, script, env in order:
            hist_before = None
            if route == "POST /feedback":
                hist_before = histogram(scrape(server.port).decode(),
                                        "mdp_feedback_event_to_scale_seconds")
            r = wrk(server.url(path), script, args, pid=server.pid, env=env)
            if hist_before is not None:
                after = histogram(scrape(server.port).decode(),
                                  "mdp_feedback_event_to_scale_seconds")
                r["hist_p50"] = histogram_quantile(hist_before, after, 0.50)
                r["hist_p99"] = histogram_quantile(hist_before, after, 0.99)
            results.setdefault((target, route), []).append(r)
            log(f"round {rnd + 1}/{args.rounds} {target:9} {route:28} "
                f"{r['rps']:>10.0f} req/s  p99 {r['p99_us'] / 1e3:.2f} ms  "
                f"non2xx {r['non2xx']}  errors {r['socket_errors']}")
            time.sleep(args.pause)
    return results


def measure_metrics_scaling(args, workdir, binaries):
    """binaries: [(label, path)]; sizes outer, binaries inner (interleaved)."""
    out = []
    for n in args.sizes:
        for label, binary in binaries:
            row = scrape_at_size(args, workdir, label, binary, n)
            out.append(row)
    return out


def scrapes_after_changes(port, pid, iterations):
    """Scrape latency when every scrape follows a change (a feedback event),
    so nothing cached can answer it: the cost Prometheus sees every 15 s.
    Times the first byte of each response (mdp encodes the whole body before
    it answers), on a raw keep-alive socket; returns (p50 us, p99 us, mdp CPU
    us per event + scrape)."""
    feedback = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    times = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cpu0 = proc_cpu_seconds(pid)
        for i in range(iterations):
            body = json.dumps({"coordinator_id": "store_0000", "queue_size": 100 + i % 50,
                               "capacity": 10000, "level": "ok"})
            feedback.request("POST", "/feedback", body, {"Content-Type": "application/json"})
            feedback.getresponse().read()
            t0 = time.perf_counter()
            s.sendall(request)
            head = s.recv(65536)
            times.append(time.perf_counter() - t0)
            while b"\r\n\r\n" not in head:
                head += s.recv(65536)
            header, _, rest = head.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", header).group(1))
            remaining = length - len(rest)
            while remaining > 0:
                remaining -= len(s.recv(min(remaining, 1 << 20)))
        cpu = proc_cpu_seconds(pid) - cpu0
    feedback.close()
    times.sort()
    return (times[len(times) // 2] * 1e6, times[min(len(times) - 1, int(len(times) * 0.99))] * 1e6,
            cpu / iterations * 1e6)


def scrape_at_size(args, workdir, label, binary, n):
    """One mdp with n providers and n coordinators: size and cost of a scrape."""
    port = free_port()
    argv = [binary, "serve", "--listen", f"127.0.0.1:{port}",
            "--max-coordinators", str(max(256, n)), "--log", "warn"]
    for i in range(n):
        argv += ["--provider", f"p{i:04d}=100/s,burst=100"]
    server = Server(f"{label}-scale-{n}", argv, port, "/ready", workdir).start()
    try:
        post_coordinators(port, n)
        body = scrape(port).decode()
        series = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
        r = wrk(server.url("/metrics"), "get.lua", args, pid=server.pid,
                connections=1, duration=args.scale_duration)
        changed = scrapes_after_changes(port, server.pid, args.scale_iterations)
        rss = proc_status(server.pid)
    finally:
        server.stop()
    log(f"{label} /metrics at {n} providers + {n} coordinators: {series} series, "
        f"{len(body)} bytes, p50 {r['p50_us']} us, p99 {r['p99_us']} us; after a change "
        f"p50 {changed[0]:.0f} us, p99 {changed[1]:.0f} us")
    return {"target": label, "n": n, "series": series, "bytes": len(body), "rps": r["rps"],
            "p50_us": r["p50_us"], "p99_us": r["p99_us"],
            "cpu_us_per_req": r["cpu_us_per_req"], "rss": rss["VmHWM"],
            "changed_p50_us": changed[0], "changed_p99_us": changed[1],
            "changed_cpu_us": changed[2],
            "non2xx": r["non2xx"], "socket_errors": r["socket_errors"]}


def measure_sse(label, server, args):
    # Baseline: the same process with no stream open, same window.
    cpu0 = proc_cpu_seconds(server.pid)
    time.sleep(args.sse_seconds)
    idle_cpu = proc_cpu_seconds(server.pid) - cpu0
    clients = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "sse_clients.py"), "--port", str(server.port),
         "--clients", str(args.sse_clients), "--seconds", str(args.sse_seconds + 1.5)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    STARTED.append(clients)
    try:
        line = clients.stdout.readline()
        connected = int(line.split()[1]) if line.startswith("CONNECTED") else 0
        time.sleep(1.0)  # let the connect burst settle out of the window
        cpu0 = proc_cpu_seconds(server.pid)
        time.sleep(args.sse_seconds)
        cpu = proc_cpu_seconds(server.pid) - cpu0
        rss = proc_status(server.pid)["VmRSS"]
        out, _ = clients.communicate(timeout=args.sse_seconds + 30)
    finally:
        stop(clients)
    summary = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    events_per_stream_s = None
    if summary.get("events") is not None and connected:
        events_per_stream_s = summary["events"] / connected / summary["seconds"]
    result = {"target": label, "clients": args.sse_clients, "connected": connected,
              "window_s": args.sse_seconds, "cpu_s": cpu, "idle_cpu_s": idle_cpu,
              "events": summary.get("events"), "errors": summary.get("errors"),
              "events_per_stream_s": events_per_stream_s, "rss": rss}
    log(f"SSE {label}: {connected}/{args.sse_clients} streams, {cpu:.3f} CPU s over "
        f"{args.sse_seconds}s (idle {idle_cpu:.3f}), events {result['events']}")
    return result


def run_event_latency(args, binary):
    events = "10000" if args.smoke else "100000"
    out = subprocess.run([binary, events], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    log(f"event -> scale in process: p99 {result['round_trip_us']['p99']:.1f} us")
    return result


def criterion_results(directory):
    """Median point estimates (ns) of every criterion benchmark found."""
    out = {}
    if not directory or not os.path.isdir(directory):
        return out
    for root, _, files in os.walk(directory):
        if os.path.basename(root) == "new" and "estimates.json" in files:
            try:
                with open(os.path.join(root, "benchmark.json")) as f:
                    bench_id = json.load(f)["full_id"]
                with open(os.path.join(root, "estimates.json")) as f:
                    out[bench_id] = json.load(f)["median"]["point_estimate"]
            except (OSError, KeyError, ValueError):
                continue
    return out




# ---------------------------------------------------------------- main


def panic_exit(binary, task="control loop"):
    """Runs `binary serve` with MDP_FAILPOINT=task: its exit status and whether the log names it."""
    env = dict(os.environ, MDP_FAILPOINT=task)
    try:
        done = subprocess.run([binary, "serve", "--listen", "127.0.0.1:0"], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return {"task": task, "status": None, "named": False}
    return {"task": task, "status": done.returncode,
            "named": f"the {task} task panicked" in done.stderr}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mdp", required=True)
    p.add_argument("--bare-warp", help="required unless --only acquire")
    p.add_argument("--only", choices=["all", "acquire"], default="all",
                   help="acquire: only the acquire comparison (bucket, ibkr rules raised, "
                        "ibkr profile); no other target, start-up, SSE or scaling run")
    p.add_argument("--raised-rules", default=os.path.join(HERE, "ibkr-raised.yaml"),
                   help="providers file with the ibkr rules, counts raised")
    p.add_argument("--event-latency")
    p.add_argument("--build", default="release")
    p.add_argument("--venv", help="venv with market-data-pipeline and uvicorn")
    p.add_argument("--no-python", metavar="REASON", help="skip the Python service, saying why")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--duration", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--pause", type=float, default=1.0)
    p.add_argument("--starts", type=int, default=20)
    p.add_argument("--python-starts", type=int, default=5)
    p.add_argument("--sizes", default="1,10,100,1000")
    p.add_argument("--scale-duration", type=int, default=5)
    p.add_argument("--scale-iterations", type=int, default=300)
    p.add_argument("--sse-clients", type=int, default=500)
    p.add_argument("--sse-seconds", type=int, default=10)
    p.add_argument("--criterion-dir")
    p.add_argument("--compare", action="append", default=[], metavar="LABEL=DIR",
                   help="also load the mdp (and examples/event_latency) in this cargo "
                        "profile directory, e.g. before=/tmp/old/target/release")
    p.add_argument("--curve-settle", type=float, default=2.0,
                   help="seconds an SSE cost-curve server settles before each RSS reading")
    p.add_argument("--curve-events", type=int, default=200,
                   help="feedback events timed at each size of the coordinators curve")
    p.add_argument("--no-budget", metavar="REASON",
                   help="skip the shared-budget comparison (bench/budget.py), saying why")
    p.add_argument("--metrics-baseline", type=float, metavar="REQ_PER_S",
                   help="GET /metrics req/s to compare with (default: bench/notes/baseline.json)")
    p.add_argument("--benchmarks-md", metavar="PATH",
                   help="also write BENCHMARKS.md (the figures with bench/notes/ around them) "
                        "to PATH; refused with --smoke")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--command", default=" ".join(sys.argv))
    args = p.parse_args()
    if args.smoke:
        args.duration, args.rounds, args.starts, args.python_starts = 1, 1, 3, 1
        args.scale_duration, args.sse_clients, args.sse_seconds = 1, 50, 2
        args.scale_iterations = 20
        args.sizes, args.pause, args.curve_settle, args.curve_events = "1,10,100", 0.2, 0.5, 20
        if args.benchmarks_md:
            p.error("--benchmarks-md is refused with --smoke: its figures say nothing")
    args.sizes = [int(s) for s in args.sizes.split(",")]
    # The servers run in the results directory: paths from the caller's.
    args.mdp, args.raised_rules = os.path.abspath(args.mdp), os.path.abspath(args.raised_rules)
    if args.only == "all" and not args.bare_warp:
        p.error("--bare-warp is required unless --only acquire")
    return args


def main():
    args = parse_args()
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for tool in ("wrk",):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            sys.exit(f"bench: {tool} is not installed (Debian: apt-get install {tool})")
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + ("-smoke" if args.smoke else "")
    workdir = os.path.join(args.out, stamp)
    os.makedirs(workdir, exist_ok=True)
    data = {"when": when, "machine": machine(), "build": args.build,
            "command": args.command, "wrk_version": tool_version(["wrk", "-v"])}
    if args.only == "acquire":
        return main_acquire(args, data, workdir)

    python_bin = None
    data["python"] = {"missing_routes": {
        "POST /feedback": "no such route in market-data-pipeline 0.8.1 (404): its feedback bus is in-process only",
        "POST /api/v1/acquire": "no such route (404): rate pacing is in-process only",
        "GET /api/v1/stream": "no such route (404)",
    }}
    if args.no_python:
        data["python"]["label"] = f"skipped: {args.no_python}"
        log(f"Python service skipped: {args.no_python}")
    elif args.venv:
        python_bin = os.path.join(args.venv, "bin", "python")
        probe = ("import importlib.metadata as m\n"
                 "for p in ('market-data-pipeline', 'uvicorn', 'uvloop', 'httptools'):\n"
                 "    try: print(m.version(p))\n"
                 "    except m.PackageNotFoundError: print('absent')\n")
        version = subprocess.run([python_bin, "-c", probe], capture_output=True,
                                 text=True).stdout.split()
        if len(version) < 4:
            sys.exit(f"bench: {args.venv} has no market-data-pipeline")
        data["python"]["label"] = (
            f"`market-data-pipeline=={version[0]}` under uvicorn {version[1]} "
            f"(uvloop {version[2]}, httptools {version[3]}; "
            f"`uvicorn market_data_pipeline.runners.api:app`, one worker, access log off)")

    # Every mdp under test: this build, then any --compare LABEL=DIR builds.
    mdps = [("mdp", args.mdp, args.event_latency)]
    for spec in args.compare:
        label, _, directory = spec.partition("=")
        directory = os.path.abspath(directory)
        latency = os.path.join(directory, "examples", "event_latency")
        mdps.append((label, os.path.join(directory, "mdp"),
                     latency if os.path.exists(latency) else None))
    data["targets"] = [label for label, _, _ in mdps] + (["Python"] if python_bin else []) + ["bare warp"]

    def mdp_argv(binary):
        return lambda port, extra=(): [binary, "serve", "--listen", f"127.0.0.1:{port}", *extra]

    def warp_argv(port):
        return [args.bare_warp, f"127.0.0.1:{port}"]

    def python_argv(port):
        return [python_bin, "-m", "uvicorn", "market_data_pipeline.runners.api:app",
                "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                "--no-access-log"]

    # Sizes on disk.
    data["sizes"] = {label: os.path.getsize(path) for label, path, _ in mdps}
    data["sizes"]["bare warp"] = os.path.getsize(args.bare_warp)
    if python_bin:
        data["sizes"]["Python"] = tree_size(args.venv)

    # The binary's own fault path: a supervised task that panics ends the
    # process with status 1, the task named (the release profile aborts on panic).
    data["panic_exit"] = panic_exit(args.mdp)

    # In-process latency and start-up first, on a machine not yet loaded.
    data["event_latency"] = {label: run_event_latency(args, path)
                             for label, _, path in mdps if path}
    startup_targets = [(label, mdp_argv(path), "/ready", args.starts) for label, path, _ in mdps]
    startup_targets.append(("bare warp", warp_argv, "/health", args.starts))
    if python_bin:
        startup_targets.append(("Python", python_argv, "/health", args.python_starts))
    data["startup"] = measure_startup(startup_targets, args, workdir)

    # The long-running targets.
    servers = {}
    for label, path, _ in mdps:
        port = free_port()
        servers[label] = Server(label, mdp_argv(path)(port, [
            "--provider", "ibkr=60/s,burst=100",
            "--provider", "bench=1000000000/s,burst=1000000000",
            "--feedback-provider", "ibkr"]), port, "/ready", workdir).start()
    port = free_port()
    servers["bare warp"] = Server("bare-warp", warp_argv(port), port, "/health", workdir).start()
    if python_bin:
        port = free_port()
        servers["Python"] = Server("python", python_argv(port), port, "/health", workdir).start(timeout=60)
    time.sleep(2.0)
    data["memory"] = {name: {"idle": proc_status(s.pid)["VmRSS"]} for name, s in servers.items()}

    plan = []
    for label, _, _ in mdps:
        plan.append((label, "GET /health", servers[label], "/health", "get.lua", None))
    if python_bin:
        plan.append(("Python", "GET /health", servers["Python"], "/health", "get.lua", None))
    plan.append(("bare warp", "GET /health", servers["bare warp"], "/health", "get.lua", None))
    for label, _, _ in mdps:
        plan.append((label, "GET /metrics", servers[label], "/metrics", "get.lua", None))
    if python_bin:
        plan.append(("Python", "GET /metrics", servers["Python"], "/metrics", "get.lua", None))
    for route, path, script, env in [
        ("POST /feedback", "/feedback", "feedback.lua", None),
        ("POST /api/v1/acquire", "/api/v1/acquire", "acquire.lua", {"MDP_BENCH_PROVIDER": "bench"}),
        ("POST /api/v1/acquire (429)", "/api/v1/acquire", "acquire.lua", {"MDP_BENCH_PROVIDER": "ibkr"}),
    ]:
        for label, _, _ in mdps:
            plan.append((label, route, servers[label], path, script, env))
    acquire_servers, acquire_plan = start_acquire_servers(args, args.mdp, workdir)
    plan += acquire_plan
    load = load_rounds(plan, args)
    for server in acquire_servers.values():
        server.stop()
    data["load"] = load
    for name, server in servers.items():
        runs = [r for (t, _), rs in load.items() if t == name for r in rs]
        data["memory"][name]["load"] = max(r["rss_max"] for r in runs) if runs else None

    data["sse"] = [measure_sse(label, servers[label], args) for label, _, _ in mdps]
    for name, server in servers.items():
        data["memory"][name]["hwm"] = proc_status(server.pid)["VmHWM"]
    for server in servers.values():
        server.stop()

    data["scaling"] = measure_metrics_scaling(args, workdir, [(l, p) for l, p, _ in mdps])
    data["curves"] = curves.measure(args, args.mdp, workdir, load_rounds)
    data["budget"] = measure_budget(args, workdir)
    data["criterion"] = criterion_results(args.criterion_dir)
    data["metrics_baseline"] = metrics_baseline(args)
    data["load_after"] = os.getloadavg()
    data["goals"] = goals(data)

    write_results(data, args, workdir, report(data, args))
    if args.benchmarks_md:
        document.write(args.benchmarks_md, dict(report_sections(data, args)))
        log(f"wrote {args.benchmarks_md}")

    # Smoke mode guards the harness and the routes, not the goals: fail on
    # errors that mean something is broken.
    problems = load_problems(load)
    for sse in data["sse"]:
        if sse["connected"] < sse["clients"]:
            problems.append(f"SSE {sse['target']}: only {sse['connected']} of {sse['clients']} streams connected")
    for row in data["scaling"]:
        if row["non2xx"] or row["socket_errors"]:
            problems.append(f"{row['target']} /metrics at {row['n']}: errors")
    problems += curves.problems(data["curves"])
    crash = data["panic_exit"]
    if crash["status"] != 1 or not crash["named"]:
        problems.append(f"a panicking task gave exit status {crash['status']}, "
                        f"{'named' if crash['named'] else 'not named'} in the log")
    for label, r in (data["budget"] or {}).get("rows", []):
        if r["non2xx"]:
            problems.append(f"budget {label}: {r['non2xx']} non-2xx")
    for p in problems:
        log(f"PROBLEM: {p}")
    return 1 if problems else 0


def measure_budget(args, workdir):
    """bench/budget.py's three paths, or why they were not measured."""
    if args.no_budget:
        return {"skipped": args.no_budget}
    missing = budget.redis_tools_missing()
    if missing:
        return {"skipped": f"{missing} is not installed"}
    budget_dir = os.path.join(workdir, "budget")
    os.makedirs(budget_dir, exist_ok=True)
    return budget.measure(types.SimpleNamespace(
        mdp=args.mdp, duration=args.duration, connections=64, threads=2, smoke=args.smoke,
        workdir=budget_dir))


def metrics_baseline(args):
    """{"rps", "source"}: --metrics-baseline, else bench/notes/baseline.json."""
    if args.metrics_baseline:
        return {"rps": args.metrics_baseline, "source": "`--metrics-baseline`"}
    try:
        with open(BASELINE_FILE) as f:
            recorded = json.load(f)["metrics"]
        return {"rps": float(recorded["rps"]), "source": recorded["source"]}
    except (OSError, KeyError, ValueError) as error:
        log(f"no /metrics baseline ({error})")
        return {}


def write_results(data, args, workdir, text):
    serialisable = dict(data, load={f"{t} | {r}": v for (t, r), v in data["load"].items()})
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(serialisable, f, indent=1, default=str)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, "latest.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    log(f"results in {workdir}")


def load_problems(load):
    """Errors that mean something is broken (a route whose name ends in
    `(429)` is meant to be refused)."""
    problems = []
    for (target, route), runs in load.items():
        if route.endswith("(429)"):
            continue
        for r in runs:
            if r["non2xx"] or r["socket_errors"] or r["requests"] == 0:
                problems.append(f"{target} {route}: {r['non2xx']} non-2xx, "
                                f"{r['socket_errors']} socket errors, {r['requests']} requests")
    return problems


def main_acquire(args, data, workdir):
    """`--only acquire`: the three acquire targets, nothing else."""
    servers, plan = start_acquire_servers(args, args.mdp, workdir)
    time.sleep(args.pause)
    data["load"] = load_rounds(plan, args)
    for server in servers.values():
        server.stop()
    data["load_after"] = os.getloadavg()
    m = data["machine"]
    L = [f"# mdp benchmark, acquire only — {data['when']}{' (smoke)' if args.smoke else ''}\n",
         f"Machine: {m['nproc']} CPUs ({m['cpu']}), Linux {m['kernel']}; load average before "
         f"the run {' / '.join(f'{x:.2f}' for x in m['load_before'])}, after "
         f"{' / '.join(f'{x:.2f}' for x in data['load_after'])}. mdp `{data['build']}` build. "
         f"{data['wrk_version']}.\n"]
    L.extend(acquire_section(data, args))
    L.append(f"Command: `{data['command']}`\n")
    write_results(data, args, workdir, "\n".join(L))
    problems = load_problems(data["load"])
    for p in problems:
        log(f"PROBLEM: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
