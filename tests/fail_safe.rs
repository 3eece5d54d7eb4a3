//! What a lost or wrong signal does, against the real binary: a store never
//! reached, a store at HARD that dies (with a real Prometheus evaluating the
//! exported alerts and the KEDA query), a clock from the future, an operator
//! forgetting a coordinator, and a task that dies taking the process down.

mod common;
#[path = "export/tools.rs"]
#[allow(dead_code)] // the helpers of tests/export.rs this file does not use
mod tools;

use common::{MdpProcess, closed_url, get_text, require_tool, sample, store_event};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tools::{Prometheus, Target};
use warp::Filter;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A stand-in store serving `mds_coord_queue_depth` on its own runtime, so
/// that killing it closes its listener and every connection at once.
struct Store {
    url: String,
    depth: Arc<AtomicU64>,
    kill: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Store {
    fn start(depth: u64) -> Store {
        let depth = Arc::new(AtomicU64::new(depth));
        let served = depth.clone();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (kill, killed) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("store runtime");
            runtime.block_on(async move {
                let route = warp::path!("metrics").map(move || {
                    format!(
                        "# TYPE mds_coord_queue_depth gauge\nmds_coord_queue_depth{{coord_id=\"store_01\"}} {}\n",
                        served.load(Ordering::Relaxed)
                    )
                });
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind store");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("address sent");
                tokio::spawn(warp::serve(route).incoming(listener).run());
                // Parks until killed; dropping the runtime then ends every task.
                let _ = tokio::task::spawn_blocking(move || killed.recv()).await;
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("store listening");
        Store {
            url: format!("http://{addr}/metrics"),
            depth,
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("store thread ends");
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn state(http: &reqwest::Client, mdp: &MdpProcess) -> Value {
    http.get(mdp.url("/api/v1/state"))
        .send()
        .await
        .expect("state answers")
        .json()
        .await
        .expect("state json")
}

async fn metrics(http: &reqwest::Client, mdp: &MdpProcess) -> String {
    get_text(http, &mdp.url("/metrics")).await
}

/// Polls `check` until it holds or 30 s pass (a loaded machine is slow, never wrong).
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const DEPTH: &str = "pipeline_feedback_queue_depth{source=\"store_coordinator\"}";
const PULL_FAST: [&str; 8] = [
    "--pull-interval",
    "100ms",
    "--pull-timeout",
    "100ms",
    "--pull-ttl",
    "1s",
    "--relax-after",
    "0s",
];

#[tokio::test]
async fn a_store_never_reached_is_no_empty_queue() {
    let url = closed_url();
    let mut args = vec!["--store-metrics-url", url.as_str()];
    args.extend(PULL_FAST);
    let mdp = MdpProcess::serve(&args, &[]);
    let http = reqwest::Client::new();
    until("polls fail", || async {
        sample(
            &metrics(&http, &mdp).await,
            "mdp_pull_polls_total{result=\"error\"}",
        )
        .unwrap_or(0.0)
            >= 2.0
    })
    .await;
    let text = metrics(&http, &mdp).await;
    assert_eq!(sample(&text, DEPTH), None, "no depth sample, never 0");
    assert_eq!(sample(&text, "mdp_store_up"), Some(0.0));
    assert_eq!(
        sample(&text, "mdp_coordinators{state=\"stale\"}"),
        Some(1.0),
        "a store never reached counts as stale"
    );
    assert_eq!(
        sample(&text, "pipeline_backpressure_state{provider=\"ibkr\"}"),
        Some(1.0)
    );
    let state = state(&http, &mdp).await;
    assert_eq!(state["level"], "soft");
    assert_eq!(state["queue_depth"], Value::Null);
    assert_eq!(state["store_reachable"], false);
    assert_eq!(state["autoscaler"]["fallback"], true);
    assert!(
        state["autoscaler"]["desired_replicas"].as_u64() >= Some(6),
        "{}",
        state["autoscaler"]
    );
    assert!(
        state["autoscaler"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("fallback")),
        "{}",
        state["autoscaler"]
    );
}

/// The exported alert rules, by name.
fn exported_alerts() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("deploy/prometheus/mdp-alerts.rules.yaml"))
        .expect("committed rules file");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("rules yaml");
    doc["groups"][0]["rules"]
        .as_sequence()
        .expect("rules")
        .iter()
        .map(|rule| {
            (
                rule["alert"].as_str().expect("alert name").to_owned(),
                rule["expr"].as_str().expect("expr").to_owned(),
            )
        })
        .collect()
}

fn exported_depth_query() -> String {
    let text = std::fs::read_to_string(repo().join("deploy/keda/scaledobject-pipeline.yaml"))
        .expect("committed ScaledObject");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("yaml");
    doc["spec"]["triggers"]
        .as_sequence()
        .expect("triggers")
        .iter()
        .find(|t| {
            t["metadata"]["query"]
                .as_str()
                .is_some_and(|q| q.contains("queue_depth"))
        })
        .and_then(|t| t["metadata"]["query"].as_str())
        .expect("a queue-depth trigger")
        .to_owned()
}

#[tokio::test]
async fn a_store_at_hard_that_dies_keeps_hard_and_the_alerts_fire() {
    let Some(binary) = require_tool("prometheus") else {
        return;
    };
    let mut store = Store::start(9500);
    let mut args = vec!["--store-metrics-url", store.url.as_str()];
    args.extend(PULL_FAST);
    let mdp = MdpProcess::serve(&args, &[]);
    let http = reqwest::Client::new();
    until("HARD from the polled depth", || async {
        state(&http, &mdp).await["level"] == "hard"
    })
    .await;
    // Scraped as the exported queries expect: the default namespace and job.
    let target = Target {
        addr: mdp.addr,
        namespace: "market-data",
        job: "mdp-pipeline",
    };
    let prometheus = Prometheus::start(&binary, &[target]).await;
    let depth_query = exported_depth_query();
    until("Prometheus reads the depth", || async {
        !prometheus.query(&http, &depth_query).await.is_empty()
    })
    .await;
    assert_eq!(store.depth.load(Ordering::Relaxed), 9500);
    store.kill();
    // Many failed polls later, the level is still HARD and no depth reads 0.
    until("ten failed polls", || async {
        sample(
            &metrics(&http, &mdp).await,
            "mdp_pull_polls_total{result=\"error\"}",
        )
        .unwrap_or(0.0)
            >= 10.0
    })
    .await;
    let now = state(&http, &mdp).await;
    assert_eq!(now["level"], "hard", "staleness never relaxes: {now}");
    assert_eq!(now["scale"], 0.0);
    assert_eq!(now["queue_depth"], Value::Null);
    assert_eq!(now["coordinators"][0]["stale"], true);
    assert_eq!(
        now["coordinators"][0]["queue_size"], 9500,
        "the last value, marked stale"
    );
    let text = metrics(&http, &mdp).await;
    assert_eq!(sample(&text, DEPTH), None);
    assert_eq!(
        sample(
            &text,
            "mdp_coordinator_queue_depth{coordinator=\"store_01\"}"
        ),
        Some(9500.0)
    );
    // What Prometheus makes of it: KEDA's query reads nothing (the fallback
    // engages), and the alert expressions hold.
    until("the KEDA depth query reads nothing", || async {
        prometheus.query(&http, &depth_query).await.is_empty()
    })
    .await;
    let alerts = exported_alerts();
    for name in [
        "MdpStoreUnreachable",
        "MdpAutoscalingSignalAbsent",
        "MdpFeedbackStale",
        "MdpHardBackpressure",
    ] {
        let (_, expr) = alerts
            .iter()
            .find(|(alert, _)| alert == name)
            .unwrap_or_else(|| panic!("no exported alert {name}"));
        until(&format!("{name} ({expr}) holds"), || async {
            !prometheus.query(&http, expr).await.is_empty()
        })
        .await;
    }
}

#[tokio::test]
async fn an_event_from_the_future_is_refused_and_a_valid_one_applies_after_it() {
    let mdp = MdpProcess::serve(&["--relax-after", "0s"], &[]);
    let http = reqwest::Client::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let mut future = store_event(9500, "hard", None);
    future["ts"] = serde_json::json!(1e30);
    let refused = http
        .post(mdp.url("/feedback"))
        .json(&future)
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.expect("json error");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("max-clock-skew")),
        "{body}"
    );
    let mut valid = store_event(6000, "soft", None);
    valid["ts"] = serde_json::json!(now);
    let applied: Value = http
        .post(mdp.url("/feedback"))
        .json(&valid)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(applied["applied"], true, "{applied}");
    assert_eq!(state(&http, &mdp).await["level"], "soft");
    let text = metrics(&http, &mdp).await;
    assert_eq!(
        sample(
            &text,
            "mdp_feedback_events_rejected_total{reason=\"clock_skew\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn an_operator_forgets_a_coordinator_that_is_gone() {
    let mdp = MdpProcess::serve(
        &[
            "--relax-after",
            "0s",
            "--auth-token",
            "a-long-enough-s3cret",
        ],
        &[],
    );
    let http = reqwest::Client::new();
    let posted = http
        .post(mdp.url("/feedback"))
        .bearer_auth("a-long-enough-s3cret")
        .json(&store_event(9500, "hard", None))
        .send()
        .await
        .expect("post");
    assert!(posted.status().is_success());
    assert_eq!(state(&http, &mdp).await["level"], "hard");
    let delete = |id: &str, token: Option<&str>| {
        let request = http.delete(mdp.url(&format!("/api/v1/coordinators/{id}")));
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        request.send()
    };
    assert_eq!(
        delete("store_01", None).await.expect("delete").status(),
        401
    );
    assert_eq!(
        delete("store_01", Some("wrong"))
            .await
            .expect("delete")
            .status(),
        401
    );
    assert_eq!(
        state(&http, &mdp).await["level"],
        "hard",
        "refused: nothing changed"
    );
    let unknown = delete("store_99", Some("a-long-enough-s3cret"))
        .await
        .expect("delete");
    assert_eq!(unknown.status(), 404);
    let forgotten = delete("store_01", Some("a-long-enough-s3cret"))
        .await
        .expect("delete");
    assert_eq!(forgotten.status(), 200);
    let body: Value = forgotten.json().await.expect("json");
    assert_eq!(body["forgotten"], true);
    assert_eq!(body["level"], "ok", "its HARD is released");
    let state = state(&http, &mdp).await;
    assert_eq!(state["coordinators"].as_array().map(Vec::len), Some(0));
    let text = metrics(&http, &mdp).await;
    assert_eq!(
        sample(&text, "mdp_coordinator_level{coordinator=\"store_01\"}"),
        None,
        "its series are gone"
    );
    assert_eq!(
        delete("store_01", Some("a-long-enough-s3cret"))
            .await
            .expect("delete")
            .status(),
        404
    );
}

#[tokio::test]
async fn a_task_that_dies_takes_the_process_down() {
    let url = closed_url();
    for task in ["store poller", "control loop"] {
        let mut args = vec!["--store-metrics-url", url.as_str()];
        args.extend(PULL_FAST);
        let mut argv = vec!["serve", "--listen", "127.0.0.1:0"];
        argv.extend(args);
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mdp"));
        command
            .args(&argv)
            .env("MDP_FAILPOINT", task)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let output = tokio::task::spawn_blocking(move || {
            let child = command.spawn().expect("mdp starts");
            child.wait_with_output().expect("mdp exits")
        });
        let output = tokio::time::timeout(Duration::from_secs(60), output)
            .await
            .unwrap_or_else(|_| panic!("mdp kept running after the {task} task died"))
            .expect("joined");
        let log = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{task}: {log}");
        assert!(
            log.contains(&format!("the {task} task panicked")),
            "{task}: {log}"
        );
    }
}
