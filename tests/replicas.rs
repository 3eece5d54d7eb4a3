//! More than one replica: each pod grants its share of a provider's budget,
//! and pods that find each other by name never grant more than the budget.

mod common;

use common::MdpProcess;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Hammers `urls` (acquire endpoints) with `workers` concurrent clients each
/// for `span`; returns the tokens granted per URL and the measured window.
async fn hammer(urls: &[String], workers: usize, span: Duration) -> (Vec<u64>, Duration) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(workers)
        .build()
        .expect("client");
    let counts: Vec<Arc<AtomicU64>> = urls.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
    let started = Instant::now();
    let deadline = started + span;
    let mut tasks = Vec::new();
    for (url, count) in urls.iter().zip(&counts) {
        for _ in 0..workers {
            let (http, url, count) = (http.clone(), url.clone(), count.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let response = http
                        .post(&url)
                        .json(&json!({"provider": "ibkr"}))
                        .send()
                        .await;
                    if response.is_ok_and(|r| r.status() == 200) {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("worker");
    }
    let window = started.elapsed();
    (
        counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
        window,
    )
}

async fn state(mdp: &MdpProcess) -> Value {
    reqwest::get(mdp.url("/api/v1/state"))
        .await
        .expect("state")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn a_quarter_of_the_budget_with_four_replicas() {
    let mdp = MdpProcess::serve(&["--replicas", "4"], &[]);
    let replicas = state(&mdp).await["replicas"].clone();
    assert_eq!(replicas["count"], 4);
    assert_eq!(replicas["share"], 0.25);
    let (granted, window) = hammer(&[mdp.url("/api/v1/acquire")], 8, Duration::from_secs(3)).await;
    let granted = granted[0] as f64;
    // Share of 60/s and of the burst of 100: at most 25 + 15 x W.
    let bound = 25.0 + 15.0 * window.as_secs_f64();
    assert!(
        granted <= bound,
        "granted {granted} > bound {bound:.1} over {window:?}"
    );
    let expected = 25.0 + 15.0 * 3.0;
    assert!(
        granted >= 0.8 * expected,
        "granted only {granted} of about {expected}"
    );
    let text = reqwest::get(mdp.url("/metrics"))
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert_eq!(common::sample(&text, "mdp_replicas"), Some(4.0));
}

/// Starts pod `index` (address 127.0.0.`index+1`) finding its peers by name
/// in `hosts`.
fn pod(index: u8, hosts: &std::path::Path) -> MdpProcess {
    let ip = format!("127.0.0.{}", index + 1);
    let listen = format!("{ip}:0");
    let hosts = hosts.to_str().expect("utf-8 path");
    MdpProcess::spawn(
        &[
            "serve",
            "--listen",
            &listen,
            "--replicas-dns",
            "peers.mdp.test",
            "--replicas-hosts-file",
            hosts,
            "--pod-ip",
            &ip,
            "--replicas-refresh",
            "200ms",
            "--replicas-shrink-hold",
            "600ms",
        ],
        &[],
    )
}

fn write_hosts(path: &std::path::Path, pods: u8) {
    let lines: String = (1..=pods)
        .map(|i| format!("127.0.0.{i} peers.mdp.test\n"))
        .collect();
    std::fs::write(path, lines).expect("write hosts file");
}

async fn wait_for_count(pods: &[&MdpProcess], count: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut all = true;
        for pod in pods {
            all &= state(pod).await["replicas"]["count"] == count;
        }
        if all {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pods never agreed on {count} replicas"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn pods_finding_each_other_by_name_stay_within_the_budget() {
    let dir = std::env::temp_dir().join(format!("mdp-replicas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let hosts = dir.join("hosts");
    write_hosts(&hosts, 3);
    let pods: Vec<MdpProcess> = (0..3).map(|i| pod(i, &hosts)).collect();
    let refs: Vec<&MdpProcess> = pods.iter().collect();
    wait_for_count(&refs, 3).await;
    let urls: Vec<String> = pods.iter().map(|p| p.url("/api/v1/acquire")).collect();
    let (granted, window) = hammer(&urls, 4, Duration::from_secs(3)).await;
    let total: u64 = granted.iter().sum();
    let bound = 100.0 + 60.0 * window.as_secs_f64();
    assert!(
        (total as f64) <= bound,
        "3 pods granted {total} ({granted:?}) > budget {bound:.1} over {window:?}"
    );
    // Each pod did its share of the work: roughly a third each.
    for count in &granted {
        assert!(*count as f64 >= 0.2 * total as f64, "{granted:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn scaling_out_under_load_overshoots_by_at_most_the_newcomers_cautious_share() {
    let dir = std::env::temp_dir().join(format!("mdp-scale-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let hosts = dir.join("hosts");
    write_hosts(&hosts, 2);
    let first: Vec<MdpProcess> = (0..2).map(|i| pod(i, &hosts)).collect();
    wait_for_count(&first.iter().collect::<Vec<_>>(), 2).await;
    // A third pod arrives while the first two are busy: it is listed at once
    // (as a ready pod would be) and starts cautiously at 1/max_replicas.
    write_hosts(&hosts, 3);
    let third = pod(2, &hosts);
    let urls: Vec<String> = first
        .iter()
        .chain([&third])
        .map(|p| p.url("/api/v1/acquire"))
        .collect();
    let (granted, window) = hammer(&urls, 4, Duration::from_secs(3)).await;
    let total: u64 = granted.iter().sum();
    let budget = 100.0 + 60.0 * window.as_secs_f64();
    // The documented worst case: the newcomer's cautious share of the burst
    // and rate (1/10 of 100 and of 60/s) for the window.
    let allowance = 10.0 + 6.0 * window.as_secs_f64();
    let overshoot = (total as f64 - budget).max(0.0);
    eprintln!(
        "scale-out: granted {total} ({granted:?}) in {window:?}; budget {budget:.1}; overshoot {overshoot:.1}"
    );
    assert!(
        overshoot <= allowance,
        "overshoot {overshoot:.1} > allowance {allowance:.1}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
