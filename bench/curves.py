#!/usr/bin/env python3
"""Cost curves: how the cost of an acquire, a scrape and an open stream grows
with what one mdp holds (providers, pacing rules, coordinators, SSE clients).
Each curve is a small table with a linearity verdict computed from its
figures; the rule of each verdict is written in the table's caption.
Called by bench.py (stdlib only).
"""

import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from harness import (
    HERE, STARTED, Server, fmt_mib, fmt_ms, fmt_rate, free_port, log, median_of,
    post_coordinators, proc_cpu_seconds, proc_status, scrape, stop, verdict, wrk,
)

# A verdict holds when the two figures it compares are within this factor.
WITHIN = 2.0

# The raised ibkr rules in the order the variants take them: the concurrency
# rule first, so every variant returns a lease per grant (two HTTP requests
# per acquire at every size) and the curve measures the rules alone.
RULE_ORDER = ["open_historical", "messages", "historical", "same_contract", "identical",
              "market_data_lines"]


def sizes(args):
    if args.smoke:
        return {"providers": [1, 10, 100], "rules": [1, 2, 4, 6],
                "coordinators": [10, 100, 1000], "sse": [1, 10, 100]}
    return {"providers": [1, 10, 100], "rules": [1, 2, 4, 6],
            "coordinators": [10, 1000, 10000], "sse": [1, 100, 1000]}


def plural(n, noun):
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def within(a, b, factor=WITHIN):
    """True when a and b are both positive and within `factor` of each other."""
    if a is None or b is None or a <= 0 or b <= 0:
        return None
    return max(a, b) / min(a, b) <= factor


def marginals(points):
    """[(size, cost)] sorted by size -> cost per added unit between neighbours."""
    return [(c1 - c0) / (n1 - n0) for (n0, c0), (n1, c1) in zip(points, points[1:])]


def flat_marginals(points):
    m = marginals(points)
    if len(m) < 2:
        return m, None
    return m, min(m) > 0 and max(m) / min(m) <= WITHIN


# ---------------------------------------------------------------- measurements


def start_servers(binary, workdir, variants):
    """variants: [(label, extra serve arguments)]; all started before the first round."""
    servers = {}
    for label, extra in variants:
        port = free_port()
        argv = [binary, "serve", "--listen", f"127.0.0.1:{port}", "--log", "warn", *extra]
        name = "curve-" + re.sub(r"[^a-z0-9]+", "-", label)
        servers[label] = Server(name, argv, port, "/ready", workdir).start()
    return servers


def providers_curve(args, binary, workdir, load_rounds):
    """(a) one token per acquire, spread round-robin over N providers."""
    counts = sizes(args)["providers"]
    variants = []
    for n in counts:
        extra = []
        for i in range(n):
            extra += ["--provider", f"p{i:04d}=1000000/s,burst=1000000"]
        variants.append((plural(n, "provider"), extra))
    servers = start_servers(binary, workdir, variants)
    plan = [(label, "POST /api/v1/acquire spread", servers[label], "/api/v1/acquire",
             "acquire_spread.lua", {"MDP_BENCH_PROVIDERS": str(n)})
            for (label, _), n in zip(variants, counts)]
    try:
        load = load_rounds(plan, args)
    finally:
        for server in servers.values():
            server.stop()
    return [dict(summary(load[(label, "POST /api/v1/acquire spread")]), n=n)
            for (label, _), n in zip(variants, counts)]


def rule_blocks(path):
    """{rule name: its YAML lines} from a providers file with one provider."""
    blocks, name = {}, None
    with open(path) as f:
        for line in f:
            if re.match(r"^      [a-z_]+:\s*$", line):
                name = line.strip().rstrip(":")
                blocks[name] = [line.rstrip("\n")]
            elif name and line.startswith("        "):
                blocks[name].append(line.rstrip("\n"))
    return blocks


def write_rule_variant(path, blocks, n):
    lines = ["# Written by bench/curves.py: the first rules of bench/ibkr-raised.yaml.",
             "providers:", "  ibkr:", "    rules:"]
    for name in RULE_ORDER[:n]:
        lines += blocks[name]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def rules_curve(args, binary, workdir, load_rounds):
    """(b) the ibkr historical acquire (acquire_paced.lua) against 1..6 raised rules."""
    blocks = rule_blocks(args.raised_rules)
    missing = [name for name in RULE_ORDER if name not in blocks]
    if missing:
        raise RuntimeError(f"{args.raised_rules} lacks the rules {missing}")
    counts = sizes(args)["rules"]
    variants = []
    for n in counts:
        path = os.path.join(workdir, f"ibkr-raised-{n}-rules.yaml")
        write_rule_variant(path, blocks, n)
        variants.append((plural(n, "rule"), ["--providers-file", path]))
    servers = start_servers(binary, workdir, variants)
    plan = [(label, "POST /api/v1/acquire paced", servers[label], "/api/v1/acquire",
             "acquire_paced.lua", None) for label, _ in variants]
    try:
        load = load_rounds(plan, args)
    finally:
        for server in servers.values():
            server.stop()
    return [dict(summary(load[(label, "POST /api/v1/acquire paced")]), n=n,
                 rules=RULE_ORDER[:n]) for (label, _), n in zip(variants, counts)]


