//! The real binary on a free loopback port: the seed loop over real sockets,
//! promtool over a live scrape, configuration refusal and graceful shutdown.

mod common;

use common::{MdpProcess, eventually, require_tool, sample, store_event};
use serde_json::{Value, json};
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client builds")
}

async fn scrape(mdp: &MdpProcess) -> (String, String) {
    let response = client()
        .get(mdp.url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    (content_type, response.text().await.expect("text"))
}

#[tokio::test]
async fn seed_scenarios_over_real_sockets() {
    let mdp = MdpProcess::serve(&["--relax-after", "0s"], &[]);
    let http = client();
    let (content_type, text) = scrape(&mdp).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(
        sample(&text, "pipeline_rate_scale_factor{provider=\"ibkr\"}"),
        Some(1.0)
    );
    for (depth, level, reason, scale, state) in [
        (500, "ok", None, 1.0, 0.0),
        (6000, "soft", None, 0.5, 1.0),
        (9500, "hard", None, 0.0, 2.0),
        (800, "ok", Some("queue_recovered"), 1.0, 0.0),
    ] {
        let response = http
            .post(mdp.url("/feedback"))
            .json(&store_event(depth, level, reason))
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 200);
        let (_, text) = scrape(&mdp).await;
        assert_eq!(
            sample(&text, "pipeline_rate_scale_factor{provider=\"ibkr\"}"),
            Some(scale)
        );
        assert_eq!(
            sample(&text, "pipeline_backpressure_state{provider=\"ibkr\"}"),
            Some(state)
        );
        assert_eq!(
            sample(
                &text,
                "pipeline_feedback_queue_depth{source=\"store_coordinator\"}"
            ),
            Some(depth as f64)
        );
        let acquire = http
            .post(mdp.url("/api/v1/acquire"))
            .json(&json!({"provider": "ibkr", "wait_ms": 300}))
            .send()
            .await
            .expect("acquire");
        let expected = if level == "hard" { 429 } else { 200 };
        assert_eq!(acquire.status(), expected, "acquire at {level}");
        if level == "hard" {
            assert!(acquire.headers().contains_key("retry-after"));
        }
    }
}

#[tokio::test]
async fn promtool_finds_nothing_to_report_in_a_live_scrape() {
    let Some(promtool) = require_tool("promtool") else {
        return;
    };
    let mdp = MdpProcess::serve(&["--relax-after", "0s"], &[]);
    let http = client();
    // Exercise every family so histograms and labelled series have samples.
    for event in [
        store_event(6000, "soft", None),
        store_event(9500, "hard", None),
    ] {
        http.post(mdp.url("/feedback"))
            .json(&event)
            .send()
            .await
            .expect("post");
    }
    http.post(mdp.url("/api/v1/acquire"))
        .json(&json!({"provider": "ibkr"}))
        .send()
        .await
        .expect("acquire");
    let (_, text) = scrape(&mdp).await;
    let mut check = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write scrape");
    let output = check.wait_with_output().expect("promtool finishes");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool failed: {report}");
    assert_eq!(report.trim(), "", "promtool reported problems");
}

#[tokio::test]
async fn compatible_environment_variables_are_honoured() {
    let mdp = MdpProcess::serve(
        &["--relax-after", "0s"],
        &[
            ("MDP_PROVIDERS", "ibkr=60/s,burst=100;polygon=5/s"),
            ("MDP_FB_PROVIDER_NAME", "ibkr"),
            ("MDP_FB_SCALE_SOFT", "0.25"),
        ],
    );
    client()
        .post(mdp.url("/feedback"))
        .json(&store_event(6000, "soft", None))
        .send()
        .await
        .expect("post");
    let (_, text) = scrape(&mdp).await;
    assert_eq!(
        sample(&text, "pipeline_rate_scale_factor{provider=\"ibkr\"}"),
        Some(0.25)
    );
    assert_eq!(
        sample(&text, "pipeline_rate_scale_factor{provider=\"polygon\"}"),
        Some(1.0)
    );
}

