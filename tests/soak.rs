//! A bounded soak: mixed feedback, acquires, scrapes and dashboard streams on
//! loopback against the real binary, with zero 5xx, no leaked file
//! descriptors and flat resident memory. `MDP_SOAK_SECONDS` sets the length
//! (CI runs a short one; `MDP_SOAK_SECONDS=600 cargo test --release --test soak
//! -- --nocapture` is the ten-minute run).

mod common;

use common::{MdpProcess, eventually, store_event};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    failures: AtomicU64,
}

impl Tally {
    fn record(&self, result: Result<reqwest::Response, reqwest::Error>) {
        let counter = match result {
            Ok(r) if r.status().is_server_error() => &self.server_errors,
            Ok(r) if r.status().is_client_error() => &self.client_errors,
            Ok(_) => &self.ok,
            Err(_) => &self.failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One phase of mixed load lasting `span`.
async fn load(mdp: &MdpProcess, span: Duration, tally: Arc<Tally>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let deadline = Instant::now() + span;
    let mut tasks = Vec::new();
    let levels = [(500, "ok"), (6000, "soft"), (9500, "hard"), (800, "ok")];
    for worker in 0..2u64 {
        let (http, tally, url) = (http.clone(), tally.clone(), mdp.url("/feedback"));
        tasks.push(tokio::spawn(async move {
            let mut i = worker;
            while Instant::now() < deadline {
                let (depth, level) = levels[(i / 50 % 4) as usize];
                let mut event = store_event(depth, level, None);
                event["coordinator_id"] = json!(format!("store_{:02}", i % 8));
                tally.record(http.post(&url).json(&event).send().await);
                i += 2;
            }
        }));
    }
    for _ in 0..2 {
        let (http, tally, url) = (http.clone(), tally.clone(), mdp.url("/api/v1/acquire"));
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                tally.record(
                    http.post(&url)
                        .json(&json!({"provider": "ibkr", "wait_ms": 20}))
                        .send()
                        .await,
                );
            }
        }));
    }
    {
        let (http, tally, base) = (http.clone(), tally.clone(), mdp.url(""));
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                for path in [
                    "/metrics",
                    "/api/v1/state",
                    "/api/v1/history",
                    "/health",
                    "/",
                ] {
                    tally.record(http.get(format!("{base}{path}")).send().await);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    // Dashboard streams that come and go.
    for _ in 0..10 {
        let (http, url) = (http.clone(), mdp.url("/api/v1/stream"));
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                if let Ok(mut stream) = http.get(&url).send().await {
                    let until = Instant::now() + Duration::from_millis(1500);
                    while Instant::now() < until && Instant::now() < deadline {
                        if !matches!(stream.chunk().await, Ok(Some(_))) {
                            break;
                        }
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("load task");
    }
}

/// The two tests of this file load the machine: run them one at a time, so
/// that neither measures the other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until the process's open descriptors stop changing (its load's
/// connections closed), at most 10 s; returns (fds, RSS KiB).
async fn settled(pid: u32) -> (usize, u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = open_fds(pid);
    let mut steady = 0;
    while steady < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = open_fds(pid);
        steady = if now == last { steady + 1 } else { 0 };
        last = now;
    }
    (last, rss_kib(pid))
}

#[tokio::test]
async fn mixed_load_leaves_no_errors_leaks_or_growth() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let seconds: u64 = std::env::var("MDP_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let mdp = MdpProcess::serve(&["--relax-after", "200ms"], &[]);
    let pid = mdp.child.id();
    let tally = Arc::new(Tally::default());
    // Warm up: first connections, history ring filling, allocator arenas.
    let warmup = Duration::from_secs((seconds / 4).max(3));
    load(&mdp, warmup, tally.clone()).await;
    let (fds_before, rss_before) = settled(pid).await;
    load(&mdp, Duration::from_secs(seconds), tally.clone()).await;
    let (fds_after, rss_after) = settled(pid).await;
    let ok = tally.ok.load(Ordering::Relaxed);
    let server_errors = tally.server_errors.load(Ordering::Relaxed);
    let failures = tally.failures.load(Ordering::Relaxed);
    eprintln!(
        "soak {seconds}s: {ok} ok, {} 4xx (throttled acquires), {server_errors} 5xx, {failures} transport failures; fds {fds_before} -> {fds_after}; RSS {rss_before} KiB -> {rss_after} KiB",
        tally.client_errors.load(Ordering::Relaxed)
    );
    assert!(ok > 200, "too little traffic to mean anything: {ok}");
    assert_eq!(server_errors, 0, "5xx answers under load");
    assert_eq!(failures, 0, "transport failures under load");
    assert!(
        fds_after <= fds_before + 2,
        "file descriptors leaked: {fds_before} -> {fds_after}"
    );
    // Memory is compared after the warm-up, not from start-up. The allowance is
    // 10 % plus 4 MiB: on a busy machine the scheduler moves requests onto worker
    // threads that had not served before, and each one's first allocations touch
    // fresh pages of its malloc arena. A leak is per request: thousands of
    // requests times a few hundred bytes each still overshoot it.
    let allowed_kib = rss_before / 10 + 4096;
    assert!(rss_before > 0, "no RSS read for pid {pid}");
    assert!(
        rss_after <= rss_before + allowed_kib,
        "RSS grew by more than {allowed_kib} KiB over {ok} answers: {rss_before} -> {rss_after} KiB"
    );
}

#[tokio::test]
async fn sigterm_under_load_answers_no_5xx_and_exits_zero() {
    let _alone = ONE_AT_A_TIME.lock().await;
    // The drain keeps /ready at 503 while still serving: long enough to be seen
    // by a poll on a loaded machine.
    let mut mdp = MdpProcess::serve(&["--drain-delay", "1s"], &[]);
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    // Load until the process is gone: every request before, during and after
    // the drain is counted.
    let load_task = {
        let (tally, stop, url) = (tally.clone(), stop.clone(), mdp.url("/feedback"));
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client");
            while !stop.load(Ordering::Relaxed) {
                tally.record(
                    http.post(&url)
                        .json(&store_event(6000, "soft", None))
                        .send()
                        .await,
                );
            }
        })
    };
    let flowing = eventually(Duration::from_secs(10), || async {
        tally.ok.load(Ordering::Relaxed) >= 20
    })
    .await;
    assert!(flowing, "the load never got 20 answers before SIGTERM");
    mdp.terminate();
    let http = reqwest::Client::new();
    let ready_url = mdp.url("/ready");
    let saw_503 = common::answers_within(&http, &ready_url, 503, Duration::from_secs(10)).await;
    assert!(
        saw_503,
        "/ready did not turn 503 before the listener closed"
    );
    let status = mdp.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{status:?}");
    stop.store(true, Ordering::Relaxed);
    load_task.await.expect("load");
    assert_eq!(
        tally.server_errors.load(Ordering::Relaxed),
        0,
        "5xx during shutdown"
    );
}
