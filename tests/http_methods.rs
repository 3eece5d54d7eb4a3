//! HTTP habits on a real socket: HEAD wherever GET works, OPTIONS and 405 with
//! `Allow`, the bearer scheme in any case, request metrics under fixed route
//! names, the build information, the documented /health body.

mod common;

use common::{InProcess, sample};
use reqwest::{Method, StatusCode};

const TOKEN: &str = "0123456789abcdef0123";

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test]
async fn head_answers_wherever_get_does_without_a_body() {
    let service = InProcess::start(&[]).await;
    for path in [
        "/health",
        "/ready",
        "/metrics",
        "/api/v1/state",
        "/api/v1/history",
        "/",
        "/app.js",
    ] {
        let get = client().get(service.url(path)).send().await.expect("GET");
        let head = client().head(service.url(path)).send().await.expect("HEAD");
        assert_eq!(head.status(), get.status(), "{path}");
        assert_eq!(head.status(), StatusCode::OK, "{path}");
        assert_eq!(
            head.headers().get("content-type"),
            get.headers().get("content-type"),
            "{path}"
        );
        assert!(head.bytes().await.expect("body").is_empty(), "{path}");
    }
    service.stop().await;
}

#[tokio::test]
async fn options_and_wrong_methods_name_the_allowed_ones() {
    let service = InProcess::start(&[]).await;
    let cases = [
        ("/health", "GET, HEAD, OPTIONS"),
        ("/metrics", "GET, HEAD, OPTIONS"),
        ("/feedback", "POST, OPTIONS"),
        ("/api/v1/acquire", "POST, OPTIONS"),
        ("/api/v1/state", "GET, HEAD, OPTIONS"),
    ];
    for (path, allow) in cases {
        let options = client()
            .request(Method::OPTIONS, service.url(path))
            .send()
            .await
            .expect("OPTIONS");
        assert_eq!(options.status(), StatusCode::NO_CONTENT, "{path}");
        assert_eq!(options.headers()["allow"], allow, "{path}");
        let wrong = if allow.starts_with("POST") {
            Method::GET
        } else {
            Method::DELETE
        };
        let refused = client()
            .request(wrong, service.url(path))
            .send()
            .await
            .expect("wrong method");
        assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(refused.headers()["allow"], allow, "{path}");
        let body: serde_json::Value = refused.json().await.expect("JSON error");
        assert_eq!(body["error"], "method not allowed");
    }
    service.stop().await;
}

#[tokio::test]
async fn health_says_status_then_service() {
    let service = InProcess::start(&[]).await;
    let text = client()
        .get(service.url("/health"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    assert_eq!(
        text,
        r#"{"status":"healthy","service":"market-data-pipeline"}"#
    );
    service.stop().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let service = InProcess::start(&["--auth-token", TOKEN]).await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let response = client()
            .post(service.url("/api/v1/acquire"))
            .header("authorization", format!("{scheme} {TOKEN}"))
            .json(&serde_json::json!({"provider": "ibkr", "tokens": 1}))
            .send()
            .await
            .expect("acquire");
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
    }
    let wrong = client()
        .post(service.url("/api/v1/acquire"))
        .header("authorization", format!("Basic {TOKEN}"))
        .json(&serde_json::json!({"provider": "ibkr", "tokens": 1}))
        .send()
        .await
        .expect("acquire");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    service.stop().await;
}

#[tokio::test]
async fn requests_are_counted_by_route_name_never_by_raw_path() {
    let service = InProcess::start(&[]).await;
    for path in [
        "/health",
        "/health",
        "/no/such/thing",
        "/another-made-up-path",
        "/app.js",
    ] {
        client().get(service.url(path)).send().await.expect("GET");
    }
    client()
        .delete(service.url("/health"))
        .send()
        .await
        .expect("DELETE");
    let text = client()
        .get(service.url("/metrics"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    let series = |s: &str| sample(&text, s).unwrap_or(0.0);
    // The readiness wait of the test helper may have asked /ready too.
    assert_eq!(
        series(r#"mdp_http_requests_total{route="health",status="200"}"#),
        2.0
    );
    assert_eq!(
        series(r#"mdp_http_requests_total{route="health",status="405"}"#),
        1.0
    );
    assert_eq!(
        series(r#"mdp_http_requests_total{route="unmatched",status="404"}"#),
        2.0
    );
    assert_eq!(
        series(r#"mdp_http_requests_total{route="asset",status="200"}"#),
        1.0
    );
    assert_eq!(
        series(r#"mdp_http_request_duration_seconds_count{route="health"}"#),
        3.0
    );
    for line in text.lines().filter(|l| l.starts_with("mdp_http_request")) {
        assert!(
            !line.contains("no/such") && !line.contains("made-up"),
            "{line}"
        );
    }
    let build = text
        .lines()
        .find(|l| l.starts_with("mdp_build_info{"))
        .expect("build info");
    for label in ["version=\"", "commit=\"", "rustc=\""] {
        assert!(build.contains(label), "{build}");
    }
    assert!(!build.contains("rustc=\"\""), "{build}");
    service.stop().await;
}

#[tokio::test]
async fn the_metrics_pass_promtool() {
    let Some(promtool) = common::require_tool("promtool") else {
        return;
    };
    let service = InProcess::start(&[]).await;
    client()
        .get(service.url("/health"))
        .send()
        .await
        .expect("GET");
    let text = client()
        .get(service.url("/metrics"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool ends");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    service.stop().await;
}
