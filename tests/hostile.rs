//! A corpus of hostile requests: every one answered 4xx, none crashes the
//! service or changes its state, and a valid event still applies afterwards.

mod common;

use common::{InProcess, store_event};
use mdp::http::routes;
use serde_json::{Value, json};
use warp::http::StatusCode;

/// One hostile request.
struct Case {
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

fn post(path: &str, body: impl Into<Vec<u8>>) -> Case {
    Case {
        method: "POST",
        path: path.to_owned(),
        content_type: Some("application/json"),
        body: body.into(),
    }
}

fn feedback_with(field: &str, value: Value) -> Vec<u8> {
    let mut event = json!({"coordinator_id": "store_01", "queue_size": 9500, "capacity": 10000, "level": "hard"});
    event[field] = value;
    event.to_string().into_bytes()
}

fn corpus() -> Vec<Case> {
    let mut cases = Vec::new();
    // Not JSON, or not a JSON object.
    for body in [
        "",
        " ",
        "{",
        "}",
        "[",
        "nul",
        "tru",
        "{\"a\":}",
        "{\"coordinator_id\":\"a\",}",
        "{'coordinator_id':'a'}",
        "{/*c*/}",
        "NaN",
        "Infinity",
        "-Infinity",
        "1e999",
        "\u{0}",
        "\u{feff}{}",
        "null",
        "true",
        "42",
        "\"feedback\"",
        "[]",
        "[{}]",
        "{\"coordinator_id\":\"c\",\"queue_size\":NaN,\"capacity\":10000}",
        "{\"coordinator_id\":\"c\",\"queue_size\":Infinity,\"capacity\":10000}",
        "{\"coordinator_id\":\"c\",\"queue_size\":1,\"capacity\":1e999}",
        "{\"coordinator_id\":\"\\ud800\",\"queue_size\":1,\"capacity\":10}",
        "{\"coordinator_id\":\"\\udc00x\",\"queue_size\":1,\"capacity\":10}",
    ] {
        cases.push(post("/feedback", body));
    }
    cases.push(post("/feedback", vec![0xff, 0xfe, 0xfd]));
    cases.push(post("/feedback", "[".repeat(10_000) + &"]".repeat(10_000)));
    cases.push(post(
        "/feedback",
        "{\"a\":".repeat(5000) + "1" + &"}".repeat(5000),
    ));
    // Wrong types and out-of-range values, field by field.
    for (field, values) in [
        (
            "coordinator_id",
            vec![
                json!(1),
                json!(true),
                json!(null),
                json!([]),
                json!({}),
                json!(""),
            ],
        ),
        (
            "queue_size",
            vec![
                json!("9500"),
                json!(9500.5),
                json!(-1),
                json!(null),
                json!(true),
                json!(1e30),
                json!(u64::MAX as f64 * 4.0),
            ],
        ),
        (
            "capacity",
            vec![
                json!(0),
                json!(-1),
                json!("10000"),
                json!(0.5),
                json!(null),
                json!([10000]),
            ],
        ),
        (
            "level",
            vec![
                json!(2),
                json!(""),
                json!("HARDEST"),
                json!(["hard"]),
                json!({"level": "hard"}),
                json!("h\u{0}ard"),
            ],
        ),
        (
            "ts",
            vec![json!("now"), json!(-1), json!(true), json!([1]), json!({})],
        ),
        ("reason", vec![json!(5), json!(["x"])]),
    ] {
        for value in values {
            cases.push(post("/feedback", feedback_with(field, value)));
        }
    }
    // Hostile coordinator ids: control characters, label injection, length.
    for id in [
        "\u{1}",
        "a\nb",
        "a\rb",
        "a\tb",
        "store 01",
        "store\"01",
        "x{y=\"z\"}",
        "store_01\"} 1\nmdp_fake 1",
        "../../etc/passwd",
        "ѕtore",
        "💥",
        "a/b",
        "a\\b",
        "<script>",
        "%00",
        "a;b",
        "a,b",
        "a=b",
    ] {
        cases.push(post(
            "/feedback",
            feedback_with("coordinator_id", json!(id)),
        ));
    }
    cases.push(post(
        "/feedback",
        feedback_with("coordinator_id", json!("a".repeat(65))),
    ));
    cases.push(post(
        "/feedback",
        feedback_with("coordinator_id", json!("a".repeat(100_000))),
    ));
    // Wrong content types.
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonp",
        "json",
    ] {
        cases.push(Case {
            content_type: Some(content_type),
            ..post("/feedback", store_event(9500, "hard", None).to_string())
        });
    }
    // Oversize bodies.
    let mut big = br#"{"coordinator_id":"store_01","queue_size":9500,"capacity":10000,"level":"hard","pad":""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 70_000));
    big.extend(b"\"}");
    cases.push(post("/feedback", big.clone()));
    cases.push(post("/api/v1/acquire", big));
    cases.push(post("/feedback", vec![b' '; 2 * 1024 * 1024]));
    // Wrong methods.
    for (method, path) in [
        ("PUT", "/feedback"),
        ("DELETE", "/feedback"),
        ("PATCH", "/feedback"),
        ("GET", "/feedback"),
        ("GET", "/api/v1/acquire"),
        ("DELETE", "/api/v1/state"),
        ("PUT", "/metrics"),
    ] {
        cases.push(Case {
            method,
            ..post(path, store_event(9500, "hard", None).to_string())
        });
    }
    // Path traversal and odd paths on the dashboard assets.
    for path in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/..%2fCargo.toml",
        "/web/../Cargo.toml",
        "/%2e%2e%2fsrc%2fmain.rs",
        "/index.html/../../Cargo.toml",
        "/.git/config",
        "/src/main.rs",
        "/Cargo.toml",
        "/%00",
        "/app.js%00.png",
        "/....//Cargo.toml",
        "/api/v1/../../Cargo.toml",
        "/api/v1/export/../../../etc/passwd",
    ] {
        cases.push(Case {
            method: "GET",
            path: path.to_owned(),
            content_type: None,
            body: Vec::new(),
        });
    }
    // Abusive acquires.
    for body in [
        json!({"provider": "ibkr", "tokens": 0}),
        json!({"provider": "ibkr", "tokens": -1}),
        json!({"provider": "ibkr", "tokens": 1e9}),
        json!({"provider": "ibkr", "tokens": "1"}),
        json!({"provider": "ibkr", "tokens": 1.5}),
        json!({"provider": "ibkr", "tokens": null}),
        json!({"provider": "ibkr", "tokens": 101}),
        json!({"provider": "ibkr", "wait_ms": -1}),
        json!({"provider": "ibkr", "wait_ms": 1e20}),
        json!({"provider": "ibkr", "wait_ms": "x"}),
        json!({"provider": ""}),
        json!({"provider": "../ibkr"}),
        json!({"provider": "x".repeat(10_000)}),
        json!({"provider": "IBKR"}),
        json!({"provider": ["ibkr"]}),
        json!({"provider": "ibkr", "extra": 1}),
        json!([{"provider": "ibkr"}]),
        json!({}),
    ] {
        cases.push(post("/api/v1/acquire", body.to_string()));
    }
    cases
}

