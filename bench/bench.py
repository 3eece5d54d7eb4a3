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
from harness import (
    HERE, MIB, STARTED, Server, free_port, fmt_mib, fmt_ms, fmt_rate, histogram,
    histogram_quantile, log, machine, median_of, post_coordinators, proc_cpu_seconds,
    proc_status, scrape, stop, stop_all, time_to_ready, tool_version, tree_size, verdict, wrk,
)

# Goals of issue 7.
GOAL_METRICS_VS_PY = 30.0
GOAL_HEALTH_VS_PY = 10.0
GOAL_HEALTH_VS_WARP = 0.90
GOAL_ACQUIRE_VS_WARP = 0.80  # local acquire, one provider, against bare warp's /health
GOAL_FEEDBACK_RPS = 30_000
GOAL_FEEDBACK_P99_US = 2_000
GOAL_EVENT_P99_US = 50.0
GOAL_RSS_IDLE = 16 * MIB
GOAL_RSS_LOAD = 32 * MIB
GOAL_READY_MS = 50.0
GOAL_SCRAPE_1000_MS = 5.0
GOAL_EVENT_P50_US = 5.9  # no worse than the median recorded before
GOAL_BINARY_MIB = 6
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


# ---------------------------------------------------------------- acquire with pacing rules

# (target label, route, extra `mdp serve` arguments, what it measures)
ACQUIRE_ROUTE = "POST /api/v1/acquire historical"


def acquire_targets(args):
    return [
        ("bucket", ACQUIRE_ROUTE, ["--provider", "ibkr=1000000/s,burst=1000000"],
         "one token bucket (`--provider ibkr=1000000/s,burst=1000000`): every request granted"),
        ("ibkr rules, raised", ACQUIRE_ROUTE, ["--providers-file", args.raised_rules],
         "the ibkr profile's six rules with their counts raised so none holds "
         "(`--providers-file bench/ibkr-raised.yaml`): every request granted, "
         "each lease returned"),
        ("ibkr profile", ACQUIRE_ROUTE + " (429)", ["--provider-profile", "ibkr"],
         "the real profile at its real limits (`--provider-profile ibkr`): "
         "after the first grants nearly every request is refused (429)"),
    ]


def start_acquire_servers(args, binary, workdir):
    """One mdp per acquire target, all started before the first round."""
    servers, plan = {}, []
    for label, route, extra, _ in acquire_targets(args):
        port = free_port()
        argv = [binary, "serve", "--listen", f"127.0.0.1:{port}", "--log", "warn", *extra]
        name = "acquire-" + re.sub(r"[^a-z0-9]+", "-", label)
        servers[label] = Server(name, argv, port, "/ready", workdir).start()
        plan.append((label, route, servers[label], "/api/v1/acquire", "acquire_paced.lua", None))
    return servers, plan


def acquire_section(data, args):
    load = data["load"]
    L = ["## Acquire with pacing rules\n"]
    L.append("`POST /api/v1/acquire` of an IBKR historical-data request (`class` historical, "
             "100 contracts as `key`, 1000 requests as `fingerprint`, kind TRADES; "
             "`bench/wrk/acquire_paced.lua`), the same script against three mdp servers run "
             f"side by side, interleaved over {args.rounds} round(s) of `wrk -t{args.threads} "
             f"-c{args.connections} -d{args.duration}s` (order rotating each round, so every "
             "target sees the same load from the rest of the machine); medians over rounds. "
             "A grant's lease is returned by the script's next request (`POST /api/v1/release`), "
             "as a worker does: acquires/s counts acquires only, requests/s and the latencies "
             "count both, CPU per acquire includes its release.\n")
    for label, _, _, what in acquire_targets(args):
        L.append(f"- **{label}**: {what}")
    L.append("")
    L.append("| target | acquires/s (median) | range | requests/s | p50 ms | p99 ms | p99.9 ms "
             "| CPU µs/acquire | non-2xx | acquires/s vs bucket | p99 vs bucket |")
    L.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    base = load.get(("bucket", ACQUIRE_ROUTE))
    base_rps = median_of(base, "acquire_rps") if base else None
    base_p99 = median_of(base, "p99_us") if base else None
    for label, route, _, _ in acquire_targets(args):
        runs = load.get((label, route))
        if not runs:
            continue
        rps = [r["acquire_rps"] for r in runs]
        a_rps, p99 = median_of(runs, "acquire_rps"), median_of(runs, "p99_us")
        L.append(
            f"| {label} | {fmt_rate(a_rps)} | {min(rps):,.0f}–{max(rps):,.0f} | "
            f"{fmt_rate(median_of(runs, 'rps'))} | {fmt_ms(median_of(runs, 'p50_us'))} | "
            f"{fmt_ms(p99)} | {fmt_ms(median_of(runs, 'p999_us'))} | "
            f"{median_of(runs, 'cpu_us_per_acquire') or 0:.1f} | "
            f"{sum(r['non2xx'] for r in runs):,} | "
            f"{'—' if not base_rps else f'{a_rps / base_rps * 100:.0f} %'} | "
            f"{'—' if not base_p99 else f'{p99 / base_p99:.2f}x'} |")
    L.append("")
    return L


