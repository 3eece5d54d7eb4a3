#!/usr/bin/env python3
"""The report of one run: the Goals table (every goal, its target and verdict)
and every section of results.md, named so that BENCHMARKS.md
(bench/document.py) can put them in its own order between bench/notes/.
"""

import statistics

import budget
import curves
from acquire import acquire_section
from harness import MIB, fmt_mib, fmt_ms, fmt_rate, median_of, verdict

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
    crash = data.get("panic_exit")
    rows.append({"goal": "a supervised task that panics (`MDP_FAILPOINT`, the mdp benchmarked): "
                         "exit status, the task named in the log",
                 "measured": "—" if not crash else
                 f"status {crash['status']}, {'named' if crash['named'] else 'NOT named'}",
                 "target": "status 1, named",
                 "ok": None if not crash else crash["status"] == 1 and crash["named"]})
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
