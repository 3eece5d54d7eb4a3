//! The closed loop in process: store events in, levels, gauges and tokens out.

mod common;

use common::{InProcess, eventually, sample, store_event};
use mdp::http::routes;
use serde_json::{Value, json};
use std::time::Duration;
use warp::http::StatusCode;

struct Client {
    service: InProcess,
}

impl Client {
    async fn start(args: &[&str]) -> Client {
        Client {
            service: InProcess::start(args).await,
        }
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = warp::test::request()
            .method("POST")
            .path(path)
            .header("content-type", "application/json")
            .body(body.to_string())
            .reply(&routes(self.service.ctx.clone()))
            .await;
        let json = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
        (response.status(), json)
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let response = warp::test::request()
            .path(path)
            .reply(&routes(self.service.ctx.clone()))
            .await;
        let text = String::from_utf8_lossy(response.body()).into_owned();
        (response.status(), text)
    }

    async fn state(&self) -> Value {
        let (status, body) = self.get("/api/v1/state").await;
        assert_eq!(status, StatusCode::OK);
        serde_json::from_str(&body).expect("state is JSON")
    }

    async fn metrics(&self) -> String {
        self.get("/metrics").await.1
    }

    async fn gauges(&self) -> (f64, f64, f64) {
        let text = self.metrics().await;
        (
            sample(&text, "pipeline_rate_scale_factor{provider=\"ibkr\"}").expect("scale gauge"),
            sample(&text, "pipeline_backpressure_state{provider=\"ibkr\"}").expect("state gauge"),
            sample(
                &text,
                "pipeline_feedback_queue_depth{source=\"store_coordinator\"}",
            )
            .expect("depth gauge"),
        )
    }

    async fn acquire(&self) -> StatusCode {
        self.post("/api/v1/acquire", &json!({"provider": "ibkr", "tokens": 1}))
            .await
            .0
    }

    /// Acquire as a worker would: willing to wait a little for a token.
    async fn acquire_waiting(&self) -> StatusCode {
        let body = json!({"provider": "ibkr", "tokens": 1, "wait_ms": 300});
        self.post("/api/v1/acquire", &body).await.0
    }
}

#[tokio::test]
async fn seed_scenarios_as_the_store_sends_them() {
    let client = Client::start(&["--relax-after", "0s"]).await;
    assert_eq!(
        client.gauges().await,
        (1.0, 0.0, 0.0),
        "values from start-up"
    );
    let scenarios = [
        (500, "ok", None, 1.0, 0.0),
        (6000, "soft", None, 0.5, 1.0),
        (9500, "hard", None, 0.0, 2.0),
        (800, "ok", Some("queue_recovered"), 1.0, 0.0),
    ];
    for (depth, level, reason, scale, state) in scenarios {
        let (status, body) = client
            .post("/feedback", &store_event(depth, level, reason))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["applied"], true);
        assert_eq!(
            client.gauges().await,
            (scale, state, depth as f64),
            "at {level}"
        );
        let granted = client.acquire_waiting().await;
        if level == "hard" {
            assert_eq!(
                granted,
                StatusCode::TOO_MANY_REQUESTS,
                "HARD grants nothing"
            );
        } else {
            assert_eq!(granted, StatusCode::OK, "at {level}");
        }
        let state_doc = client.state().await;
        assert_eq!(state_doc["level"], level);
        assert_eq!(state_doc["queue_depth"], depth);
        assert_eq!(state_doc["providers"][0]["effective_rate"], 60.0 * scale);
    }
    client.service.stop().await;
}