def summary(runs):
    return {key: median_of(runs, key) for key in
            ("rps", "acquire_rps", "p50_us", "p99_us", "cpu_us_per_acquire", "cpu_us_per_req")} | {
        "non2xx": sum(r["non2xx"] for r in runs),
        "socket_errors": sum(r["socket_errors"] for r in runs), "rounds": len(runs)}


def post_in_parallel(port, n, workers=4):
    """N coordinators over `workers` connections at once (10,000 one by one is slow)."""
    with ThreadPoolExecutor(workers) as pool:
        for done in [pool.submit(post_coordinators, port, n, k, workers) for k in range(workers)]:
            done.result()


def feedback_cost(port, pid, n, events):
    """POST /feedback updating coordinators already tracked, one connection,
    one at a time: (median µs per event, mdp CPU µs per event)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    cpu0 = proc_cpu_seconds(pid)
    for i in range(events):
        body = json.dumps({"coordinator_id": f"store_{i * 7919 % n:04d}", "queue_size": 200 + i,
                           "capacity": 10000, "level": "ok"})
        t0 = time.perf_counter()
        conn.request("POST", "/feedback", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        times.append(time.perf_counter() - t0)
        if response.status != 200:
            raise RuntimeError(f"/feedback at {n} coordinators answered {response.status}")
    cpu = proc_cpu_seconds(pid) - cpu0
    conn.close()
    return statistics.median(times) * 1e6, cpu / events * 1e6


def coordinators_curve(args, binary, workdir):
    """(c) /metrics back to back on one connection, N coordinators posted."""
    out = []
    for n in sizes(args)["coordinators"]:
        port = free_port()
        argv = [binary, "serve", "--listen", f"127.0.0.1:{port}", "--log", "warn",
                "--max-coordinators", str(max(256, n))]
        server = Server(f"curve-{n}-coordinators", argv, port, "/ready", workdir).start()
        try:
            t0 = time.monotonic()
            post_in_parallel(port, n)
            posted_s = time.monotonic() - t0
            time.sleep(args.curve_settle)
            event_us, event_cpu_us = feedback_cost(port, server.pid, n, args.curve_events)
            body = scrape(port)
            r = wrk(server.url("/metrics"), "get.lua", args, pid=server.pid, connections=1,
                    duration=args.scale_duration)
        finally:
            server.stop()
        row = {"n": n, "bytes": len(body), "rps": r["rps"], "p50_us": r["p50_us"],
               "p99_us": r["p99_us"], "cpu_us": r["cpu_us_per_req"], "non2xx": r["non2xx"],
               "event_p50_us": event_us, "event_cpu_us": event_cpu_us,
               "socket_errors": r["socket_errors"]}
        log(f"curve /metrics at {n} coordinators ({posted_s:.1f} s to post): {len(body):,} bytes, "
            f"p50 {r['p50_us']} us, p99 {r['p99_us']} us, {r['cpu_us_per_req']:.0f} CPU us/scrape; "
            f"one feedback event {event_us:.0f} us, {event_cpu_us:.0f} CPU us")
        out.append(row)
    return out


def sse_curve(args, binary, workdir):
    """(d) VmRSS with N streams open on /api/v1/stream, a fresh mdp per size."""
    out = []
    for n in sizes(args)["sse"]:
        port = free_port()
        argv = [binary, "serve", "--listen", f"127.0.0.1:{port}", "--log", "warn"]
        server = Server(f"curve-{n}-streams", argv, port, "/ready", workdir).start()
        clients = None
        try:
            time.sleep(args.curve_settle)
            idle = proc_status(server.pid)["VmRSS"]
            clients = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "sse_clients.py"), "--port", str(port),
                 "--clients", str(n), "--seconds", str(args.curve_settle + 0.5)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            STARTED.append(clients)
            line = clients.stdout.readline()
            connected = int(line.split()[1]) if line.startswith("CONNECTED") else 0
            time.sleep(args.curve_settle)
            rss = proc_status(server.pid)["VmRSS"]
            clients.communicate(timeout=30)
        finally:
            if clients:
                stop(clients)
            server.stop()
        row = {"n": n, "connected": connected, "idle_rss": idle, "rss": rss}
        log(f"curve SSE {connected}/{n} streams: VmRSS {rss / 1024:.0f} KiB (idle {idle / 1024:.0f} KiB)")
        out.append(row)
    return out


def measure(args, binary, workdir, load_rounds):
    return {"providers": providers_curve(args, binary, workdir, load_rounds),
            "rules": rules_curve(args, binary, workdir, load_rounds),
            "coordinators": coordinators_curve(args, binary, workdir),
            "sse": sse_curve(args, binary, workdir)}


def problems(curves):
    out = []
    for key in ("providers", "rules", "coordinators"):
        for row in curves.get(key, []):
            if row["non2xx"] or row["socket_errors"]:
                out.append(f"cost curve {key} at {row['n']}: {row['non2xx']} non-2xx, "
                           f"{row['socket_errors']} socket errors")
    for row in curves.get("sse", []):
        if row["connected"] < row["n"]:
            out.append(f"cost curve SSE: {row['connected']} of {row['n']} streams connected")
    return out


# ---------------------------------------------------------------- verdicts


def verdicts(curves):
    """{curve: (ok or None, what was compared)}: one goal row per curve."""
    out = {}
    rows = curves.get("providers") or []
    if rows:
        a, b = rows[0]["cpu_us_per_acquire"], rows[-1]["cpu_us_per_acquire"]
        out["providers"] = (within(a, b), f"CPU µs/acquire {a:.1f} at {rows[0]['n']} → "
                                          f"{b:.1f} at {rows[-1]['n']} providers")
    rows = curves.get("rules") or []
    if rows:
        a = rows[0]["cpu_us_per_acquire"] / rows[0]["n"]
        b = rows[-1]["cpu_us_per_acquire"] / rows[-1]["n"]
        out["rules"] = (None if a <= 0 or b <= 0 else b <= WITHIN * a,
                        f"CPU µs/acquire per rule {a:.1f} at {rows[0]['n']} → {b:.1f} at "
                        f"{rows[-1]['n']} rules")
    rows = curves.get("coordinators") or []
    if rows:
        m, ok = flat_marginals([(r["n"], r["cpu_us"] * 1e3) for r in rows])
        out["coordinators"] = (ok, "CPU ns/scrape per added coordinator "
                               + " → ".join(f"{x:.0f}" for x in m))
    rows = curves.get("sse") or []
    if rows:
        m, ok = flat_marginals([(r["n"], r["rss"]) for r in rows])
        out["sse"] = (ok, "RSS per added stream " + " → ".join(f"{x / 1024:.1f}" for x in m) + " KiB")
    return out


# ---------------------------------------------------------------- report


def section(curves, args):
    L = ["## Cost curves\n",
         "How one mdp's cost grows with what it holds. Each table is its own run of servers "
         "(`--log warn`), started before the first round; where a table compares servers "
         f"under wrk (`-t{args.threads} -c{args.connections} -d{args.duration}s`), they are "
         f"interleaved over {args.rounds} round(s) with the order rotating each round, and "
         "the figures are medians over rounds.\n"]
    v = verdicts(curves)
    rows = curves.get("providers") or []
    if rows:
        L.append("### Acquire against the number of providers\n")
        L.append("`POST /api/v1/acquire` for one token, N providers started with "
                 "`--provider pNNNN=1000000/s,burst=1000000` each; the requests are spread "
                 "round-robin over all N ([`bench/wrk/acquire_spread.lua`](bench/wrk/acquire_spread.lua)). "
                 f"*Verdict rule*: the cost per request does not grow with providers: CPU µs per "
                 f"acquire at {rows[-1]['n']} providers within {WITHIN:g}x of that at {rows[0]['n']} "
                 f"(a cost linear in providers would be {rows[-1]['n'] // rows[0]['n']}x).\n")
        L.append("| providers | acquires/s | p50 ms | p99 ms | CPU µs/acquire | non-2xx |")
        L.append("|--:|--:|--:|--:|--:|--:|")
        for r in rows:
            L.append(f"| {r['n']} | {fmt_rate(r['acquire_rps'])} | {fmt_ms(r['p50_us'])} | "
                     f"{fmt_ms(r['p99_us'])} | {r['cpu_us_per_acquire']:.1f} | {r['non2xx']} |")
        L.append(f"\nVerdict: {v['providers'][1]}: {verdict(v['providers'][0])}.\n")
    rows = curves.get("rules") or []
    if rows:
        L.append("### Acquire against the pacing rules checked\n")
        L.append("The ibkr historical acquire of "
                 "[`bench/wrk/acquire_paced.lua`](bench/wrk/acquire_paced.lua) against the first "
                 "N rules of [`bench/ibkr-raised.yaml`](bench/ibkr-raised.yaml) (counts raised, "
                 "nothing holds), written into the results directory at run time. The "
                 "concurrency rule `open_historical` comes first, so at every size each grant "
                 "carries a lease the script returns (`POST /api/v1/release`): two HTTP requests "
                 "per acquire throughout; CPU per acquire includes its release. "
                 f"*Verdict rule*: no worse than linear: the CPU µs per acquire divided by the "
                 f"rules at {rows[-1]['n']} rules within {WITHIN:g}x of the same at {rows[0]['n']} "
                 "(the fixed HTTP cost is in both). The marginal cost per added rule is shown "
                 "for reading, not judged: at a few µs per rule it is within the noise of this "
                 "machine.\n")
        L.append("| rules | which | acquires/s | requests/s | p50 ms | p99 ms | CPU µs/acquire "
                 "| CPU µs per added rule | non-2xx |")
        L.append("|--:|---|--:|--:|--:|--:|--:|--:|--:|")
        m = [None] + marginals([(r["n"], r["cpu_us_per_acquire"]) for r in rows])
        for r, marginal in zip(rows, m):
            L.append(f"| {r['n']} | {', '.join(f'`{x}`' for x in r['rules'])} | "
                     f"{fmt_rate(r['acquire_rps'])} | {fmt_rate(r['rps'])} | {fmt_ms(r['p50_us'])} | "
                     f"{fmt_ms(r['p99_us'])} | {r['cpu_us_per_acquire']:.1f} | "
                     f"{'—' if marginal is None else f'{marginal:.1f}'} | {r['non2xx']} |")
        L.append(f"\nVerdict: {v['rules'][1]}: {verdict(v['rules'][0])}.\n")
    rows = curves.get("coordinators") or []
    if rows:
        L.append("### `/metrics` scrape against the coordinators tracked\n")
        L.append("One mdp per size (`--max-coordinators` raised to the size when above its "
                 "default of 256), N coordinators posted to `/feedback` with distinct "
                 f"`coordinator_id`, then `wrk -t1 -c1 -d{args.scale_duration}s` on `/metrics` "
                 "(one connection: latency = service time; nothing changes between scrapes). "
                 "*Verdict rule*: linear: the CPU per scrape added per coordinator, between "
                 f"consecutive sizes, flat within {WITHIN:g}x. Shown beside it, not judged: "
                 f"one `POST /feedback` updating a tracked coordinator at that size ({args.curve_events} "
                 "events one at a time on one connection: median latency, mdp CPU per event).\n")
        L.append("| coordinators | bytes | scrapes/s | p50 ms | p99 ms | CPU µs/scrape | "
                 "CPU ns/scrape per added coordinator | `POST /feedback` p50 ms | CPU µs/event |")
        L.append("|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        m = [None] + marginals([(r["n"], r["cpu_us"] * 1e3) for r in rows])
        for r, marginal in zip(rows, m):
            L.append(f"| {r['n']:,} | {r['bytes']:,} | {r['rps']:,.0f} | {fmt_ms(r['p50_us'])} | "
                     f"{fmt_ms(r['p99_us'])} | {r['cpu_us']:.0f} | "
                     f"{'—' if marginal is None else f'{marginal:.0f}'} | "
                     f"{fmt_ms(r['event_p50_us'])} | {r['event_cpu_us']:.0f} |")
        L.append(f"\nVerdict: {v['coordinators'][1]}: {verdict(v['coordinators'][0])}.\n")
    rows = curves.get("sse") or []
    if rows:
        L.append("### Memory against the SSE streams open\n")
        L.append("A fresh mdp per size; VmRSS "
                 f"{args.curve_settle:g} s after ready (idle), then {args.curve_settle:g} s after "
                 "N clients of [`bench/sse_clients.py`](bench/sse_clients.py) have each received "
                 "their first event on `/api/v1/stream`. *Verdict rule*: linear: the RSS added "
                 f"per stream, between consecutive sizes, flat within {WITHIN:g}x.\n")
        L.append("| streams | connected | VmRSS idle MiB | VmRSS with streams MiB | KiB per added stream |")
        L.append("|--:|--:|--:|--:|--:|")
        m = [None] + marginals([(r["n"], r["rss"]) for r in rows])
        for r, marginal in zip(rows, m):
            L.append(f"| {r['n']:,} | {r['connected']:,} | {fmt_mib(r['idle_rss'])} | "
                     f"{fmt_mib(r['rss'])} | {'—' if marginal is None else f'{marginal / 1024:.1f}'} |")
        L.append(f"\nVerdict: {v['sse'][1]}: {verdict(v['sse'][0])}.\n")
    return L
