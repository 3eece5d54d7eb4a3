#!/usr/bin/env python3
"""Shared by the benchmark scripts (stdlib only): the processes they start and
stop, one bounded wrk run, scrapes and histograms, the machine line, number
formatting. Every process started through here is listed in STARTED and
stopped at exit by the script that registered stop_all.
"""

import http.client
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time


HERE = os.path.dirname(os.path.abspath(__file__))
WRK_DIR = os.path.join(HERE, "wrk")
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

STARTED = []  # every process this driver started, killed at exit


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc, timeout=5.0):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc in STARTED:
        STARTED.remove(proc)


def stop_all():
    for proc in list(STARTED):
        stop(proc, timeout=2.0)


def proc_status(pid):
    """VmRSS and VmHWM in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def proc_cpu_seconds(pid):
    """User + system CPU seconds of the whole process (all threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def http_status(port, path, timeout=1.0):
    """Status code of one GET, or None when nothing answers yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
            )
            head = b""
            while b"\r\n" not in head:
                chunk = s.recv(256)
                if not chunk:
                    return None
                head += chunk
            return int(head.split(b" ", 2)[1])
    except (OSError, ValueError, IndexError):
        return None


class Server:
    """One long-running target: started once, loaded many times."""

    def __init__(self, name, argv, port, ready_path, workdir, env=None):
        self.name, self.argv, self.port = name, argv, port
        self.ready_path, self.workdir, self.env = ready_path, workdir, env
        self.proc = None

    def start(self, timeout=30.0):
        logfile = open(os.path.join(self.workdir, f"{self.name}.log"), "ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=logfile, stderr=subprocess.STDOUT, cwd=self.workdir,
            env=self.env, stdin=subprocess.DEVNULL,
        )
        STARTED.append(self.proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {logfile.name}")
            if http_status(self.port, self.ready_path) == 200:
                return self
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} not ready within {timeout}s")

    @property
    def pid(self):
        return self.proc.pid

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        if self.proc:
            stop(self.proc)


def time_to_ready(argv, port, path, workdir, env=None, timeout=20.0):
    """Seconds from just before exec to the first 200 on `path` (polled every 0.5 ms)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=workdir, env=env, stdin=subprocess.DEVNULL)
    STARTED.append(proc)
    try:
        while time.perf_counter() - t0 < timeout:
            if http_status(port, path) == 200:
                return time.perf_counter() - t0
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {proc.returncode} before ready")
            time.sleep(0.0005)
        raise RuntimeError(f"{argv[0]} not ready within {timeout}s")
    finally:
        stop(proc)


# ---------------------------------------------------------------- wrk


def wrk(url, script, args, pid=None, connections=None, duration=None, env=None):
    """One bounded wrk run; returns req/s, latency percentiles (us), errors,
    and the target's CPU seconds and RSS during the run."""
    duration = duration or args.duration
    connections = connections or args.connections
    threads = min(args.threads, connections)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s",
           "--timeout", "2s", "-s", script, url]
    run_env = dict(os.environ, **(env or {}))
    cpu0 = proc_cpu_seconds(pid) if pid else None
    proc = subprocess.Popen(cmd, cwd=WRK_DIR, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=run_env)
    STARTED.append(proc)
    rss_samples = []
    if pid:
        for _ in range(max(1, int(duration * 2) - 1)):
            time.sleep(0.5)
            rss_samples.append(proc_status(pid)["VmRSS"])
    try:
        out, err = proc.communicate(timeout=duration + 30)
    finally:
        stop(proc)
    cpu1 = proc_cpu_seconds(pid) if pid else None
    match = re.search(r"^WRK_JSON (.*)$", out, re.M)
    if not match:
        raise RuntimeError(f"wrk produced no summary for {url}: {out}\n{err}")
    r = json.loads(match.group(1))
    seconds = r["duration_us"] / 1e6
    result = {
        "rps": r["requests"] / seconds,
        "requests": r["requests"],
        "p50_us": r["p50_us"], "p90_us": r["p90_us"], "p99_us": r["p99_us"],
        "p999_us": r["p999_us"], "max_us": r["lat_max_us"],
        "non2xx": r["status_errors"],
        "socket_errors": r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"],
        "bytes_per_req": r["bytes"] / max(1, r["requests"]),
        # acquire_paced.lua returns each lease: its releases are counted apart.
        "releases": r.get("releases", 0),
        "acquire_rps": (r["requests"] - r.get("releases", 0)) / seconds,
    }
    if pid:
        result["cpu_s"] = cpu1 - cpu0
        result["cpu_us_per_req"] = (cpu1 - cpu0) / max(1, r["requests"]) * 1e6
        result["cpu_us_per_acquire"] = ((cpu1 - cpu0) / max(1, r["requests"] - result["releases"])
                                        * 1e6)
        result["rss_max"] = max(rss_samples)
    return result


def scrape(port, path="/metrics"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    body = conn.getresponse().read()
    conn.close()
    return body


def histogram(text, name):
    """Cumulative buckets {le: count} of one histogram in an exposition."""
    buckets = {}
    for m in re.finditer(name + r'_bucket\{le="([^"]+)"\} (\S+)', text):
        buckets[float(m.group(1))] = float(m.group(2))
    return buckets


def histogram_quantile(before, after, q):
    """(bucket upper bound, linear estimate) of quantile q of the observations
    between two scrapes, as Prometheus' histogram_quantile computes it."""
    bounds = sorted(after)
    delta = [after[b] - before.get(b, 0.0) for b in bounds]
    total = delta[-1]
    if total <= 0:
        return None, None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in zip(bounds, delta):
        if count >= rank:
            if bound == float("inf"):
                return bound, lower_bound
            share = (rank - lower_count) / max(count - lower_count, 1e-9)
            return bound, lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return None, None


def median_of(runs, key):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def post_coordinators(port, n, start=0, step=1):
    """Coordinators store_0000 .. (every step-th from start) by POST /feedback."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for i in range(start, n, step):
        body = json.dumps({"coordinator_id": f"store_{i:04d}", "queue_size": 100 + i,
                           "capacity": 10000, "level": "ok"})
        conn.request("POST", "/feedback", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"coordinator {i}: /feedback answered {response.status}")
    conn.close()


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {"nproc": os.cpu_count(), "cpu": model, "memory_gib": mem_kb / 1024 / 1024,
            "kernel": platform.release(), "load_before": os.getloadavg()}


def tree_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def tool_version(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (p.stdout + p.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


# ---------------------------------------------------------------- report


def fmt_rate(v):
    return "—" if v is None else f"{v:,.0f}"


def fmt_ms(us):
    return "—" if us is None else f"{us / 1e3:.2f}"


def fmt_mib(b):
    return "—" if b is None else f"{b / MIB:.1f}"


def verdict(ok):
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**not met**"