#[test]
fn invalid_configuration_is_refused_with_one_line() {
    for (args, env, option) in [
        (vec!["serve", "--scale-soft", "2"], vec![], "--scale-soft"),
        (
            vec!["serve"],
            vec![("MDP_FB_SCALE_HARD", "-1")],
            "--scale-hard",
        ),
        (
            vec!["serve", "--soft-watermark", "0.95"],
            vec![],
            "--soft-watermark",
        ),
        (
            vec!["serve", "--provider", "ibkr=fast"],
            vec![],
            "--provider",
        ),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mdp"))
            .args(&args)
            .envs(env)
            .output()
            .expect("runs");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line expected: {stderr}");
        assert!(
            lines[0].starts_with(&format!("mdp: invalid {option}:")),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn sigterm_turns_ready_off_finishes_in_flight_and_exits_zero() {
    // One token every 3 s: the second acquire waits well past the 1 s drain, so
    // it is still in flight when the listener closes.
    let mut mdp = MdpProcess::serve(
        &["--drain-delay", "1s", "--provider", "slow=20/m,burst=1"],
        &[],
    );
    let http = client();
    assert_eq!(
        http.get(mdp.url("/ready"))
            .send()
            .await
            .expect("ready")
            .status(),
        200
    );
    // Empty the bucket, then start a request that waits for the next token.
    http.post(mdp.url("/api/v1/acquire"))
        .json(&json!({"provider": "slow"}))
        .send()
        .await
        .expect("drain");
    let waiting = tokio::spawn({
        let http = http.clone();
        let url = mdp.url("/api/v1/acquire");
        async move {
            http.post(url)
                .json(&json!({"provider": "slow", "wait_ms": 10_000}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    let state_url = mdp.url("/api/v1/state");
    let inside = eventually(Duration::from_secs(10), || async {
        match http.get(&state_url).send().await {
            Ok(r) => r
                .json::<Value>()
                .await
                .is_ok_and(|state| state["providers"][0]["waiting"] == 1),
            Err(_) => false,
        }
    })
    .await;
    assert!(inside, "the second acquire never showed as waiting");
    mdp.terminate();
    assert!(
        !waiting.is_finished(),
        "the acquire finished before SIGTERM; nothing was in flight"
    );
    let ready_url = mdp.url("/ready");
    let saw_503 = common::answers_within(&http, &ready_url, 503, Duration::from_secs(10)).await;
    assert!(saw_503, "/ready never answered 503 during shutdown");
    assert_eq!(
        waiting
            .await
            .expect("joined")
            .expect("in-flight request finished"),
        200
    );
    let status = mdp
        .wait_exit(Duration::from_secs(10))
        .expect("exits within the grace period");
    assert!(status.success(), "exit status {status:?}");
    assert!(mdp.log_text().contains("shutting down"));
}

#[tokio::test]
async fn state_document_has_the_documented_fields() {
    let mdp = MdpProcess::serve(&["--relax-after", "0s"], &[]);
    let http = client();
    http.post(mdp.url("/feedback"))
        .json(&store_event(6000, "soft", None))
        .send()
        .await
        .expect("post");
    let state: Value = http
        .get(mdp.url("/api/v1/state"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(state["level"], "soft");
    assert_eq!(state["queue_depth"], 6000);
    let provider = &state["providers"][0];
    for key in ["name", "base_rate", "burst", "scale", "effective_rate"] {
        assert!(
            !provider[key].is_null(),
            "providers[].{key} missing: {provider}"
        );
    }
    let coordinator = &state["coordinators"][0];
    for key in [
        "coordinator_id",
        "queue_size",
        "capacity",
        "level",
        "stale",
        "age_seconds",
    ] {
        assert!(
            !coordinator[key].is_null(),
            "coordinators[].{key} missing: {coordinator}"
        );
    }
    assert_eq!(provider["effective_rate"], 30.0);
    assert_eq!(coordinator["stale"], false);
}
