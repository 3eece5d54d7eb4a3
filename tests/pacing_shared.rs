//! Paced providers sharing one budget through a real redis-server: two pods
//! with the ibkr profile never grant more than its windows and caps
//! together, a lease taken on one pod frees a slot for the other, and a
//! Redis that goes away leaves each pod pacing its own share.

mod common;

use common::redis::Redis;
use common::{MdpProcess, eventually, sample};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

fn pods(redis: &Redis) -> Vec<MdpProcess> {
    let url = redis.url();
    (0..2)
        .map(|_| {
            MdpProcess::serve(
                &[
                    "--provider-profile",
                    "ibkr",
                    "--replicas",
                    "2",
                    "--budget-redis",
                    &url,
                    // Generous for a loaded test machine.
                    "--budget-redis-timeout",
                    "1s",
                    "--budget-redis-probe",
                    "100ms",
                ],
                &[],
            )
        })
        .collect()
}

async fn wait_mode(pod: &MdpProcess, mode: &str) {
    let seen = eventually(Duration::from_secs(20), || async {
        let Ok(response) = reqwest::get(pod.url("/metrics")).await else {
            return false;
        };
        let text = response.text().await.unwrap_or_default();
        sample(&text, &format!("mdp_budget_mode{{mode=\"{mode}\"}}")) == Some(1.0)
    })
    .await;
    assert!(seen, "a pod never turned {mode}");
}

async fn acquire(http: &reqwest::Client, pod: &MdpProcess, body: Value) -> (StatusCode, Value) {
    let response = http
        .post(pod.url("/api/v1/acquire"))
        .json(&body)
        .send()
        .await
        .expect("answers");
    (response.status(), response.json().await.expect("JSON"))
}

async fn release(http: &reqwest::Client, pod: &MdpProcess, lease: &Value) -> StatusCode {
    http.post(pod.url("/api/v1/release"))
        .json(&json!({ "lease": lease }))
        .send()
        .await
        .expect("answers")
        .status()
}

fn historical(pod: usize, i: usize) -> Value {
    json!({
        "provider": "ibkr",
        "class": "historical",
        "key": format!("P{pod}C{i}/SMART/TRADES"),
        "fingerprint": format!("P{pod}C{i}/SMART/TRADES/1 D/1 min"),
        "wait_ms": 3000,
    })
}

#[tokio::test]
async fn two_pods_grant_at_most_one_window_together_and_share_the_open_cap() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let pods = pods(&redis);
    for pod in &pods {
        wait_mode(pod, "shared").await;
    }
    let http = reqwest::Client::new();
    // 45 open requests on each pod: the cap of 50 holds across both.
    let mut leases: Vec<Vec<Value>> = vec![Vec::new(), Vec::new()];
    let mut held_by_cap = 0;
    for i in 0..45 {
        for (p, pod) in pods.iter().enumerate() {
            let mut body = historical(p, i);
            body["wait_ms"] = json!(0);
            let (status, answer) = acquire(&http, pod, body).await;
            match status {
                StatusCode::OK => leases[p].push(answer["lease"].clone()),
                StatusCode::TOO_MANY_REQUESTS => {
                    // The messages rule (50/s) may hold a fast loop too.
                    if answer["rule"] == "open_historical" {
                        held_by_cap += 1;
                    }
                }
                other => panic!("{other}: {answer}"),
            }
        }
    }
    // Top up to the cap (the messages rule may have held a few of the fast loop).
    for i in 45..60 {
        if leases[0].len() + leases[1].len() >= 50 {
            break;
        }
        let mut body = historical(1, i);
        body["wait_ms"] = json!(1500);
        let (status, answer) = acquire(&http, &pods[1], body).await;
        if status == StatusCode::OK {
            leases[1].push(answer["lease"].clone());
        }
    }
    let open = leases[0].len() + leases[1].len();
    assert_eq!(open, 50, "the open requests of both pods");
    assert!(held_by_cap > 0, "the shared cap never held");
    let mut full = historical(1, 99);
    full["wait_ms"] = json!(0);
    let (status, answer) = acquire(&http, &pods[1], full).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert_eq!(answer["rule"], "open_historical");
    // A slot freed on pod 0 lets pod 1 in.
    let mut waiting = historical(1, 100);
    waiting["wait_ms"] = json!(10_000);
    let waiter = {
        let (http, url) = (http.clone(), pods[1].url("/api/v1/acquire"));
        tokio::spawn(async move {
            http.post(url)
                .json(&waiting)
                .send()
                .await
                .expect("answers")
                .status()
        })
    };
    let freed = leases[0].pop().expect("pod 0 holds leases");
    assert_eq!(release(&http, &pods[0], &freed).await, StatusCode::OK);
    assert_eq!(waiter.await.expect("task"), StatusCode::OK);
    for (p, pod) in pods.iter().enumerate() {
        for lease in leases[p].drain(..) {
            assert_eq!(release(&http, pod, &lease).await, StatusCode::OK);
        }
    }
    // The historical window: 60 in any 10 minutes for both pods together,
    // whatever each asks. The window already holds the grants above.
    let before: usize = open + 1;
    let mut granted = 0;
    for i in 200..260 {
        for (p, pod) in pods.iter().enumerate() {
            let (status, answer) = acquire(&http, pod, historical(p, i)).await;
            match status {
                StatusCode::OK => {
                    granted += 1;
                    release(&http, pod, &answer["lease"]).await;
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    assert_eq!(answer["rule"], "historical", "{answer}")
                }
                other => panic!("{other}: {answer}"),
            }
        }
    }
    assert_eq!(
        before + granted,
        60,
        "{before} + {granted} granted in one window"
    );
    // Redis gone: each pod paces its own half of every rule.
    // The first acquire after finds Redis gone and is granted from the local share.
    redis.kill();
    let (status, answer) = acquire(&http, &pods[0], historical(0, 999)).await;
    assert_eq!(status, StatusCode::OK, "the local share grants: {answer}");
    wait_mode(&pods[0], "fallback").await;
    let state: Value = http
        .get(pods[0].url("/api/v1/state"))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    let rules = state["providers"][0]["pacing"]["rules"]
        .as_array()
        .expect("rules")
        .clone();
    let historical_rule = rules
        .iter()
        .find(|r| r["name"] == "historical")
        .expect("rule");
    assert_eq!(
        historical_rule["in_force"], "30 in 10m",
        "{historical_rule}"
    );
}
