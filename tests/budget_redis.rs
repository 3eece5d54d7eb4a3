//! The shared budget on a real redis-server: three mdp processes take one
//! provider's tokens from one bucket, and fall back to their local share when
//! Redis goes away.

mod common;

use common::redis::Redis;
use common::{MdpProcess, eventually, sample};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const RATE: f64 = 60.0;
const BURST: f64 = 100.0;

fn pods(redis: &Redis) -> Vec<MdpProcess> {
    let url = redis.url();
    (0..3)
        .map(|_| {
            MdpProcess::serve(
                &[
                    "--provider",
                    "ibkr=60/s,burst=100",
                    "--replicas",
                    "3",
                    "--budget-redis",
                    &url,
                    // Generous for a loaded test machine; production wants tens of ms.
                    "--budget-redis-timeout",
                    "500ms",
                    "--budget-redis-probe",
                    "100ms",
                ],
                &[],
            )
        })
        .collect()
}

async fn mode_is(pod: &MdpProcess, mode: &str) -> bool {
    let Ok(response) = reqwest::get(pod.url("/metrics")).await else {
        return false;
    };
    let text = response.text().await.unwrap_or_default();
    sample(&text, &format!("mdp_budget_mode{{mode=\"{mode}\"}}")) == Some(1.0)
}

async fn wait_mode(pods: &[&MdpProcess], mode: &str) {
    for pod in pods {
        assert!(
            eventually(Duration::from_secs(20), || mode_is(pod, mode)).await,
            "a pod never turned {mode}"
        );
    }
}

/// Counts of one load run.
#[derive(Default)]
struct Tally {
    granted: AtomicU64,
    server_errors: AtomicU64,
}

