//! Provider pacing through the real HTTP API: the built-in ibkr profile
//! against IBKR's published table, leases returned by a worker, the
//! provider's pushback, the backpressure scale on every window, and the
//! refusals of bad configuration.

mod common;

use common::{InProcess, eventually, sample, store_event};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

async fn post(client: &reqwest::Client, url: String, body: Value) -> (StatusCode, Value) {
    let response = client.post(url).json(&body).send().await.expect("answers");
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

/// A historical request for contract `i` (its own key and fingerprint), that
/// waits out the 50-messages-per-second rule.
fn historical(i: usize, kind: &str) -> Value {
    json!({
        "provider": "ibkr",
        "class": "historical",
        "key": format!("C{i}/SMART/{kind}"),
        "fingerprint": format!("C{i}/SMART/{kind}/1 D/1 min"),
        "kind": kind,
        "wait_ms": 5000,
    })
}

async fn state(client: &reqwest::Client, service: &InProcess) -> Value {
    client
        .get(service.url("/api/v1/state"))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON")
}

#[tokio::test]
async fn the_61st_historical_request_in_ten_minutes_is_refused_naming_the_rule() {
    let service = InProcess::start(&["--provider-profile", "ibkr"]).await;
    let client = reqwest::Client::new();
    let acquire = || service.url("/api/v1/acquire");
    let mut leases = Vec::new();
    for i in 0..60 {
        let (status, body) = post(&client, acquire(), historical(i, "TRADES")).await;
        assert_eq!(status, StatusCode::OK, "request {i}: {body}");
        leases.push(body["lease"].as_str().expect("a lease").to_owned());
        // Returned at once: the open-requests cap stays out of the way.
        let (status, _) = post(
            &client,
            service.url("/api/v1/release"),
            json!({"lease": leases[i]}),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let mut refused = historical(60, "TRADES");
    refused["wait_ms"] = json!(0);
    let response = client
        .post(acquire())
        .json(&refused)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_header: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["rule"], "historical", "{body}");
    assert_eq!(body["limit"], "60 in 10m");
    let retry_ms = body["retry_after_ms"].as_u64().expect("retry_after_ms");
    // The first grant leaves the 10-minute window about 10 minutes after it.
    assert!((590_000..=600_000).contains(&retry_ms), "{retry_ms}");
    assert!((590..=600).contains(&retry_header), "{retry_header}");
    let message = body["error"].as_str().expect("error");
    assert!(
        message.starts_with("held by ibkr/historical: 60 in 10m, next slot in "),
        "{message}"
    );
    // Market data is another class: not held by the historical window (it
    // waits out the 50-messages-per-second rule the loop above may have filled).
    let (status, body) = post(
        &client,
        acquire(),
        json!({"provider":"ibkr","class":"market_data","wait_ms":5000}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let metrics = common::get_text(&client, &service.url("/metrics")).await;
    assert_eq!(
        sample(
            &metrics,
            r#"mdp_pacing_refusals_total{provider="ibkr",class="historical",rule="historical"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"mdp_pacing_grants_total{provider="ibkr",class="historical"}"#
        ),
        Some(60.0)
    );
    assert_eq!(
        sample(&metrics, r#"mdp_pacing_leases_held{provider="ibkr"}"#),
        Some(1.0),
        "the market-data line"
    );
    service.stop().await;
}

#[tokio::test]
async fn bid_ask_counts_twice_and_soft_halves_every_window() {
    let service = InProcess::start(&["--provider-profile", "ibkr"]).await;
    let client = reqwest::Client::new();
    // SOFT: 60 historical per 10 minutes becomes 30; BID_ASK counts 2, so 15.
    let (status, _) = post(
        &client,
        service.url("/feedback"),
        store_event(6500, "SOFT", None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for i in 0..15 {
        let (status, body) = post(
            &client,
            service.url("/api/v1/acquire"),
            historical(i, "BID_ASK"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "BID_ASK {i}: {body}");
        post(
            &client,
            service.url("/api/v1/release"),
            json!({"lease": body["lease"]}),
        )
        .await;
    }
    let mut next = historical(15, "TRADES");
    next["wait_ms"] = json!(0);
    let (status, body) = post(&client, service.url("/api/v1/acquire"), next).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["rule"], "historical");
    let state = state(&client, &service).await;
    let rules = &state["providers"][0]["pacing"]["rules"];
    let historical_rule = rules
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["name"] == "historical")
        .expect("the historical rule");
    assert_eq!(
        historical_rule["in_force"], "30 in 10m",
        "{historical_rule}"
    );
    service.stop().await;
}

#[tokio::test]
async fn the_same_contract_and_the_identical_request_are_held() {
    let service = InProcess::start(&["--provider-profile", "ibkr"]).await;
    let client = reqwest::Client::new();
    let acquire = || service.url("/api/v1/acquire");
    let same = |n: usize| {
        json!({"provider":"ibkr","class":"historical","key":"AAPL/SMART/TRADES",
               "fingerprint": format!("AAPL/SMART/TRADES/{n} D/1 min")})
    };
    for n in 0..5 {
        let (status, body) = post(&client, acquire(), same(n)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = post(&client, acquire(), same(5)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["rule"], "same_contract");
    // The identical request again (another contract's key is not needed:
    // the fingerprint alone is the rule's scope).
    let (status, body) = post(
        &client,
        acquire(),
        json!({"provider":"ibkr","class":"historical","key":"MSFT/SMART/TRADES",
               "fingerprint":"AAPL/SMART/TRADES/0 D/1 min"}),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["rule"], "identical");
    let retry = body["retry_after_ms"].as_u64().expect("retry");
    assert!((10_000..=15_000).contains(&retry), "{retry}");
    service.stop().await;
}

#[tokio::test]
async fn the_51st_open_request_waits_for_a_release() {
    let service = InProcess::start(&["--provider-profile", "ibkr"]).await;
    let client = reqwest::Client::new();
    let mut leases = Vec::new();
    for i in 0..50 {
        let (status, body) = post(
            &client,
            service.url("/api/v1/acquire"),
            historical(i, "TRADES"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        leases.push(body["lease"].as_str().expect("lease").to_owned());
    }
    let mut now = historical(50, "TRADES");
    now["wait_ms"] = json!(0);
    let (status, body) = post(&client, service.url("/api/v1/acquire"), now).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["rule"], "open_historical");
    assert_eq!(body["limit"], "50 open");
    // A waiter: granted as soon as one request is done.
    let waiter = {
        let (client, url) = (client.clone(), service.url("/api/v1/acquire"));
        let mut body = historical(51, "TRADES");
        body["wait_ms"] = json!(30_000);
        tokio::spawn(async move { post(&client, url, body).await })
    };
    let waiting = eventually(Duration::from_secs(10), || async {
        state(&client, &service).await["providers"][0]["waiting"] == 1
    })
    .await;
    assert!(waiting, "the request never queued");
    assert!(!waiter.is_finished());
    let (status, body) = post(
        &client,
        service.url("/api/v1/release"),
        json!({"lease": leases[0]}),
    )
    .await;
    assert_eq!((status, &body["released"]), (StatusCode::OK, &json!(true)));
    let (status, body) = waiter.await.expect("task");
    assert_eq!(status, StatusCode::OK, "{body}");
    // A lease is returned once; an unknown one is 404.
    let (status, _) = post(
        &client,
        service.url("/api/v1/release"),
        json!({"lease": leases[0]}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = post(&client, service.url("/api/v1/release"), json!({"lease": 7})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let state = state(&client, &service).await;
    assert_eq!(state["providers"][0]["pacing"]["leases_held"], 50);
    service.stop().await;
}

#[tokio::test]
async fn a_pushback_backs_the_class_off_at_once_and_shows_everywhere() {
    let service = InProcess::start(&["--provider-profile", "ibkr"]).await;
    let client = reqwest::Client::new();
    let report = json!({"provider":"ibkr","class":"historical","kind":"pacing_violation","retry_after_ms":60000});
    let (status, body) = post(&client, service.url("/api/v1/pushback"), report).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["factor"], 0.5);
    let (status, body) = post(
        &client,
        service.url("/api/v1/acquire"),
        historical(0, "TRADES"),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["rule"], "pushback");
    let retry = body["retry_after_ms"].as_u64().expect("retry");
    assert!((55_000..=60_000).contains(&retry), "{retry}");
    let state = state(&client, &service).await;
    let pacing = &state["providers"][0]["pacing"];
    assert_eq!(pacing["class_factors"]["historical"], 0.5, "{pacing}");
    assert_eq!(pacing["pushbacks"], 1);
    let metrics = common::get_text(&client, &service.url("/metrics")).await;
    assert_eq!(
        sample(
            &metrics,
            r#"mdp_pacing_pushback_factor{provider="ibkr",class="historical"}"#
        ),
        Some(0.5)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"mdp_pacing_pushbacks_total{provider="ibkr",class="historical",kind="pacing_violation"}"#
        ),
        Some(1.0)
    );
    for (bad, status) in [
        (
            json!({"provider":"nope","kind":"rate_limited"}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"provider":"ibkr","kind":"slow"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"provider":"ibkr","kind":"rate_limited","retry_after_ms":-1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"provider":"ibkr","kind":"rate_limited","retry_after_ms":90_000_000_000u64}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (got, body) = post(&client, service.url("/api/v1/pushback"), bad.clone()).await;
        assert_eq!(got, status, "{bad}: {body}");
    }
    service.stop().await;
}

#[tokio::test]
async fn a_request_no_rule_could_ever_admit_is_400_with_the_limit() {
    let service = InProcess::start(&["--provider-profile", "ibkr"]).await;
    let client = reqwest::Client::new();
    let (status, body) = post(
        &client,
        service.url("/api/v1/acquire"),
        json!({"provider":"ibkr","class":"historical","tokens":31,"kind":"BID_ASK"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["rule"], "historical");
    assert_eq!(body["limit"], "60 in 10m");
    let (status, body) = post(
        &client,
        service.url("/api/v1/acquire"),
        json!({"provider":"ibkr","key": "x".repeat(257)}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    service.stop().await;
}

#[test]
fn an_unknown_profile_is_refused_at_start_with_one_line() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mdp"))
        .args(["serve", "--provider-profile", "polygon"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim_end(),
        "mdp: invalid --provider-profile: unknown profile \"polygon\" (known: ibkr)"
    );
}
