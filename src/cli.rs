//! Raw command-line input (clap); every flag also reads an `MDP_*` variable.
//! Validation into a usable configuration lives in [`crate::config`].

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::time::Duration;

/// Parses a humantime duration such as `15s`, `2m` or `250ms`.
pub fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (expected e.g. 15s, 2m, 250ms)"))
}

#[derive(Debug, Parser)]
#[command(
    name = "mdp",
    version,
    about = "Adaptive backpressure, rate tokens and autoscaling signals for market-data pipelines"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (tracing EnvFilter syntax), e.g. info or mdp=debug. Connection
    /// errors of clients that hang up are hidden unless warp::server is named.
    #[arg(
        long,
        env = "MDP_LOG",
        default_value = "info,warp::server=off",
        global = true
    )]
    pub log: String,
    /// Log line format.
    #[arg(long, env = "MDP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
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

/// Options of `mdp serve` (and of everything that runs the service).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "MDP_LISTEN", default_value = "0.0.0.0:8000")]
    pub listen: SocketAddr,

    /// Provider as NAME=RATE[/UNIT][,burst=N]; repeat the flag (or separate with ; in the variable).
    #[arg(
        long = "provider",
        env = "MDP_PROVIDERS",
        value_delimiter = ';',
        default_value = "ibkr=60/s,burst=100"
    )]
    pub providers: Vec<String>,

    /// Apply store feedback to provider rates (false: accept events, change nothing).
    #[arg(long, env = "MDP_FB_ENABLE_FEEDBACK", default_value_t = true, action = ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub feedback_enabled: bool,

    /// Apply feedback only to this provider (default: every provider).
    #[arg(long, env = "MDP_FB_PROVIDER_NAME")]
    pub feedback_provider: Option<String>,

    /// Rate scale at level OK.
    #[arg(long, env = "MDP_FB_SCALE_OK", default_value_t = 1.0)]
    pub scale_ok: f64,
    /// Rate scale at level SOFT.
    #[arg(long, env = "MDP_FB_SCALE_SOFT", default_value_t = 0.5)]
    pub scale_soft: f64,
    /// Rate scale at level HARD (0 pauses).
    #[arg(long, env = "MDP_FB_SCALE_HARD", default_value_t = 0.0)]
    pub scale_hard: f64,

    /// Rate policy: step (one scale per level: --scale-ok/soft/hard) or
    /// proportional (continuous from the depth and its trend, 0 only at HARD).
    #[arg(long, env = "MDP_POLICY", default_value = "step")]
    pub policy: crate::control::RatePolicy,

    /// OK -> SOFT when depth/capacity reaches this fraction.
    #[arg(long, env = "MDP_SOFT_WATERMARK", default_value_t = 0.5)]
    pub soft_watermark: f64,
    /// OK/SOFT -> HARD when depth/capacity reaches this fraction.
    #[arg(long, env = "MDP_HARD_WATERMARK", default_value_t = 0.9)]
    pub hard_watermark: f64,
    /// HARD -> SOFT when depth/capacity falls below this fraction.
    #[arg(long, env = "MDP_HARD_RELEASE", default_value_t = 0.8)]
    pub hard_release: f64,
    /// SOFT -> OK when depth/capacity falls below this fraction.
    #[arg(long, env = "MDP_SOFT_RELEASE", default_value_t = 0.2)]
    pub soft_release: f64,

    /// A lower level must hold this long before rates relax (damps the store's SOFT/OK flapping).
    #[arg(long, env = "MDP_RELAX_AFTER", default_value = "3s", value_parser = duration)]
    pub relax_after: Duration,
    /// When the scale rises, climb linearly over this time (0s: at once).
    #[arg(long, env = "MDP_RECOVERY_RAMP", default_value = "0s", value_parser = duration)]
    pub recovery_ramp: Duration,
    /// Pushed feedback older than this is stale (default: never; the store is silent when nothing changes).
    #[arg(long, env = "MDP_FEEDBACK_TTL", value_parser = duration)]
    pub feedback_ttl: Option<Duration>,
    /// Level a stale coordinator counts as (never ok).
    #[arg(long, env = "MDP_STALE_LEVEL", default_value = "soft")]
    pub stale_level: String,
    /// Forget a coordinator silent for this long, its level and series with it
    /// (default: never; `DELETE /api/v1/coordinators/{id}` forgets one at once).
    #[arg(long, env = "MDP_FORGET_AFTER", value_parser = duration)]
    pub forget_after: Option<Duration>,
    /// Refuse events stamped further than this ahead of the receive time.
    #[arg(long, env = "MDP_MAX_CLOCK_SKEW", default_value = "60s", value_parser = duration)]
    pub max_clock_skew: Duration,
    /// Most coordinators tracked; events naming more are refused.
    #[arg(long, env = "MDP_MAX_COORDINATORS", default_value_t = 256)]
    pub max_coordinators: usize,

    /// Poll the store's Prometheus endpoint (pull mode), e.g. http://store:8080/metrics.
    #[arg(long, env = "MDP_STORE_METRICS_URL")]
    pub store_metrics_url: Option<String>,
    /// Time between polls of the store.
    #[arg(long, env = "MDP_PULL_INTERVAL", default_value = "5s", value_parser = duration)]
    pub pull_interval: Duration,
    /// Time limit of one poll.
    #[arg(long, env = "MDP_PULL_TIMEOUT", default_value = "2s", value_parser = duration)]
    pub pull_timeout: Duration,
    /// Consecutive failed polls after which pulled coordinators are stale
    /// (default: the first; the depth sample is withdrawn at once either way).
    #[arg(long, env = "MDP_PULL_MAX_FAILURES", default_value_t = 1)]
    pub pull_max_failures: u32,
    /// A pulled coordinator missing from polls for this long is stale.
    #[arg(long, env = "MDP_PULL_TTL", default_value = "30s", value_parser = duration)]
    pub pull_ttl: Duration,
    /// The store's queue capacity: of pulled coordinators (the store does not
    /// export it) and the base of the autoscaling thresholds.
    #[arg(long, env = "MDP_STORE_CAPACITY", default_value_t = 10_000)]
    pub store_capacity: u64,
    /// Gauge holding each coordinator's queue depth in the store's metrics.
    #[arg(long, env = "MDP_PULL_METRIC", default_value = "mds_coord_queue_depth")]
    pub pull_metric: String,
    /// Label of that gauge naming the coordinator.
    #[arg(long, env = "MDP_PULL_LABEL", default_value = "coord_id")]
    pub pull_label: String,

    #[command(flatten)]
    pub autoscale: crate::autoscale::AutoscaleArgs,

    /// Pods sharing each provider's budget, when fixed (each grants 1/N).
    #[arg(long, env = "MDP_REPLICAS", conflicts_with = "replicas_dns")]
    pub replicas: Option<u32>,
    /// Learn the pod count from the addresses of this name (a headless Service).
    #[arg(long, env = "MDP_REPLICAS_DNS")]
    pub replicas_dns: Option<String>,
    /// How often the peer name is resolved again.
    #[arg(long, env = "MDP_REPLICAS_REFRESH", default_value = "5s", value_parser = duration)]
    pub replicas_refresh: Duration,
    /// A smaller pod count must hold this long before the share grows.
    #[arg(long, env = "MDP_REPLICAS_SHRINK_HOLD", default_value = "15s", value_parser = duration)]
    pub replicas_shrink_hold: Duration,
    /// This pod's own address (Kubernetes: status.podIP), to find itself in the answer.
    #[arg(long, env = "MDP_POD_IP")]
    pub pod_ip: Option<std::net::IpAddr>,
    /// Resolve the peer name from this hosts-format file instead of DNS.
    #[arg(long, env = "MDP_REPLICAS_HOSTS_FILE")]
    pub replicas_hosts_file: Option<std::path::PathBuf>,
    /// Keep every provider's bucket in this Redis/Valkey (redis:// or rediss://,
    /// credentials in the URL), shared by all pods; the local share is the fallback.
    #[arg(long, env = "MDP_BUDGET_REDIS", hide_env_values = true)]
    pub budget_redis: Option<String>,
    /// Longest wait for Redis on one acquire before granting the local share instead.
    #[arg(long, env = "MDP_BUDGET_REDIS_TIMEOUT", default_value = "25ms", value_parser = duration)]
    pub budget_redis_timeout: Duration,
    /// How often a pod on the local share checks whether Redis answers again.
    #[arg(long, env = "MDP_BUDGET_REDIS_PROBE", default_value = "1s", value_parser = duration)]
    pub budget_redis_probe: Duration,
    /// Prefix of the bucket keys in Redis (PREFIX:PROVIDER); one per installation.
    #[arg(long, env = "MDP_BUDGET_REDIS_PREFIX", default_value = "mdp:budget")]
    pub budget_redis_prefix: String,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "MDP_MAX_BODY", default_value_t = 65_536)]
    pub max_body: u64,
    /// Bearer token required on POST /feedback and POST /api/v1/acquire.
    #[arg(
        long,
        env = "MDP_AUTH_TOKEN",
        conflicts_with = "auth_token_file",
        hide_env_values = true
    )]
    pub auth_token: Option<String>,
    /// Read the bearer token from this file (e.g. a mounted Kubernetes Secret).
    #[arg(long, env = "MDP_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<std::path::PathBuf>,
    /// Require the token on the read routes too (/metrics and /api/v1/*).
    #[arg(long, env = "MDP_AUTH_READS", default_value_t = false, action = ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub auth_reads: bool,
    /// Open connections at most; more wait in the listen backlog.
    #[arg(long, env = "MDP_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Time a client has to send a request's headers.
    #[arg(long, env = "MDP_HEADER_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub header_timeout: Duration,
    /// A connection with no traffic for this long is closed (must exceed --acquire-max-wait).
    #[arg(long, env = "MDP_IDLE_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub idle_timeout: Duration,
    /// Longest an acquire request may wait for tokens (its wait_ms is capped to this).
    #[arg(long, env = "MDP_ACQUIRE_MAX_WAIT", default_value = "10s", value_parser = duration)]
    pub acquire_max_wait: Duration,
    /// After SIGTERM/SIGINT, keep serving with /ready at 503 this long so load
    /// balancers stop routing here before the listener closes.
    #[arg(long, env = "MDP_DRAIN_DELAY", default_value = "0s", value_parser = duration)]
    pub drain_delay: Duration,
    /// Time in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, env = "MDP_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub shutdown_timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

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
        assert_eq!(args.listen.to_string(), "0.0.0.0:8000");
        assert_eq!(args.providers, vec!["ibkr=60/s,burst=100"]);
        assert!(args.feedback_enabled);
        assert_eq!(args.relax_after, Duration::from_secs(3));
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
        assert_eq!(args.providers, vec!["a=1/s", "b=2/s"]);
        assert!(!args.feedback_enabled);
        assert_eq!(args.relax_after, Duration::from_millis(250));
    }

    #[test]
    fn bad_durations_are_refused_by_name() {
        let err =
            Cli::try_parse_from(["mdp", "serve", "--relax-after", "soon"]).expect_err("invalid");
        assert!(err.to_string().contains("--relax-after"), "{err}");
    }
}
