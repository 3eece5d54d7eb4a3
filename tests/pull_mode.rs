//! Pull mode against a stand-in store serving `mds_coord_queue_depth` on a
//! real socket: levels follow the polled depth, failures make it stale at the
//! fail-safe level, recovery brings it back.

mod common;

use common::{InProcess, eventually};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warp::Filter;
use warp::http::StatusCode;

/// What the stand-in store answers on `/metrics`.
#[derive(Clone)]
enum Store {
    Depth(u64),
    Down,
    Garbage,
    /// Answers, but only after the poll's time limit.
    Slow,
}

async fn start_store(state: Arc<Mutex<Store>>) -> std::net::SocketAddr {
    let route = warp::path!("metrics").then(move || {
        let state = state.clone();
        async move {
        let store = state.lock().expect("store lock").clone();
        if matches!(store, Store::Slow) {
            tokio::time::sleep(Duration::from_millis(400)).await;
            return warp::http::Response::builder()
                .status(StatusCode::OK)
                .body("mds_coord_queue_depth{coord_id=\"store_01\"} 100\n".to_owned());
        }
        match store {
            Store::Depth(depth) => warp::http::Response::builder()
                .status(StatusCode::OK)
                .body(format!(
                    "# HELP mds_coord_queue_depth Queue depth.\n# TYPE mds_coord_queue_depth gauge\nmds_coord_queue_depth{{coord_id=\"store_01\"}} {depth}\n"
                )),
            Store::Down => warp::http::Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .body("boom".to_owned()),
            Store::Garbage => warp::http::Response::builder()
                .status(StatusCode::OK)
                .body("<html>definitely not metrics</html>".to_owned()),
            Store::Slow => unreachable!("answered above"),
        }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind store");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(warp::serve(route).incoming(listener).run());
    addr
}

async fn state(mdp: &InProcess) -> serde_json::Value {
    reqwest::get(mdp.url("/api/v1/state"))
        .await
        .expect("state")
        .json()
        .await
        .expect("json")
}

async fn metrics(mdp: &InProcess) -> String {
    common::get_text(&reqwest::Client::new(), &mdp.url("/metrics")).await
}

async fn level(mdp: &InProcess) -> String {
    state(mdp).await["level"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn polled_depth_drives_the_level_and_failures_fail_safe() {
    let store = Arc::new(Mutex::new(Store::Depth(500)));
    let addr = start_store(store.clone()).await;
    let url = format!("http://{addr}/metrics");
    let mdp = InProcess::start(&[
        "--store-metrics-url",
        &url,
        "--pull-interval",
        "50ms",
        "--pull-timeout",
        "50ms",
        "--pull-ttl",
        "5s",
        "--pull-max-failures",
        "3",
        "--relax-after",
        "0s",
    ])
    .await;
    let wait_for = |expected: &'static str| {
        let mdp = &mdp;
        async move {
            eventually(Duration::from_secs(20), || async {
                level(mdp).await == expected
            })
            .await
        }
    };
    assert!(wait_for("ok").await);
    *store.lock().expect("lock") = Store::Depth(6000);
    assert!(wait_for("soft").await, "6000/10000 polled should be SOFT");
    *store.lock().expect("lock") = Store::Depth(9500);
    assert!(wait_for("hard").await, "9500/10000 polled should be HARD");
    *store.lock().expect("lock") = Store::Depth(800);
    assert!(wait_for("ok").await);

    // The store fails: after three failed polls the coordinator is stale and
    // counts as SOFT (never OK).
    *store.lock().expect("lock") = Store::Down;
    assert!(
        wait_for("soft").await,
        "failing store should fail safe to SOFT"
    );
    let state = state(&mdp).await;
    assert_eq!(state["coordinators"][0]["stale"], true);
    let scrape = metrics(&mdp).await;
    assert!(
        common::sample(&scrape, "mdp_pull_polls_total{result=\"error\"}").expect("counted") >= 3.0
    );
    assert_eq!(
        common::sample(&scrape, "mdp_coordinator_stale{coordinator=\"store_01\"}"),
        Some(1.0)
    );

    // A store slower than the poll's time limit is failing too.
    *store.lock().expect("lock") = Store::Depth(300);
    assert!(wait_for("ok").await);
    *store.lock().expect("lock") = Store::Slow;
    assert!(
        wait_for("soft").await,
        "a store slower than --pull-timeout should fail safe"
    );

    // Garbage is a failure too; a good answer brings it back.
    let errors = || async {
        let text = metrics(&mdp).await;
        common::sample(&text, "mdp_pull_polls_total{result=\"error\"}").unwrap_or(0.0)
    };
    let before = errors().await;
    *store.lock().expect("lock") = Store::Garbage;
    assert!(
        eventually(Duration::from_secs(20), || async {
            errors().await >= before + 2.0
        })
        .await,
        "garbage polls count as errors"
    );
    assert_eq!(level(&mdp).await, "soft");
    *store.lock().expect("lock") = Store::Depth(300);
    assert!(wait_for("ok").await, "recovered store should bring OK back");
    mdp.stop().await;
}

#[tokio::test]
async fn an_unreachable_store_fails_safe_instead_of_ok() {
    let url = common::closed_url();
    let mdp = InProcess::start(&[
        "--store-metrics-url",
        &url,
        "--pull-interval",
        "50ms",
        "--pull-timeout",
        "50ms",
        "--pull-ttl",
        "1s",
        "--relax-after",
        "0s",
    ])
    .await;
    // Nothing was ever learned: no coordinator, yet never OK, polls counted as errors.
    let failed = eventually(Duration::from_secs(20), || async {
        let text = metrics(&mdp).await;
        common::sample(&text, "mdp_pull_polls_total{result=\"error\"}").unwrap_or(0.0) >= 3.0
    })
    .await;
    assert!(failed);
    assert_eq!(
        level(&mdp).await,
        "soft",
        "a store never reached is no empty queue"
    );
    let state = state(&mdp).await;
    assert_eq!(state["queue_depth"], serde_json::Value::Null);
    assert_eq!(state["coordinators"].as_array().map(Vec::len), Some(0));
    mdp.stop().await;
}
