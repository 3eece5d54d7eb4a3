#!/usr/bin/env python3
"""Acquire with pacing rules: the same ibkr historical acquire against a
plain bucket, the ibkr rules with counts raised and the real ibkr profile,
one mdp each, loaded side by side by bench.py; and their section of the report.
"""

import re

from harness import Server, free_port, fmt_ms, fmt_rate, median_of


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
