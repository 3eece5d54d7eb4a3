//! Headless Chromium for tests: `cdp_driver.py` (next to this file, standard
//! library only) drives it over the DevTools protocol on a pipe; this is the
//! Rust end of the driver's one-JSON-line-per-command protocol.
//!
//! Every wait is bounded: the driver bounds each poll and each protocol call,
//! this end bounds each answer, and the driver closes the browser after a
//! deadline whatever happens. Dropping a `Browser` (also while a failing test
//! unwinds) closes the browser and removes its profile.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Extra time this end allows beyond the driver's own bound on a command.
const ANSWER_MARGIN: Duration = Duration::from_secs(20);
/// The driver's last resort: it closes the browser and exits after this long.
const DRIVER_DEADLINE: Duration = Duration::from_secs(180);

pub struct Browser {
    driver: Child,
    commands: Option<ChildStdin>,
    answers: Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    workdir: PathBuf,
    /// The tab the commands go to: the one opened last unless `select`ed.
    tab: u64,
    /// Evaluated when a wait times out, to say what the page showed instead.
    describe: Option<String>,
}

/// What the page did, as the browser saw it.
#[derive(Debug)]
pub struct Report {
    /// Every URL the page requested, in order.
    pub requests: Vec<String>,
    /// Uncaught exceptions, console errors, failed or >= 400 loads.
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

impl Browser {
    /// Starts `chromium` under the driver, run by `python`.
    pub fn launch(python: &Path, chromium: &Path) -> Browser {
        Self::launch_for(python, chromium, DRIVER_DEADLINE)
    }

    /// Like `launch`, for a session that may last up to `deadline`.
    pub fn launch_for(python: &Path, chromium: &Path, deadline: Duration) -> Browser {
        static LAUNCHED: AtomicUsize = AtomicUsize::new(0);
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/cdp_driver.py");
        let workdir = std::env::temp_dir().join(format!(
            "mdp-browser-{}-{}",
            std::process::id(),
            LAUNCHED.fetch_add(1, Ordering::Relaxed)
        ));
        let mut driver = Command::new(python)
            .arg(script)
            .arg("--chromium")
            .arg(chromium)
            .arg("--deadline")
            .arg(deadline.as_secs().to_string())
            .arg("--workdir")
            .arg(&workdir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 starts the browser driver");
        let (tx, answers) = mpsc::channel();
        let out = driver.stdout.take().expect("stdout piped");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let err = driver.stderr.take().expect("stderr piped");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().expect("stderr lock").push(line);
            }
        });
        let commands = driver.stdin.take();
        Browser {
            driver,
            commands,
            answers,
            stderr,
            workdir,
            tab: 0,
            describe: None,
        }
    }

    /// Opens `url` in a new tab of `width` x `height` CSS pixels and waits for
    /// its load event; later commands go to this tab. `mobile` emulates a
    /// phone (touch, device scale 2). Returns the tab's number for `select`.
    pub fn open(&mut self, url: &str, width: u32, height: u32, mobile: bool) -> u64 {
        let timeout = Duration::from_secs(30);
        let scale = if mobile { 2 } else { 1 };
        let tab = self.call(
            json!({"cmd": "open", "url": url, "width": width, "height": height,
                   "mobile": mobile, "scale": scale, "timeout": timeout.as_secs_f64()}),
            timeout,
        );
        self.tab = tab.as_u64().expect("open answers with the tab's number");
        self.tab
    }

    /// Gives the current tab another viewport.
    pub fn resize(&mut self, width: u32, height: u32, mobile: bool) {
        let scale = if mobile { 2 } else { 1 };
        self.call(
            json!({"cmd": "resize", "width": width, "height": height,
                   "mobile": mobile, "scale": scale}),
            Duration::ZERO,
        );
    }

    /// Sends later commands to tab `tab` (a number `open` returned).
    pub fn select(&mut self, tab: u64) {
        self.tab = tab;
    }

    /// Polls the JavaScript expression `expr` until it is truthy, and returns
    /// its value; panics with the last value seen after `timeout`.
    pub fn wait_for(&mut self, expr: &str, timeout: Duration) -> Value {
        self.call(
            json!({"cmd": "wait", "expr": expr, "timeout": timeout.as_secs_f64(),
                   "describe": self.describe}),
            timeout,
        )
    }

    /// A JavaScript expression whose value a timed-out wait reports.
    pub fn describe_with(&mut self, expr: &str) {
        self.describe = Some(expr.to_owned());
    }

    pub fn eval(&mut self, expr: &str) -> Value {
        self.call(json!({"cmd": "eval", "expr": expr}), Duration::ZERO)
    }

    /// Saves the viewport as a PNG.
    pub fn screenshot(&mut self, path: &Path) {
        self.call(
            json!({"cmd": "screenshot", "path": path, "full_page": false}),
            Duration::ZERO,
        );
    }

    pub fn report(&mut self) -> Report {
        let value = self.call(json!({"cmd": "report"}), Duration::ZERO);
        let strings = |key: &str| -> Vec<String> {
            value[key]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| item.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        Report {
            requests: strings("requests"),
            problems: strings("problems"),
            warnings: strings("warnings"),
        }
    }

    /// Sends one command and returns its value; panics with the driver's
    /// error, or when no answer comes within `bound` plus a margin.
    fn call(&mut self, mut command: Value, bound: Duration) -> Value {
        if command["cmd"] != "open" {
            command["page"] = json!(self.tab);
        }
        let name = command["cmd"].as_str().unwrap_or("?").to_owned();
        let line = command.to_string();
        let sent = self
            .commands
            .as_mut()
            .map(|stdin| writeln!(stdin, "{line}").and_then(|()| stdin.flush()));
        if !matches!(sent, Some(Ok(()))) {
            panic!("browser driver is gone ({name}); {}", self.stderr_text());
        }
        let limit = bound + ANSWER_MARGIN;
        let answer = match self.answers.recv_timeout(limit) {
            Ok(answer) => answer,
            Err(RecvTimeoutError::Timeout) => {
                panic!("browser driver gave no answer to {name} within {limit:?}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!(
                    "browser driver exited during {name}; {}",
                    self.stderr_text()
                )
            }
        };
        let answer: Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("browser driver said {answer:?} ({e})"));
        if answer["ok"] != true {
            panic!("browser: {name} failed: {}", answer["error"]);
        }
        answer["value"].clone()
    }

    fn stderr_text(&self) -> String {
        let lines = self.stderr.lock().expect("stderr lock");
        format!("driver stderr: {}", lines.join("\n"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // End of input makes the driver close the browser and exit.
        drop(self.commands.take());
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.driver.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The driver's browser is set to die with it (PR_SET_PDEATHSIG).
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}

/// A JavaScript expression: the trimmed text of the element with `id` ("" when absent).
pub fn text_of(id: &str) -> String {
    format!("((document.getElementById({id:?}) || {{}}).textContent || '').trim()")
}
