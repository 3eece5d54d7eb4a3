//! Access control and connection limits, against the real binary.

mod common;

use common::{MdpProcess, store_event};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const TOKEN: &str = "s3cr3t-t0ken-for-tests-0123456789";

#[tokio::test]
async fn the_token_guards_the_steering_routes() {
    let mdp = MdpProcess::serve(&["--relax-after", "0s"], &[("MDP_AUTH_TOKEN", TOKEN)]);
    let http = reqwest::Client::new();
    let event = store_event(9500, "hard", None);
    let anonymous = http
        .post(mdp.url("/feedback"))
        .json(&event)
        .send()
        .await
        .expect("post");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Bearer realm=\"mdp\""
    );
    let wrong = http
        .post(mdp.url("/feedback"))
        .bearer_auth("s3cr3t-t0ken-for-tests-0123456788")
        .json(&event)
        .send()
        .await
        .expect("post");
    assert_eq!(wrong.status(), 401);
    let acquire = http
        .post(mdp.url("/api/v1/acquire"))
        .json(&serde_json::json!({"provider": "ibkr"}))
        .send()
        .await
        .expect("post");
    assert_eq!(acquire.status(), 401);
    // Nothing changed, reads stay open by default.
    let state: serde_json::Value = http
        .get(mdp.url("/api/v1/state"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(state["level"], "ok");
    let right = http
        .post(mdp.url("/feedback"))
        .bearer_auth(TOKEN)
        .json(&event)
        .send()
        .await
        .expect("post");
    assert_eq!(right.status(), 200);
    let metrics = http
        .get(mdp.url("/metrics"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert_eq!(
        common::sample(&metrics, "mdp_http_unauthorized_total{route=\"feedback\"}"),
        Some(2.0)
    );
    assert!(
        !mdp.log_text().contains(TOKEN),
        "the token appeared in the log"
    );
}

#[tokio::test]
async fn reads_can_be_protected_too_and_the_token_can_come_from_a_file() {
    let path = std::env::temp_dir().join(format!("mdp-token-{}", std::process::id()));
    std::fs::write(&path, format!("{TOKEN}\n")).expect("write token");
    let file = path.to_str().expect("utf-8");
    let mdp = MdpProcess::serve(&["--auth-token-file", file, "--auth-reads", "true"], &[]);
    let http = reqwest::Client::new();
    for path in ["/metrics", "/api/v1/state", "/api/v1/history"] {
        assert_eq!(
            http.get(mdp.url(path)).send().await.expect("get").status(),
            401,
            "{path}"
        );
        let allowed = http
            .get(mdp.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("get");
        assert_eq!(allowed.status(), 200, "{path}");
    }
    // Probes stay open for the kubelet.
    assert_eq!(
        http.get(mdp.url("/health"))
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    assert_eq!(
        http.get(mdp.url("/ready"))
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    std::fs::remove_file(&path).ok();
}

#[test]
fn help_never_shows_the_token() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mdp"))
        .args(["serve", "--help"])
        .env("MDP_AUTH_TOKEN", TOKEN)
        .output()
        .expect("runs");
    assert!(output.status.success());
    assert!(!String::from_utf8_lossy(&output.stdout).contains(TOKEN));
}

/// Reads until the server closes the connection or `limit` passes; true if closed.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn stalled_headers_and_idle_connections_are_closed() {
    let mdp = MdpProcess::serve(
        &[
            "--header-timeout",
            "300ms",
            "--idle-timeout",
            "800ms",
            "--acquire-max-wait",
            "200ms",
        ],
        &[],
    );
    // A slowloris: half a request line, then nothing.
    let mut stalled = TcpStream::connect(mdp.addr).expect("connect");
    stalled
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    assert!(
        closed_within(&mut stalled, Duration::from_secs(5)),
        "stalled headers kept the connection"
    );
    // A stalled upload: headers promise a body that never comes.
    let mut upload = TcpStream::connect(mdp.addr).expect("connect");
    upload
        .write_all(b"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"coor")
        .expect("write");
    assert!(
        closed_within(&mut upload, Duration::from_secs(5)),
        "stalled upload kept the connection"
    );
    // An idle keep-alive connection after one request.
    let mut idle = TcpStream::connect(mdp.addr).expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)),
        "idle connection stayed open"
    );
}

#[test]
fn a_head_that_trickles_in_is_cut_at_the_header_timeout() {
    // The idle timeout alone would never close this connection: a byte
    // arrives every 100 ms, well inside it.
    let mdp = MdpProcess::serve(&["--header-timeout", "400ms", "--idle-timeout", "30s"], &[]);
    let mut trickle = TcpStream::connect(mdp.addr).expect("connect");
    let sent = Instant::now();
    // First a whole request on the connection, so the head cut is one of a
    // kept-alive connection's later requests, not only its first.
    trickle
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    trickle
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&answer).contains("healthy") {
        assert!(Instant::now() < deadline, "no answer to the first request");
        match trickle.read(&mut buf) {
            Ok(0) => panic!("closed before answering"),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let started = Instant::now();
    let head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    for byte in head.iter().cycle() {
        if Instant::now() > started + Duration::from_secs(10) {
            break;
        }
        // One byte, then up to 100 ms for the server to hang up.
        if trickle.write_all(&[*byte]).is_err()
            || closed_within(&mut trickle, Duration::from_millis(100))
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "a head trickling in for 10 s kept the connection");
    // The wait for the second head began after the first answer was sent.
    assert!(
        sent.elapsed() >= Duration::from_millis(400),
        "cut before the header timeout: {:?}",
        sent.elapsed()
    );
}

#[tokio::test]
async fn the_connection_cap_holds_new_clients_back() {
    let mdp = MdpProcess::serve(&["--max-connections", "2"], &[]);
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(mdp.addr).expect("connect"))
        .collect();
    // No pause needed: both handshakes are complete, so the kernel queues them
    // ahead of the third and the server accepts them first.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .expect("client");
    assert!(
        http.get(mdp.url("/health")).send().await.is_err(),
        "a third connection was served"
    );
    drop(held);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let response = http
        .get(mdp.url("/health"))
        .send()
        .await
        .expect("served once a slot frees");
    assert_eq!(response.status(), 200);
}