# The order of the sections in results.md.
RESULTS_ORDER = ["title", "header", "goals", "throughput", "pacing", "curves", "budget", "memory",
                 "metrics-scaling", "sse", "event", "compare", "criterion-acquire", "criterion",
                 "command"]


def report(data, args):
    """results.md: every section in order."""
    sections = dict(report_sections(data, args))
    return "\n".join(line for key in RESULTS_ORDER for line in sections.get(key, []))


def goals_section(data):
    L = ["## Goals\n",
         "Every goal, measured in this run unless the row says otherwise.\n",
         "| goal | measured | target | verdict |", "|---|--:|--:|---|"]
    for row in data["goals"]:
        L.append(f"| {row['goal']} | {row['measured']} | {row['target']} | {verdict(row['ok'])} |")
    L.append("")
    return L


def budget_section(data):
    result = data.get("budget")
    L = ["## Acquire with a shared budget\n"]
    if not result or result.get("skipped"):
        L.append(f"Not measured in this run: {(result or {}).get('skipped', 'not asked for')}.\n")
        return L
    L.append(f"`POST /api/v1/acquire` for one token of a provider no run can exhaust, "
             f"`wrk -t{result['threads']} -c{result['connections']} -d{result['duration']}s` per "
             f"path, one after the other in one run ([`bench/budget.py`](bench/budget.py)); "
             f"{result['redis']}, on loopback, on the same cores as mdp and wrk. "
             f"*Goal*: shared ≥ {budget.GOAL_SHARED_SHARE * 100:.0f} % of the ceiling.\n")
    L.extend(budget.table(result))
    L.append("")
    return L


CRITERION_ACQUIRE_GROUP = "acquire (bucket vs ibkr rules)/"


def criterion_acquire_section(crit):
    L = ["## Acquire in process (criterion)\n"]
    rows = {k[len(CRITERION_ACQUIRE_GROUP):]: v for k, v in (crit or {}).items()
            if k.startswith(CRITERION_ACQUIRE_GROUP)}
    if not rows:
        L.append("`cargo bench --bench hot_paths`, group `acquire (bucket vs ibkr rules)`: "
                 "not run in this run.\n")
        return L
    L.append("`cargo bench --bench hot_paths`, group `acquire (bucket vs ibkr rules)` "
             "([`benches/hot_paths.rs`](benches/hot_paths.rs)), median of criterion's estimate.\n")
    L.append("| benchmark | median |")
    L.append("|---|--:|")
    for name, ns in sorted(rows.items()):
        L.append(f"| {name} | {fmt_ns(ns)} |")
    L.append("")
    return L


def fmt_ns(ns):
    return f"{ns:.1f} ns" if ns < 1e3 else (f"{ns / 1e3:.2f} µs" if ns < 1e6 else f"{ns / 1e6:.2f} ms")


