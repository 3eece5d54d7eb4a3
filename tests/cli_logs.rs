//! The binary's command line and logs: one-line errors with exit 2, every
//! refused option at once, plain logs off a terminal, JSON with a top-level
//! message, causes said once, subcommands that take only their own options.

mod common;

use common::MdpProcess;
use std::process::{Command, Output};
use std::time::Duration;

fn mdp(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mdp"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("MDP_LOG")
        .output()
        .expect("mdp runs")
}

fn refused_in_one_line(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("mdp: "), "{stderr}");
    stderr
}

#[test]
fn an_invalid_log_filter_is_refused() {
    let stderr = refused_in_one_line(&mdp(&["serve", "--log", "nonsense[[["], &[]));
    assert!(stderr.contains("--log"), "{stderr}");
}

#[test]
fn clap_errors_take_one_line() {
    for args in [
        &["serve", "--relax-after", "soon"][..],
        &["serve", "--no-such-flag"],
        &["serve", "--listen", "nowhere"],
        &["simulate", "--listen", ":8000"],
    ] {
        let stderr = refused_in_one_line(&mdp(args, &[]));
        assert!(!stderr.contains("error:"), "{stderr}");
    }
}

#[test]
fn every_refused_option_is_named_at_once() {
    let stderr = refused_in_one_line(&mdp(
        &[
            "serve",
            "--scale-soft",
            "1.5",
            "--max-body",
            "10",
            "--replicas",
            "0",
        ],
        &[],
    ));
    for option in ["--scale-soft", "--max-body", "--replicas"] {
        assert!(stderr.contains(&format!("invalid {option}:")), "{stderr}");
    }
}

#[test]
fn simulate_ignores_the_network_variables() {
    let output = mdp(
        &["simulate", "--scenario-file", "/nonexistent/x.json"],
        &[("MDP_LISTEN", "bad"), ("MDP_AUTH_TOKEN", "short")],
    );
    let stderr = refused_in_one_line(&output);
    assert!(
        stderr.contains("--scenario-file"),
        "only the scenario is refused: {stderr}"
    );
}

#[test]
fn a_taken_port_is_said_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let stderr = refused_in_one_line(&mdp(&["serve", "--listen", &addr], &[]));
    assert_eq!(stderr.matches("in use").count(), 1, "{stderr}");
}

#[test]
fn text_logs_off_a_terminal_have_no_colour() {
    for (i, env) in [&[][..], &[("NO_COLOR", "1")]].iter().enumerate() {
        let path = std::env::temp_dir().join(format!("mdp-text-log-{}-{i}", std::process::id()));
        let file = std::fs::File::create(&path).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_mdp"))
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "text"])
            .envs(env.iter().copied())
            .env("MDP_LOG", "info")
            .stderr(file)
            .spawn()
            .expect("mdp starts");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut log = String::new();
        while std::time::Instant::now() < deadline && !log.contains("mdp ready") {
            std::thread::sleep(Duration::from_millis(20));
            log = std::fs::read_to_string(&path).unwrap_or_default();
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(&path);
        assert!(log.contains("mdp ready"), "{log}");
        assert!(!log.contains('\u{1b}'), "ANSI escapes in {log:?}");
    }
}

#[test]
fn json_logs_carry_the_message_at_the_top() {
    let mut mdp = MdpProcess::serve(&[], &[]);
    mdp.terminate();
    mdp.wait_exit(Duration::from_secs(20)).expect("exits");
    let log = mdp.log_text();
    let ready = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|j| j["message"] == "mdp ready")
        .unwrap_or_else(|| panic!("no top-level message in {log}"));
    assert!(ready.get("fields").is_none(), "{ready}");
    assert!(ready["addr"].is_string(), "{ready}");
}

#[test]
fn help_is_grouped_under_headings() {
    let output = mdp(&["serve", "--help"], &[]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for heading in [
        "Control loop:",
        "HTTP server:",
        "Authentication:",
        "Logging:",
    ] {
        assert!(help.contains(heading), "{heading}");
    }
}
