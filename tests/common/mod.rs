//! Shared test helpers: in-process services, the real binary on a free port,
//! a redis-server of the test's own, and the policy for tests that need an
//! external tool.
#![allow(dead_code)]

use clap::Parser;
use mdp::cli::{Cli, Command};
use mdp::config::ServeConfig;
use mdp::http::Ctx;
use mdp::service::Service;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use warp::http::StatusCode;

pub mod redis;

/// Builds a serve configuration from command-line words after `mdp serve`.
pub fn config(args: &[&str]) -> ServeConfig {
    let mut argv = vec!["mdp", "serve", "--listen", "127.0.0.1:0"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).expect("test arguments parse");
    let Command::Serve(args) = cli.command else {
        unreachable!("built as serve")
    };
    ServeConfig::try_from(args).expect("test configuration is valid")
}

/// A service running inside the test process, on a real loopback socket.
pub struct InProcess {
    pub addr: SocketAddr,
    pub ctx: Ctx,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), mdp::service::RunError>>>,
}

impl InProcess {
    pub async fn start(args: &[&str]) -> InProcess {
        let service = Service::start(config(args)).await.expect("service starts");
        let addr = service.local_addr().expect("bound");
        let ctx = service.ctx().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(service.run(async {
            let _ = stopped.await;
        }));
        let started = InProcess {
            addr,
            ctx,
            stop: Some(stop),
            task: Some(task),
        };
        started.wait_ready().await;
        started
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(self.url("/ready")).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("in-process service never became ready");
    }

    /// Stops the service and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("service task ends cleanly")
                .expect("every task of the service ran until shutdown");
        }
    }
}

/// The real `mdp` binary on a free loopback port, killed on drop.
pub struct MdpProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
    pub stdout: Arc<Mutex<Vec<String>>>,
    /// Ends when the process closes its stdout.
    stdout_reader: Option<std::thread::JoinHandle<()>>,
}

impl MdpProcess {
    /// Runs `mdp serve ARGS` and waits for it to be ready.
    pub fn serve(args: &[&str], env: &[(&str, &str)]) -> MdpProcess {
        let mut argv = vec!["serve", "--listen", "127.0.0.1:0"];
        argv.extend_from_slice(args);
        Self::spawn(&argv, env)
    }

    /// Runs `mdp ARGS` (a serving subcommand) and waits for its ready line.
    pub fn spawn(argv: &[&str], env: &[(&str, &str)]) -> MdpProcess {
        Self::launch(argv, env, false)
    }

    /// Like `spawn`, also collecting what the process prints on stdout.
    pub fn spawn_with_stdout(argv: &[&str], env: &[(&str, &str)]) -> MdpProcess {
        Self::launch(argv, env, true)
    }

    fn launch(argv: &[&str], env: &[(&str, &str)], capture_stdout: bool) -> MdpProcess {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mdp"));
        command
            .args(argv)
            .env("MDP_LOG_FORMAT", "json")
            .env("MDP_LOG", "info")
            .stdin(Stdio::null())
            .stdout(if capture_stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("mdp binary starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stdout_reader = child.stdout.take().map(|out| {
            let sink = stdout.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    sink.lock().expect("stdout lock").push(line);
                }
            })
        });
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(json) = serde_json::from_str::<Value>(&line)
                    && json["message"] == "mdp ready"
                    && let Some(addr) = json["addr"].as_str()
                    && let Ok(addr) = addr.parse::<SocketAddr>()
                {
                    let _ = addr_tx.send(addr);
                }
                sink.lock().expect("log lock").push(line);
            }
        });
        let addr = match addr_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "mdp never said it was ready; log: {:?}",
                    log.lock().expect("log")
                );
            }
        };
        MdpProcess {
            child,
            addr,
            log,
            stdout,
            stdout_reader,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// What the process printed on stdout so far; once it has exited, all of
    /// it (the reader reads to the end of the pipe first).
    pub fn stdout_text(&mut self) -> String {
        if matches!(self.child.try_wait(), Ok(Some(_)))
            && let Some(reader) = self.stdout_reader.take()
        {
            reader.join().expect("stdout reader ends cleanly");
        }
        self.stdout.lock().expect("stdout lock").join("\n")
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }
}

impl Drop for MdpProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of an external tool, or None (test skipped) when it is missing
/// and `MDP_REQUIRE_TOOLS` is not set; with `MDP_REQUIRE_TOOLS=1` a missing
/// tool fails the test.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        if std::env::var("MDP_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
            panic!("{name} is required (MDP_REQUIRE_TOOLS=1) but not installed");
        }
        eprintln!("SKIPPED: {name} is not installed");
    }
    found
}

/// The store's HTTP broadcaster payload.
pub fn store_event(depth: u64, level: &str, reason: Option<&str>) -> Value {
    serde_json::json!({
        "coordinator_id": "store_01",
        "queue_size": depth,
        "capacity": 10000,
        "level": level,
        "reason": reason,
        "utilization": depth as f64 / 10000.0,
    })
}

/// The `/metrics` URL of a loopback port nothing listens on: a store that is
/// never reached.
pub fn closed_url() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/metrics", closed.local_addr().expect("addr"));
    drop(closed);
    url
}

/// The text of a `GET` that must answer.
pub async fn get_text(http: &reqwest::Client, url: &str) -> String {
    http.get(url)
        .send()
        .await
        .expect("GET answers")
        .text()
        .await
        .expect("text body")
}

/// Reads one sample's value from a Prometheus text exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Whether `url` answers `status` within `limit` (polled).
pub async fn answers_within(
    http: &reqwest::Client,
    url: &str,
    status: u16,
    limit: Duration,
) -> bool {
    eventually(limit, || async {
        http.get(url)
            .send()
            .await
            .is_ok_and(|r| r.status() == status)
    })
    .await
}

/// Polls `check` every 10 ms until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
