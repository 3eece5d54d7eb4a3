//! The command line: composes the subcommands' own option structs (each lives
//! with its subcommand, nothing below the entry imports this module); every flag
//! also reads an `MDP_*` variable.

use crate::options::ServeArgs;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "mdp",
    version,
    about = "Adaptive backpressure, rate tokens and autoscaling signals for market-data pipelines"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter: a level, target=level pairs, or both, e.g. info or mdp=debug,warn. Connection
    /// errors of clients that hang up are hidden unless warp::server is named.
    #[arg(
        long,
        env = "MDP_LOG",
        default_value = "info,warp::server=off",
        global = true,
        help_heading = "Logging"
    )]
    pub log: String,
    /// Log line format.
    #[arg(long, env = "MDP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true,
          help_heading = "Logging")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: feedback intake, control loop, rate tokens, metrics, dashboard.
    Serve(ServeArgs),
    /// Run the service with an embedded store model and synthetic load cycling
    /// through normal, moderate, overload and recovery.
    Demo(crate::demo::DemoArgs),
    /// Run the control loop and a model of KEDA + the HPA in virtual time.
    Simulate(crate::simulate::SimulateArgs),
    /// Write the Grafana dashboard, Kubernetes/KEDA manifests and alert rules.
    Export(crate::export::ExportArgs),
}

/// The `--log` filter: comma-separated `level`, `target=level` or a bare
/// `target` (all its levels), e.g. `info` or `mdp=debug,warn`. A target
/// names a module path and everything below it.
pub fn log_filter(spec: &str) -> Result<tracing_subscriber::filter::Targets, String> {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let mut filter = Targets::new();
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => (Some(target.trim()), level_filter(level.trim())?),
            None => match directive.parse::<LevelFilter>() {
                Ok(level) => (None, level),
                Err(_) => (Some(directive), LevelFilter::TRACE),
            },
        };
        filter = match target {
            None => filter.with_default(level),
            Some(target) if is_log_target(target) => filter.with_target(target, level),
            Some(target) => {
                return Err(format!(
                    "{target:?} is not a level (off, error, warn, info, debug, trace) nor a target (a module path such as mdp::feedback)"
                ));
            }
        };
    }
    Ok(filter)
}

fn level_filter(level: &str) -> Result<tracing_subscriber::filter::LevelFilter, String> {
    level
        .parse()
        .map_err(|_| format!("{level:?} is not a level (off, error, warn, info, debug, trace)"))
}

fn is_log_target(target: &str) -> bool {
    !target.is_empty()
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::time::Duration;

    #[test]
    fn log_filters_take_levels_and_targets() {
        use tracing_subscriber::filter::LevelFilter;
        let filter = log_filter("info,warp::server=off").expect("the default");
        assert_eq!(filter.default_level(), Some(LevelFilter::INFO));
        assert!(filter.would_enable("mdp::feedback", &tracing::Level::INFO));
        assert!(!filter.would_enable("mdp::feedback", &tracing::Level::DEBUG));
        assert!(!filter.would_enable("warp::server", &tracing::Level::ERROR));
        let filter = log_filter(" mdp=debug , WARN, hyper ").expect("valid");
        assert!(filter.would_enable("mdp::feedback::pull", &tracing::Level::DEBUG));
        assert!(filter.would_enable("tokio", &tracing::Level::WARN));
        assert!(!filter.would_enable("tokio", &tracing::Level::INFO));
        assert!(filter.would_enable("hyper::proto", &tracing::Level::TRACE));
        assert!(log_filter("mdp=3,info,").is_ok());
        assert_eq!(log_filter("").expect("empty").default_level(), None);
    }

    #[test]
    fn a_log_filter_that_is_not_one_is_refused() {
        for spec in [
            "nonsense[[[",
            "mdp=verbose",
            "a=b=c",
            "mdp[{x}]=info",
            "a b=info",
            "=info",
        ] {
            let error = log_filter(spec).expect_err(spec);
            assert!(error.contains("is not a level"), "{spec}: {error}");
            assert!(!error.contains('\n'), "{spec}: {error}");
        }
    }

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_parse() {
        let cli = Cli::try_parse_from(["mdp", "serve"]).expect("defaults are valid");
        let Command::Serve(args) = cli.command else {
            panic!("serve parsed as another command")
        };
        assert_eq!(args.http.listen.to_string(), "[::]:8000");
        // No provider given: the config takes ibkr=60/s,burst=100.
        assert!(args.engine.providers.providers.is_empty());
        assert!(args.engine.providers.feedback_enabled);
        assert_eq!(args.engine.control.relax_after, Duration::from_secs(3));
    }

    #[test]
    fn flags_override_defaults() {
        let cli = Cli::try_parse_from([
            "mdp",
            "serve",
            "--listen",
            "127.0.0.1:9",
            "--provider",
            "a=1/s",
            "--provider",
            "b=2/s",
            "--feedback-enabled",
            "false",
            "--relax-after",
            "250ms",
        ])
        .expect("valid");
        let Command::Serve(args) = cli.command else {
            panic!("serve parsed as another command")
        };
        assert_eq!(args.engine.providers.providers, vec!["a=1/s", "b=2/s"]);
        assert!(!args.engine.providers.feedback_enabled);
        assert_eq!(args.engine.control.relax_after, Duration::from_millis(250));
    }

    #[test]
    fn bad_durations_are_refused_by_name() {
        let err =
            Cli::try_parse_from(["mdp", "serve", "--relax-after", "soon"]).expect_err("invalid");
        assert!(err.to_string().contains("--relax-after"), "{err}");
    }

    #[test]
    fn serve_help_is_grouped_under_headings() {
        let mut cli = Cli::command();
        cli.build();
        let serve = cli.find_subcommand_mut("serve").expect("serve exists");
        let help = serve.render_long_help().to_string();
        for heading in [
            "Providers:",
            "Control loop:",
            "Pull mode:",
            "Autoscaling:",
            "Pods and replicas:",
            "HTTP server:",
            "Authentication:",
            "Logging:",
        ] {
            assert!(help.contains(heading), "no {heading} in\n{help}");
        }
    }

    #[test]
    fn simulate_takes_no_network_or_auth_options() {
        let mut cli = Cli::command();
        let simulate = cli
            .find_subcommand_mut("simulate")
            .expect("simulate exists");
        let help = simulate.render_long_help().to_string();
        for flag in [
            "--listen",
            "--auth-token",
            "--max-connections",
            "--idle-timeout",
        ] {
            assert!(!help.contains(flag), "simulate offers {flag}");
        }
        assert!(help.contains("--soft-watermark") && help.contains("--replicas-refresh"));
        let err = Cli::try_parse_from(["mdp", "simulate", "--listen", ":1"]).expect_err("unknown");
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn listen_accepts_a_bare_port_and_ipv6() {
        for (text, addr) in [
            (":9000", "[::]:9000"),
            ("[::]:9001", "[::]:9001"),
            ("[::1]:9", "[::1]:9"),
        ] {
            let cli = Cli::try_parse_from(["mdp", "serve", "--listen", text]).expect(text);
            let Command::Serve(args) = cli.command else {
                panic!("serve parsed as another command")
            };
            assert_eq!(args.http.listen.to_string(), addr);
        }
    }
}