/// Workers asking `url` for one token at a time, each willing to wait, until `stop`.
fn load(
    url: String,
    workers: usize,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let http = reqwest::Client::new();
    (0..workers)
        .map(|_| {
            let (http, url, tally, stop) = (http.clone(), url.clone(), tally.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let body = json!({"provider": "ibkr", "tokens": 1, "wait_ms": 300});
                    match http.post(&url).json(&body).send().await {
                        Ok(r) if r.status() == 200 => {
                            tally.granted.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) if r.status().is_server_error() => {
                            tally.server_errors.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
            })
        })
        .collect()
}

/// Runs `workers` clients against each pod in `busy` for `span`; returns the
/// grants per pod, the 5xx count and the whole window (until the last answer).
async fn run(busy: &[&MdpProcess], workers: usize, span: Duration) -> (Vec<u64>, u64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tallies = Vec::new();
    let mut tasks = Vec::new();
    for pod in busy {
        let tally = Arc::new(Tally::default());
        tasks.extend(load(
            pod.url("/api/v1/acquire"),
            workers,
            tally.clone(),
            stop.clone(),
        ));
        tallies.push(tally);
    }
    tokio::time::sleep(span).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("worker");
    }
    let window = started.elapsed().as_secs_f64();
    let errors = tallies
        .iter()
        .map(|t| t.server_errors.load(Ordering::Relaxed))
        .sum();
    (
        tallies
            .iter()
            .map(|t| t.granted.load(Ordering::Relaxed))
            .collect(),
        errors,
        window,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_busy_pod_gets_the_whole_budget_and_all_busy_stay_within_it() {
    let Some(redis) = Redis::start() else { return };
    let pods = pods(&redis);
    let all: Vec<&MdpProcess> = pods.iter().collect();
    wait_mode(&all, "shared").await;

    // All demand on one pod: it gets (nearly) the whole budget, not a third.
    let (granted, errors, window) = run(&all[..1], 4, Duration::from_secs(3)).await;
    let budget = BURST + RATE * window;
    assert_eq!(errors, 0);
    assert!(
        granted[0] as f64 <= budget,
        "{granted:?} > {budget} in {window} s"
    );
    assert!(
        granted[0] as f64 >= 0.9 * budget,
        "one busy pod got only {} of {budget:.0} in {window:.2} s",
        granted[0]
    );

    // Then spread over all three: the bucket was emptied, so the sum stays
    // within rate x W (and certainly within burst + rate x W).
    let (granted, errors, window) = run(&all, 3, Duration::from_secs(3)).await;
    let total: u64 = granted.iter().sum();
    assert_eq!(errors, 0);
    assert!(
        total as f64 <= BURST + RATE * window,
        "{granted:?} sum {total} > {} in {window:.2} s",
        BURST + RATE * window
    );
    assert!(
        total as f64 >= 0.8 * RATE * (window - 0.5),
        "the pods got only {total} in {window:.2} s"
    );
    assert!(
        granted.iter().all(|&g| g > 0),
        "a pod got nothing: {granted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_falls_back_to_the_local_share_and_returns() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let pods = pods(&redis);
    let all: Vec<&MdpProcess> = pods.iter().collect();
    wait_mode(&all, "shared").await;
    let busy = &pods[0];

    redis.kill();
    // Load on while Redis is gone: no 5xx, and the pod turns to its share.
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let tasks = load(busy.url("/api/v1/acquire"), 4, tally.clone(), stop.clone());
    assert!(
        eventually(Duration::from_secs(20), || mode_is(busy, "fallback")).await,
        "the busy pod never noticed Redis was gone"
    );
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("worker");
    }
    assert_eq!(tally.server_errors.load(Ordering::Relaxed), 0);
    // On the local share: 1/3 of the rate, and of the burst it saved.
    let (granted, errors, window) = run(&[busy], 4, Duration::from_secs(3)).await;
    assert_eq!(errors, 0, "a 5xx while Redis was down");
    let share_bound = BURST / 3.0 + RATE / 3.0 * window;
    assert!(
        granted[0] as f64 <= share_bound,
        "{} granted on the local share, bound {share_bound:.1}",
        granted[0]
    );
    assert!(granted[0] > 0, "nothing granted on the local share");
    let logs = busy.log_text();
    assert_eq!(
        logs.matches("shared budget unavailable").count(),
        1,
        "logged once per outage: {logs}"
    );

    redis.launch();
    wait_mode(&all, "shared").await;
    let (granted, errors, window) = run(&[busy], 4, Duration::from_secs(2)).await;
    assert_eq!(errors, 0);
    assert!(
        granted[0] as f64 > BURST / 3.0 + RATE / 3.0 * window,
        "back on Redis the busy pod should exceed its share: {} in {window:.2} s",
        granted[0]
    );
}

#[test]
fn a_bad_redis_url_is_refused_in_one_line_without_its_password() {
    for url in [
        "http://127.0.0.1:6379",
        "redis://:hunter2secret@127.0.0.1:notaport/0",
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mdp"))
            .args(["serve", "--listen", "127.0.0.1:0", "--budget-redis", url])
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("--budget-redis"), "{stderr}");
        assert!(!stderr.contains("hunter2secret"), "{stderr}");
    }
}

#[test]
fn the_export_takes_the_url_from_a_secret_only() {
    let dir = std::env::temp_dir().join(format!("mdp-export-secret-{}", std::process::id()));
    let export = |extra: &[&str]| {
        let mut argv = vec!["export", "--out", dir.to_str().expect("utf-8 temp dir")];
        argv.extend_from_slice(extra);
        std::process::Command::new(env!("CARGO_BIN_EXE_mdp"))
            .args(&argv)
            .output()
            .expect("runs")
    };
    let refused = export(&["--budget-redis", "redis://:hunter2secret@redis:6379/0"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--budget-redis-secret") && !stderr.contains("hunter2secret"),
        "{stderr}"
    );
    let done = export(&["--budget-redis-secret", "mdp-budget-redis:url"]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let deployment = yaml_files(&dir.join("deploy"))
        .into_iter()
        .map(|path| std::fs::read_to_string(path).unwrap_or_default())
        .find(|text| text.lines().any(|line| line == "kind: Deployment"))
        .expect("a Deployment");
    let _ = std::fs::remove_dir_all(&dir);
    let at = deployment.find("MDP_BUDGET_REDIS").expect("the variable");
    let entry = &deployment[at..(at + 200).min(deployment.len())];
    assert!(entry.contains("secretKeyRef"), "{entry}");
    assert!(
        entry.contains("name: mdp-budget-redis") && entry.contains("key: url"),
        "{entry}"
    );
}

fn yaml_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn more_tokens_than_the_burst_is_400_with_the_limit() {
    let mdp = MdpProcess::serve(&["--provider", "ibkr=60/s,burst=100"], &[]);
    let http = reqwest::Client::new();
    let response = http
        .post(mdp.url("/api/v1/acquire"))
        .json(&json!({"provider": "ibkr", "tokens": 1000, "wait_ms": 1000}))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["limit"], 100, "{body}");
    let metrics = reqwest::get(mdp.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert_eq!(
        sample(
            &metrics,
            "mdp_rate_requests_throttled_total{provider=\"ibkr\"}"
        ),
        Some(0.0),
        "an impossible request is not a throttle"
    );
    assert_eq!(
        sample(&metrics, "mdp_budget_mode{mode=\"split\"}"),
        Some(1.0)
    );
}