#[tokio::test]
async fn hard_is_a_true_pause_with_retry_after() {
    let client = Client::start(&["--relax-after", "0s"]).await;
    client
        .post("/feedback", &store_event(9500, "hard", None))
        .await;
    for _ in 0..50 {
        let response = warp::test::request()
            .method("POST")
            .path("/api/v1/acquire")
            .header("content-type", "application/json")
            .body(r#"{"provider":"ibkr"}"#)
            .reply(&routes(client.service.ctx.clone()))
            .await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(response.headers().contains_key("retry-after"));
        let body: Value = serde_json::from_slice(response.body()).expect("json");
        assert!(body["retry_after_ms"].as_u64().expect("retry_after_ms") >= 1);
    }
    // The saved burst did not survive the pause.
    client
        .post(
            "/feedback",
            &store_event(800, "ok", Some("queue_recovered")),
        )
        .await;
    let mut granted = 0;
    for _ in 0..100 {
        if client.acquire().await == StatusCode::OK {
            granted += 1;
        }
    }
    assert!(
        granted < 20,
        "{granted} tokens right after a pause: the burst survived"
    );
    client.service.stop().await;
}

#[tokio::test]
async fn depth_only_events_walk_the_watermarks() {
    let client = Client::start(&["--relax-after", "0s"]).await;
    let walk = [
        (4000, "ok"),
        (5000, "soft"),
        (8500, "soft"),
        (9000, "hard"),
        (8200, "hard"),
        (7900, "soft"),
        (3000, "soft"),
        (1900, "ok"),
    ];
    for (depth, expected) in walk {
        let event = json!({"coordinator_id": "store_01", "queue_size": depth, "capacity": 10000});
        let (status, body) = client.post("/feedback", &event).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["coordinator_level"], expected, "at depth {depth}");
        assert_eq!(client.state().await["level"], expected, "at depth {depth}");
    }
    client.service.stop().await;
}

#[tokio::test]
async fn an_older_ts_never_overrides_a_newer_one() {
    let client = Client::start(&["--relax-after", "0s"]).await;
    let newer = json!({"coordinator_id":"c1","queue_size":9500,"capacity":10000,"level":"hard","source":"store","ts":1700000010.0});
    let older = json!({"coordinator_id":"c1","queue_size":100,"capacity":10000,"level":"ok","source":"store","ts":1700000009.5});
    assert_eq!(client.post("/feedback", &newer).await.1["applied"], true);
    let (status, body) = client.post("/feedback", &older).await;
    assert!(status.is_success(), "ignored events still answer 2xx");
    assert_eq!(body["applied"], false);
    let state = client.state().await;
    assert_eq!(state["level"], "hard");
    assert_eq!(state["queue_depth"], 9500);
    let text = client.metrics().await;
    assert_eq!(
        sample(
            &text,
            "mdp_feedback_events_rejected_total{reason=\"out_of_order\"}"
        ),
        Some(1.0)
    );
    client.service.stop().await;
}

/// State minus the fields that move by themselves.
fn stable(mut state: Value) -> Value {
    for key in ["uptime_seconds", "seq"] {
        state.as_object_mut().expect("object").remove(key);
    }
    for c in state["coordinators"].as_array_mut().expect("array") {
        c.as_object_mut().expect("object").remove("age_seconds");
    }
    state
}