def report_sections(data, args):
    """[(key, Markdown lines)] in the order of results.md; BENCHMARKS.md
    (bench/document.py) picks them by key and puts bench/notes/ between them."""
    sections = []
    L = [f"# mdp benchmark — {data['when']}{' (smoke)' if args.smoke else ''}\n"]
    if args.smoke:
        L.append("Smoke run: debug build, one second per target, no Python service. It checks "
                 "that the harness and every route work; its figures say nothing about the goals.\n")
    sections.append(("title", L))
    L = []
    m = data["machine"]
    L.append(f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']:.1f} GiB, "
             f"Linux {m['kernel']}; load average before the run "
             f"{' / '.join(f'{x:.2f}' for x in m['load_before'])}, after "
             f"{' / '.join(f'{x:.2f}' for x in data['load_after'])}.  ")
    L.append(f"Load: `wrk -t{args.threads} -c{args.connections} -d{args.duration}s`, "
             f"{args.rounds} round(s), targets interleaved (order rotates each round); "
             f"figures are medians over rounds. {data['wrk_version']}.  ")
    L.append(f"Targets: mdp `{data['build']}` build; Python service "
             f"{data['python'].get('label', '—')}; bare warp (`examples/bare_warp.rs`, "
             f"the loopback ceiling)"
             + "".join(f"; {t} (`--compare`)" for t in data["targets"]
                       if t not in ("mdp", "Python", "bare warp")) + ".\n")

    sections.append(("header", L))
    L = []
    L.append("## Throughput and latency\n")
    L.append("| route | target | req/s (median) | req/s range | p50 ms | p90 ms | p99 ms "
             "| p99.9 ms | CPU µs/req | non-2xx | socket errors |")
    L.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for (target, route), runs in data["load"].items():
        rps = [r["rps"] for r in runs]
        L.append(
            f"| `{route}` | {target} | {fmt_rate(median_of(runs, 'rps'))} | "
            f"{min(rps):,.0f}–{max(rps):,.0f} | {fmt_ms(median_of(runs, 'p50_us'))} | "
            f"{fmt_ms(median_of(runs, 'p90_us'))} | {fmt_ms(median_of(runs, 'p99_us'))} | "
            f"{fmt_ms(median_of(runs, 'p999_us'))} | "
            f"{median_of(runs, 'cpu_us_per_req') or 0:.1f} | "
            f"{sum(r['non2xx'] for r in runs)} | {sum(r['socket_errors'] for r in runs)} |")
    for route, why in data["python"].get("missing_routes", {}).items():
        L.append(f"| `{route}` | Python | — | | | | | | | | {why} |")
    L.append("")

    sections.append(("throughput", L))
    L = []
    L.extend(acquire_section(data, args))

    sections.append(("pacing", L))
    sections.append(("goals", goals_section(data)))
    if data.get("curves"):
        sections.append(("curves", curves.section(data["curves"], args)))
    sections.append(("budget", budget_section(data)))
    L = []
    targets = data["targets"]
    L.append("## Memory, start-up, size\n")
    L.append("| | " + " | ".join(targets) + " |")
    L.append("|---|" + "--:|" * len(targets))
    mem = data["memory"]
    for key, title in [("idle", "RSS idle (VmRSS, 2 s after ready), MiB"),
                       ("load", "RSS under load (max VmRSS sampled during the wrk runs), MiB"),
                       ("hwm", "peak RSS over the whole run (VmHWM; mdp: includes the SSE fan-out), MiB")]:
        L.append(f"| {title} | " + " | ".join(fmt_mib(mem.get(t, {}).get(key)) for t in targets) + " |")
    st = data["startup"]

    def start_cell(t):
        s = st.get(t)
        if not s:
            return "—"
        return f"{s['median_ms']:.1f} ({s['min_ms']:.1f}–{s['max_ms']:.1f}, n={s['n']}, `{s['path']}`)"
    L.append("| exec → first 200, ms: median (min–max, starts, route) | "
             + " | ".join(start_cell(t) for t in targets) + " |")
    sz = data["sizes"]
    L.append("| on disk, MiB (binary; Python: the venv) | "
             + " | ".join(fmt_mib(sz.get(t)) for t in targets) + " |")
    L.append("")

    sections.append(("memory", L))
    L = []
    L.append("## `/metrics` cost as providers and coordinators grow\n")
    L.append(f"One mdp per size, started with N `--provider` flags, then N coordinators "
             f"posted. *Back to back*: `wrk -c1 -d{args.scale_duration}s` (one connection, so "
             f"latency = service time; nothing changes between scrapes). *After a change*: "
             f"{args.scale_iterations} times, one feedback event then one scrape, timed to the "
             f"first byte of the answer (mdp encodes the whole body first); this is what a "
             f"Prometheus scrape every 15 s costs. CPU after a change includes the event.\n")
    L.append("| target | providers = coordinators | series | bytes | back to back: scrapes/s | p50 ms | p99 ms | CPU µs/scrape "
             "| after a change: p50 ms | p99 ms | CPU µs | CPU ns/series | peak RSS MiB |")
    L.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for row in sorted(data["scaling"], key=lambda r: (targets.index(r["target"]), r["n"])):
        L.append(f"| {row['target']} | {row['n']} | {row['series']:,} | {row['bytes']:,} | {row['rps']:,.0f} | "
                 f"{fmt_ms(row['p50_us'])} | {fmt_ms(row['p99_us'])} | {row['cpu_us_per_req']:.0f} | "
                 f"{fmt_ms(row['changed_p50_us'])} | {fmt_ms(row['changed_p99_us'])} | "
                 f"{row['changed_cpu_us']:.0f} | {row['changed_cpu_us'] * 1e3 / row['series']:.0f} | "
                 f"{fmt_mib(row['rss'])} |")
    L.append("")

    sections.append(("metrics-scaling", L))
    L = []
    if data.get("sse"):
        L.append("## SSE fan-out\n")
        L.append("| target | streams open | connected | window | events per stream per s | CPU s in the window (% of one core) | same, no stream open | RSS MiB |")
        L.append("|---|--:|--:|--:|--:|--:|--:|--:|")
        for sse in data["sse"]:
            rate = sse.get("events_per_stream_s")
            L.append(f"| {sse['target']} | {sse['clients']} | {sse['connected']} | {sse['window_s']} s | "
                     f"{'—' if rate is None else f'{rate:.2f}'} | "
                     f"{sse['cpu_s']:.2f} ({sse['cpu_s'] / sse['window_s'] * 100:.1f} %) | "
                     f"{sse['idle_cpu_s']:.2f} | {fmt_mib(sse['rss'])} |")
        L.append("")

    sections.append(("sse", L))
    L = []
    L.append("## Event → new scale\n")
    L.append("| target | measurement | p50 µs | p99 µs | p99.9 µs | max µs |")
    L.append("|---|---|--:|--:|--:|--:|")
    for label, ev in data.get("event_latency", {}).items():
        rt = ev["round_trip_us"]
        L.append(f"| {label} | in process, every event changes the scale ({ev['events']:,} events, "
                 f"`examples/event_latency.rs`: a runtime task sends, the loop applies, the reply is back) | {rt['p50']:.1f} | "
                 f"{rt['p99']:.1f} | {rt['p999']:.1f} | {rt['max']:.1f} |")
    for label in targets:
        fb = data["load"].get((label, "POST /feedback"))
        if not fb:
            continue
        p50 = [r["hist_p50"][1] for r in fb if r.get("hist_p50") and r["hist_p50"][1] is not None]
        p99 = [r["hist_p99"] for r in fb if r.get("hist_p99") and r["hist_p99"][0] is not None]
        if p99 and p50:
            bound = statistics.median(b for b, _ in p99) * 1e6
            est = statistics.median(e for _, e in p99) * 1e6
            L.append(f"| {label} | under the `POST /feedback` load (the service's own histogram "
                     f"`mdp_feedback_event_to_scale_seconds`: handler start → scale in force, "
                     f"queueing included) | {statistics.median(p50) * 1e6:.1f} | {est:.1f} "
                     f"(bucket ≤ {bound:g}) | | |")
    L.append("")

    sections.append(("event", L))
    L = []
    compared = [t for t in targets if t not in ("mdp", "Python", "bare warp")]
    for label in compared:
        L.append(f"## mdp against {label}\n")
        L.append(f"| route | mdp req/s | {label} req/s | ratio | mdp CPU µs/req | {label} CPU µs/req | mdp p99 ms | {label} p99 ms |")
        L.append("|---|--:|--:|--:|--:|--:|--:|--:|")
        for (target, route), runs in data["load"].items():
            if target != "mdp" or (label, route) not in data["load"]:
                continue
            other = data["load"][(label, route)]
            a, b = median_of(runs, "rps"), median_of(other, "rps")
            L.append(f"| `{route}` | {fmt_rate(a)} | {fmt_rate(b)} | {a / b:.2f}x | "
                     f"{median_of(runs, 'cpu_us_per_req'):.1f} | {median_of(other, 'cpu_us_per_req'):.1f} | "
                     f"{fmt_ms(median_of(runs, 'p99_us'))} | {fmt_ms(median_of(other, 'p99_us'))} |")
        L.append("")

    sections.append(("compare", L))
    L = []
    crit = data.get("criterion")
    sections.append(("criterion-acquire", criterion_acquire_section(crit)))
    if crit:
        L.append("## Criterion (in process, median)\n")
        L.append("| benchmark | median |")
        L.append("|---|--:|")
        for name, ns in sorted(crit.items()):
            L.append(f"| {name} | {fmt_ns(ns)} |")
        L.append("")
    sections.append(("criterion", L))
    sections.append(("command", [f"Command: `{data['command']}`\n"]))
    return sections


