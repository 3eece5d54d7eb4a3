//! Test helpers of `tests/export.rs`: temporary folders, the external tools (found or
//! skipped, or failed with MDP_REQUIRE_TOOLS=1), and a real Prometheus.

use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::repo;

/// A folder under the system's temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "mdp-export-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temporary folder");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(command: &mut std::process::Command) -> (bool, String) {
    let output = command.output().expect("tool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

pub fn require_tools() -> bool {
    std::env::var("MDP_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// `path` when it exists; otherwise skip (None) or, with MDP_REQUIRE_TOOLS=1, fail.
pub fn tool_at(name: &str, path: PathBuf, install: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    if require_tools() {
        panic!(
            "{name} is required (MDP_REQUIRE_TOOLS=1) but missing at {path:?}; install: {install}"
        );
    }
    eprintln!("SKIPPED: {name} missing at {path:?} (install: {install})");
    None
}

pub fn tools_venv() -> PathBuf {
    std::env::var_os("MDP_TOOLS_VENV").map_or_else(|| repo().join(".venv-tools"), PathBuf::from)
}

pub fn kubernetes_validate() -> Option<PathBuf> {
    let in_venv = tools_venv().join("bin/kubernetes-validate");
    if !in_venv.exists()
        && let Some(on_path) = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("kubernetes-validate"))
                .find(|p| p.is_file())
        })
    {
        return Some(on_path);
    }
    tool_at(
        "kubernetes-validate",
        in_venv,
        "python3 -m venv .venv-tools && .venv-tools/bin/pip install kubernetes-validate==1.37.0",
    )
}

pub fn keda_models() -> Option<PathBuf> {
    let path = std::env::var_os("MDP_KEDA_MODELS").map_or_else(
        || tools_venv().join("node/node_modules/@kubernetes-models/keda"),
        PathBuf::from,
    );
    tool_at(
        "npm @kubernetes-models/keda",
        path,
        "npm install --prefix .venv-tools/node @kubernetes-models/keda@2.0.0",
    )
}

/// One installation Prometheus scrapes: its address, and the `namespace` and `job`
/// labels its series get (as the Prometheus Operator gives a ServiceMonitor's).
pub struct Target<'a> {
    pub addr: SocketAddr,
    pub namespace: &'a str,
    pub job: &'a str,
}

/// A scrape configuration: one scrape job per target, relabelled with its namespace
/// and job (scrape job names must be unique; the `job` label need not be).
pub fn scrape_config(targets: &[Target]) -> String {
    let mut text = String::from(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
    );
    for target in targets {
        text.push_str(&format!(
            "  - job_name: {namespace}-{job}\n    static_configs:\n      - targets: ['{addr}']\n    relabel_configs:\n      - target_label: namespace\n        replacement: {namespace}\n      - target_label: job\n        replacement: {job}\n",
            job = target.job,
            addr = target.addr,
            namespace = target.namespace,
        ));
    }
    text
}

/// A real Prometheus scraping its targets every second, killed on drop.
pub struct Prometheus {
    child: Child,
    pub url: String,
    dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Prometheus {
    pub async fn start(binary: &Path, targets: &[Target<'_>]) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let config = dir.0.join("prometheus.yml");
        std::fs::write(&config, scrape_config(targets)).expect("write config");
        let port = free_port();
        let log = std::fs::File::create(dir.0.join("prometheus.log")).expect("log file");
        let child = std::process::Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = http.get(format!("{}/-/ready", prometheus.url)).send().await
                && r.status().is_success()
            {
                return prometheus;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log =
            std::fs::read_to_string(prometheus.dir.0.join("prometheus.log")).unwrap_or_default();
        panic!("prometheus never became ready:\n{log}");
    }

    /// The values of an instant query's samples.
    pub async fn query(&self, http: &reqwest::Client, expr: &str) -> Vec<f64> {
        self.query_samples(http, expr)
            .await
            .into_iter()
            .map(|(_, value)| value)
            .collect()
    }

    /// An instant query's samples: each one's labels and value.
    pub async fn query_samples(&self, http: &reqwest::Client, expr: &str) -> Vec<(Value, f64)> {
        let encoded: String = expr
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let body: Value = http
            .get(format!("{}/api/v1/query?query={encoded}", self.url))
            .send()
            .await
            .expect("query answers")
            .json()
            .await
            .expect("query json");
        assert_eq!(body["status"], "success", "{expr}: {body}");
        body["data"]["result"]
            .as_array()
            .expect("vector result")
            .iter()
            .map(|s| {
                let value = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .expect("sample value");
                (s["metric"].clone(), value)
            })
            .collect()
    }
}