#[tokio::test]
async fn bad_payloads_are_refused_and_change_nothing() {
    let client = Client::start(&["--relax-after", "0s"]).await;
    client
        .post("/feedback", &store_event(6000, "soft", None))
        .await;
    let before = stable(client.state().await);
    let bad: Vec<Value> = vec![
        json!(null),
        json!([]),
        json!("soft"),
        json!({}),
        json!({"coordinator_id":"store_01","queue_size":9500}),
        json!({"coordinator_id":"store_01","capacity":10000}),
        json!({"coordinator_id":"","queue_size":9500,"capacity":10000}),
        json!({"coordinator_id":"x{y=\"z\"}","queue_size":9500,"capacity":10000}),
        json!({"coordinator_id":"store_01","queue_size":-1,"capacity":10000}),
        json!({"coordinator_id":"store_01","queue_size":9500.5,"capacity":10000}),
        json!({"coordinator_id":"store_01","queue_size":"9500","capacity":10000}),
        json!({"coordinator_id":"store_01","queue_size":9500,"capacity":0}),
        json!({"coordinator_id":"store_01","queue_size":9500,"capacity":10000,"level":"HARDER"}),
        json!({"coordinator_id":"store_01","queue_size":9500,"capacity":10000,"level":2}),
        json!({"coordinator_id":"store_01","queue_size":9500,"capacity":10000,"ts":-1}),
        json!({"coordinator_id":7,"queue_size":9500,"capacity":10000}),
        json!({"coordinator_id":"a".repeat(65),"queue_size":9500,"capacity":10000}),
    ];
    for body in &bad {
        let (status, answer) = client.post("/feedback", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        assert!(answer["error"].is_string(), "errors are JSON: {answer}");
    }
    // Raw bytes that are not JSON at all, and wrong content types / sizes.
    let ctx = client.service.ctx.clone();
    let raw = |ct: &'static str, body: Vec<u8>| {
        let ctx = ctx.clone();
        async move {
            warp::test::request()
                .method("POST")
                .path("/feedback")
                .header("content-type", ct)
                .body(body)
                .reply(&routes(ctx))
                .await
                .status()
        }
    };
    assert_eq!(
        raw("application/json", b"{\"coordinator_id\":".to_vec()).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        raw("application/json", vec![0xff, 0xfe, 0x00]).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        raw(
            "text/plain",
            store_event(9500, "hard", None).to_string().into_bytes()
        )
        .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let mut huge =
        br#"{"coordinator_id":"store_01","queue_size":9500,"capacity":10000,"pad":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 70_000));
    huge.extend(b"\"}");
    assert_eq!(
        raw("application/json", huge).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    assert_eq!(
        stable(client.state().await),
        before,
        "refused input changed state"
    );
    // A valid event still applies afterwards.
    let (status, body) = client
        .post("/feedback", &store_event(9500, "hard", None))
        .await;
    assert_eq!((status, &body["applied"]), (StatusCode::OK, &json!(true)));
    let text = client.metrics().await;
    let refused = |reason: &str| {
        sample(
            &text,
            &format!("mdp_feedback_events_rejected_total{{reason=\"{reason}\"}}"),
        )
        .expect("counted")
    };
    assert_eq!(
        refused("malformed") + refused("invalid"),
        bad.len() as f64 + 2.0
    );
    assert_eq!(refused("unsupported_media_type"), 1.0);
    assert_eq!(refused("too_large"), 1.0);
    client.service.stop().await;
}

#[tokio::test]
async fn flapping_soft_ok_at_one_kilohertz_tightens_once_and_holds() {
    // A hold no loaded machine can outlast between two posts: the relax that
    // follows the hold is the controller's, checked on virtual time in its
    // unit tests; here the whole path (HTTP, loop, metrics) must absorb 1000 flaps.
    let client = Client::start(&["--relax-after", "1h"]).await;
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    for i in 0..1000 {
        ticks.tick().await;
        let event = if i % 2 == 0 {
            store_event(5001, "soft", None)
        } else {
            store_event(5000, "ok", Some("queue_recovered"))
        };
        let (status, _) = client.post("/feedback", &event).await;
        assert_eq!(status, StatusCode::OK);
    }
    let state = client.state().await;
    assert_eq!(state["level"], "soft", "held at SOFT while the store flaps");
    assert_eq!(state["raw_level"], "ok", "the store's last word was OK");
    let text = client.metrics().await;
    let tightened = sample(&text, "mdp_backpressure_transitions_total{level=\"soft\"}");
    let relaxes = sample(&text, "mdp_backpressure_transitions_total{level=\"ok\"}");
    assert_eq!((tightened, relaxes), (Some(1.0), Some(0.0)), "{text}");
    let suppressed = sample(&text, "mdp_backpressure_flaps_suppressed_total").expect("counted");
    assert!(suppressed >= 998.0, "only {suppressed} flaps counted");
    client.service.stop().await;
}

#[tokio::test]
async fn acquire_checks_its_input_and_can_wait() {
    let client = Client::start(&["--provider", "slow=10/s,burst=1"]).await;
    let cases = [
        (json!({"provider": "nope"}), StatusCode::NOT_FOUND),
        (
            json!({"provider": "slow", "tokens": 0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"provider": "slow", "tokens": 2}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"provider": "slow", "tokens": -1}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"provider": 5}), StatusCode::BAD_REQUEST),
        (json!({"tokens": 1}), StatusCode::BAD_REQUEST),
        (
            json!({"provider": "slow", "surprise": 1}),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(
            client.post("/api/v1/acquire", &body).await.0,
            expected,
            "{body}"
        );
    }
    let take = json!({"provider": "slow"});
    assert_eq!(
        client.post("/api/v1/acquire", &take).await.0,
        StatusCode::OK
    );
    let (status, body) = client.post("/api/v1/acquire", &take).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry = body["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!((1..=100).contains(&retry), "{retry}");
    // With a bounded wait the worker blocks until the token accrues.
    let (status, body) = client
        .post(
            "/api/v1/acquire",
            &json!({"provider": "slow", "wait_ms": 2000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["waited_ms"].as_u64().expect("waited") <= 2000);
    client.service.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let client = Client::start(&[]).await;
    let (status, body) = client.get("/api/v1/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(serde_json::from_str::<Value>(&body).expect("json")["error"].is_string());
    let (status, _) = client.post("/health", &json!({})).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, body) = client.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json"),
        json!({"status": "healthy", "service": "market-data-pipeline"})
    );
    client.service.stop().await;
}

#[tokio::test]
async fn feedback_disabled_accepts_and_ignores() {
    let client = Client::start(&["--feedback-enabled", "false"]).await;
    let (status, body) = client
        .post("/feedback", &store_event(9500, "hard", None))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["applied"], false);
    assert_eq!(client.gauges().await, (1.0, 0.0, 0.0));
    client.service.stop().await;
}

#[tokio::test]
async fn feedback_can_target_one_provider() {
    let client = Client::start(&[
        "--relax-after",
        "0s",
        "--provider",
        "ibkr=60/s,burst=100",
        "--provider",
        "polygon=5/s",
        "--feedback-provider",
        "ibkr",
    ])
    .await;
    client
        .post("/feedback", &store_event(9500, "hard", None))
        .await;
    let text = client.metrics().await;
    assert_eq!(
        sample(&text, "pipeline_rate_scale_factor{provider=\"ibkr\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "pipeline_rate_scale_factor{provider=\"polygon\"}"),
        Some(1.0)
    );
    let (status, _) = client
        .post("/api/v1/acquire", &json!({"provider": "polygon"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    client.service.stop().await;
}

#[tokio::test]
async fn the_stream_pushes_each_change() {
    let client = Client::start(&["--relax-after", "0s"]).await;
    let http = reqwest::Client::new();
    let mut stream = http
        .get(client.service.url("/api/v1/stream"))
        .send()
        .await
        .expect("stream opens");
    assert_eq!(
        stream.headers()["content-type"].to_str().expect("ascii"),
        "text/event-stream"
    );
    client
        .post("/feedback", &store_event(9500, "hard", None))
        .await;
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(chunk)) = stream.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("\"level\":\"hard\"") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "no HARD state on the stream: {seen}");
    assert!(seen.contains("event:state"));
    client.service.stop().await;
}

#[tokio::test]
async fn the_history_records_one_sample_a_second() {
    let client = Client::start(&["--relax-after", "0s"]).await;
    client
        .post("/feedback", &store_event(6000, "soft", None))
        .await;
    let filled = eventually(Duration::from_secs(20), || async {
        let (_, body) = client.get("/api/v1/history").await;
        let history: Value = serde_json::from_str(&body).expect("json");
        history["samples"].as_array().is_some_and(|s| {
            s.iter()
                .any(|x| x["queue_depth"] == 6000 && x["level"] == "soft")
        })
    })
    .await;
    assert!(filled);
    client.service.stop().await;
}