def goals(data):
    load = data["load"]

    def med(target, route, key="rps"):
        runs = load.get((target, route))
        return median_of(runs, key) if runs else None

    def ratio(a, b):
        return a / b if a is not None and b else None

    rows = []
    metrics_ratio = ratio(med("mdp", "GET /metrics"), med("Python", "GET /metrics"))
    rows.append({"goal": "`/metrics` req/s vs Python",
                 "measured": "—" if metrics_ratio is None else f"{metrics_ratio:.1f}x",
                 "target": f"≥ {GOAL_METRICS_VS_PY:.0f}x",
                 "ok": None if metrics_ratio is None else metrics_ratio >= GOAL_METRICS_VS_PY})
    health_py = ratio(med("mdp", "GET /health"), med("Python", "GET /health"))
    rows.append({"goal": "`/health` req/s vs Python",
                 "measured": "—" if health_py is None else f"{health_py:.1f}x",
                 "target": f"≥ {GOAL_HEALTH_VS_PY:.0f}x",
                 "ok": None if health_py is None else health_py >= GOAL_HEALTH_VS_PY})
    health_warp = ratio(med("mdp", "GET /health"), med("bare warp", "GET /health"))
    rows.append({"goal": "`/health` req/s vs bare warp",
                 "measured": "—" if health_warp is None else f"{health_warp * 100:.0f} %",
                 "target": f"≥ {GOAL_HEALTH_VS_WARP * 100:.0f} %",
                 "ok": None if health_warp is None else health_warp >= GOAL_HEALTH_VS_WARP})
    acquire_warp = ratio(med("mdp", "POST /api/v1/acquire"), med("bare warp", "GET /health"))
    rows.append({"goal": "`POST /api/v1/acquire` req/s (local bucket, one provider) vs bare warp "
                         "`/health`",
                 "measured": "—" if acquire_warp is None else f"{acquire_warp * 100:.0f} %",
                 "target": f"≥ {GOAL_ACQUIRE_VS_WARP * 100:.0f} %",
                 "ok": None if acquire_warp is None else acquire_warp >= GOAL_ACQUIRE_VS_WARP})
    metrics_rps, baseline = med("mdp", "GET /metrics"), data.get("metrics_baseline") or {}
    base_rps = baseline.get("rps")
    rows.append({"goal": "`GET /metrics` req/s vs the recorded baseline (a cross-run comparison: "
                         f"{baseline.get('source', 'no baseline given')})",
                 "measured": fmt_rate(metrics_rps),
                 "target": "—" if not base_rps else f"≥ {base_rps:,.0f}",
                 "ok": None if metrics_rps is None or not base_rps else metrics_rps >= base_rps})
    fb_rps, fb_p99 = med("mdp", "POST /feedback"), med("mdp", "POST /feedback", "p99_us")
    rows.append({"goal": "`POST /feedback` events/s",
                 "measured": fmt_rate(fb_rps), "target": f"≥ {GOAL_FEEDBACK_RPS:,}",
                 "ok": None if fb_rps is None else fb_rps >= GOAL_FEEDBACK_RPS})
    rows.append({"goal": "`POST /feedback` p99 latency (wrk)",
                 "measured": "—" if fb_p99 is None else f"{fb_p99 / 1e3:.2f} ms",
                 "target": f"< {GOAL_FEEDBACK_P99_US / 1e3:.0f} ms",
                 "ok": None if fb_p99 is None else fb_p99 < GOAL_FEEDBACK_P99_US})
    ev = data.get("event_latency", {}).get("mdp")
    ev_p99 = ev["round_trip_us"]["p99"] if ev else None
    rows.append({"goal": "event → new scale p99, in process",
                 "measured": "—" if ev_p99 is None else f"{ev_p99:.1f} µs",
                 "target": f"< {GOAL_EVENT_P99_US:.0f} µs",
                 "ok": None if ev_p99 is None else ev_p99 < GOAL_EVENT_P99_US})
    ev_p50 = ev["round_trip_us"]["p50"] if ev else None
    rows.append({"goal": "event → new scale median, in process",
                 "measured": "—" if ev_p50 is None else f"{ev_p50:.1f} µs",
                 "target": f"≤ {GOAL_EVENT_P50_US} µs",
                 "ok": None if ev_p50 is None else ev_p50 <= GOAL_EVENT_P50_US})
    size = data.get("sizes", {}).get("mdp")
    rows.append({"goal": f"binary size (the mdp benchmarked: {data['build']})",
                 "measured": "—" if size is None else f"{size / MIB:.1f} MiB ({size:,} B)",
                 "target": f"≤ {GOAL_BINARY_MIB} MiB",
                 "ok": None if size is None else size <= GOAL_BINARY_MIB * MIB})
    mem = data["memory"].get("mdp", {})
    rows.append({"goal": "mdp RSS idle", "measured": f"{fmt_mib(mem.get('idle'))} MiB",
                 "target": f"< {GOAL_RSS_IDLE // MIB} MiB",
                 "ok": None if mem.get("idle") is None else mem["idle"] < GOAL_RSS_IDLE})
    peak = mem.get("hwm")
    rows.append({"goal": "mdp RSS under load (peak over the run)",
                 "measured": f"{fmt_mib(peak)} MiB", "target": f"< {GOAL_RSS_LOAD // MIB} MiB",
                 "ok": None if peak is None else peak < GOAL_RSS_LOAD})
    st = data["startup"].get("mdp")
    rows.append({"goal": "mdp exec → `/ready` 200 (median; max in brackets)",
                 "measured": "—" if not st else f"{st['median_ms']:.1f} ms ({st['max_ms']:.1f})",
                 "target": f"< {GOAL_READY_MS:.0f} ms",
                 "ok": None if not st else st["median_ms"] < GOAL_READY_MS})
    scaling = {row["n"]: row for row in data["scaling"] if row["target"] == "mdp"}
    big = scaling.get(1000)
    worst = None if not big else max(big["p99_us"], big["changed_p99_us"])
    rows.append({"goal": "`/metrics` scrape at 1000 providers + 1000 coordinators (p99, the worse "
                         "of back to back and after a change)",
                 "measured": "—" if not big else f"{worst / 1e3:.2f} ms",
                 "target": f"< {GOAL_SCRAPE_1000_MS:.0f} ms",
                 "ok": None if not big else worst / 1e3 < GOAL_SCRAPE_1000_MS})
    # Linear in series: the cost of each added series stays flat from one size
    # to the next. Judged on the in-process render (criterion) when it ran,
    # shown also over HTTP (time to first byte after a change, which adds the
    # copy of a body that outgrows the CPU caches at 1000).
    sizes = sorted(scaling)
    crit = data.get("criterion") or {}
    group = "telemetry/render after a change (N providers + N coordinators)/"

    def marginals(cost):
        out = []
        for a, b in zip(sizes[1:], sizes[2:]):
            if cost(a) is None or cost(b) is None:
                return None
            out.append((cost(b) - cost(a)) / (scaling[b]["series"] - scaling[a]["series"]))
        return out or None

    render = marginals(lambda n: crit.get(f"{group}{n}"))  # ns per series
    http = marginals(lambda n: scaling[n]["changed_p50_us"] * 1e3)

    def flat(m):
        return m is not None and min(m) > 0 and max(m) / min(m) <= 2.0

    shown = []
    if render:
        shown.append("render " + " → ".join(f"{m:.0f}" for m in render) + " ns")
    if http:
        shown.append("HTTP " + " → ".join(f"{m:.0f}" for m in http) + " ns")
    rows.append({"goal": "`/metrics` cost linear in series (cost per added series between "
                         "consecutive sizes flat within 2x; verdict on the render when criterion ran)",
                 "measured": "; ".join(shown) or "—",
                 "target": "linear",
                 "ok": flat(render) if render else (flat(http) if http else None)})
    curve_goals = curves.verdicts(data.get("curves") or {})
    for key, title in [("providers", "acquire cost against providers (flat within 2x)"),
                       ("rules", "acquire cost against pacing rules (per rule within 2x)"),
                       ("coordinators", "`/metrics` scrape cost against coordinators (marginal "
                                        "flat within 2x)"),
                       ("sse", "RSS against SSE streams (marginal flat within 2x)")]:
        ok, measured = curve_goals.get(key, (None, "—"))
        rows.append({"goal": f"cost curve: {title}", "measured": measured, "target": "linear",
                     "ok": ok})
    result = data.get("budget") or {}
    share = budget.shared_share(result) if result.get("rows") else None
    rows.append({"goal": "shared budget (`--budget-redis`) acquire req/s vs the Redis ceiling "
                         "(`redis-benchmark` `EVALSHA` of the same script)",
                 "measured": "—" if share is None else f"{share * 100:.0f} %",
                 "target": f"≥ {budget.GOAL_SHARED_SHARE * 100:.0f} %",
                 "ok": None if share is None else share >= budget.GOAL_SHARED_SHARE})
    return rows


# ---------------------------------------------------------------- main


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