/// The state minus what moves by itself.
fn stable(mut state: Value) -> Value {
    let object = state.as_object_mut().expect("object");
    for key in ["uptime_seconds", "seq", "providers"] {
        object.remove(key);
    }
    for c in state["coordinators"].as_array_mut().expect("array") {
        c.as_object_mut().expect("object").remove("age_seconds");
    }
    state
}

#[tokio::test]
async fn every_hostile_request_is_refused_and_changes_nothing() {
    let service = InProcess::start(&["--relax-after", "0s"]).await;
    let filter = routes(service.ctx.clone());
    let state = || async {
        let response = warp::test::request()
            .path("/api/v1/state")
            .reply(&filter)
            .await;
        stable(serde_json::from_slice(response.body()).expect("state is JSON"))
    };
    // A known state to compare against: SOFT at 6000.
    let setup = warp::test::request()
        .method("POST")
        .path("/feedback")
        .header("content-type", "application/json")
        .body(store_event(6000, "soft", None).to_string())
        .reply(&filter)
        .await;
    assert_eq!(setup.status(), StatusCode::OK);
    let before = state().await;
    let cases = corpus();
    assert!(cases.len() >= 100, "only {} hostile requests", cases.len());
    for case in &cases {
        let mut request = warp::test::request()
            .method(case.method)
            .path(&case.path)
            .body(case.body.clone());
        if let Some(content_type) = case.content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.reply(&filter).await;
        let status = response.status();
        let shown = String::from_utf8_lossy(&case.body[..case.body.len().min(80)]).into_owned();
        assert!(
            status.is_client_error(),
            "{} {} {shown:?} -> {status}",
            case.method,
            case.path
        );
        if case.path.contains("Cargo")
            || case.path.contains("main.rs")
            || case.path.contains("passwd")
            || case.path.contains(".git")
        {
            let body = String::from_utf8_lossy(response.body());
            assert!(
                !body.contains("[package]") && !body.contains("fn main") && !body.contains("root:"),
                "leaked a file for {}",
                case.path
            );
        }
        if case.path != "/api/v1/acquire"
            && !case.path.starts_with("/api/v1/export")
            && status != StatusCode::METHOD_NOT_ALLOWED
        {
            let json: Result<Value, _> = serde_json::from_slice(response.body());
            assert!(
                json.is_ok_and(|j| j["error"].is_string()),
                "{} {}: error is not JSON",
                case.method,
                case.path
            );
        }
    }
    assert_eq!(state().await, before, "a hostile request changed the state");
    // Still alive and still steerable.
    let valid = warp::test::request()
        .method("POST")
        .path("/feedback")
        .header("content-type", "application/json")
        .body(store_event(9500, "hard", None).to_string())
        .reply(&filter)
        .await;
    assert_eq!(valid.status(), StatusCode::OK);
    assert_eq!(state().await["level"], "hard");
    service.stop().await;
}

#[tokio::test]
async fn a_flood_of_new_coordinator_ids_is_capped_and_counted() {
    let service = InProcess::start(&["--max-coordinators", "10"]).await;
    let filter = routes(service.ctx.clone());
    let mut refused = 0;
    for i in 0..500 {
        let event =
            json!({"coordinator_id": format!("flood_{i}"), "queue_size": 100, "capacity": 10000});
        let response = warp::test::request()
            .method("POST")
            .path("/feedback")
            .header("content-type", "application/json")
            .body(event.to_string())
            .reply(&filter)
            .await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        } else {
            assert_eq!(response.status(), StatusCode::OK);
        }
    }
    assert_eq!(refused, 490);
    let metrics = warp::test::request().path("/metrics").reply(&filter).await;
    let text = String::from_utf8_lossy(metrics.body());
    let series = text
        .lines()
        .filter(|l| l.starts_with("mdp_coordinator_queue_depth{"))
        .count();
    assert_eq!(series, 10, "per-coordinator series must stay bounded");
    assert_eq!(
        common::sample(
            &text,
            "mdp_feedback_events_rejected_total{reason=\"too_many_coordinators\"}"
        ),
        Some(490.0)
    );
    service.stop().await;
}
