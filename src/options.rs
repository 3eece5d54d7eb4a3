//! Options of the commands that run the control loop, in the groups `--help` shows.
//!
//! Each group is one struct; a subcommand flattens the groups it uses (`serve` and
//! `demo` all of them, `simulate` only [`EngineArgs`], which has no network or
//! authentication options). Every flag also reads an `MDP_*` variable. Validation
//! into a usable configuration lives in [`crate::config`]. A new option goes into
//! the group it belongs to (or a new group flattened where it is needed).

use crate::autoscale::AutoscaleArgs;
use crate::settings::duration;
use clap::{ArgAction, Args, FromArgMatches};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Default `--listen`: every address, IPv4 and IPv6, port 8000.
pub(crate) const DEFAULT_LISTEN: &str = ":8000";

/// Parses `--listen`: `HOST:PORT`, `[V6]:PORT`, or `:PORT` for every address
/// (`[::]`, which serves IPv4 too).
pub(crate) fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{text:?}: expected :PORT with PORT in 0..=65535"))?;
        return Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
    }
    text.parse().map_err(|_| {
        format!("{text:?}: expected HOST:PORT, [IPV6]:PORT or :PORT (e.g. 127.0.0.1:8000, :8000)")
    })
}

/// The groups' defaults as their definitions give them, without reading the environment.
pub(crate) fn defaults<T: Args + FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("defaults").no_binary_name(true))
        .mut_args(|arg| arg.env(None::<&'static str>));
    let matches = command
        .try_get_matches_from(std::iter::empty::<String>())
        .expect("every option has a default or is optional");
    T::from_arg_matches(&matches).expect("the defaults parse")
}

/// Options of `mdp serve` (and of `mdp demo` and `mdp export`, which run or deploy it).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub budget: BudgetArgs,
}

/// The shared budget: every pod takes a provider's tokens from one bucket in Redis.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Shared budget")]
pub struct BudgetArgs {
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
}

/// What the control loop, the rate tokens and the autoscaling signals run with:
/// everything of `serve` that `simulate` models too.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    #[command(flatten)]
    pub providers: ProviderArgs,
    #[command(flatten)]
    pub control: ControlArgs,
    #[command(flatten)]
    pub pull: PullArgs,
    #[command(flatten, next_help_heading = "Autoscaling")]
    pub autoscale: AutoscaleArgs,
    #[command(flatten)]
    pub pods: PodArgs,
}

/// Providers and which of them store feedback paces.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Providers")]
pub struct ProviderArgs {
    /// Provider as NAME=RATE[/UNIT][,burst=N], one token bucket; repeat the flag (or separate
    /// with ; in the variable). Default: ibkr=60/s,burst=100 when no provider is configured.
    #[arg(long = "provider", env = "MDP_PROVIDERS", value_delimiter = ';')]
    pub providers: Vec<String>,

    /// A provider paced by the rules it publishes, built in: ibkr (IBKR's TWS API limits).
    #[arg(
        long = "provider-profile",
        env = "MDP_PROVIDER_PROFILES",
        value_delimiter = ';'
    )]
    pub profiles: Vec<String>,

    /// A YAML file of providers, each with its pacing rules (see docs/pacing.md).
    #[arg(long, env = "MDP_PROVIDERS_FILE")]
    pub providers_file: Option<std::path::PathBuf>,

    /// Apply store feedback to provider rates (false: accept events, change nothing).
    #[arg(long, env = "MDP_FB_ENABLE_FEEDBACK", default_value_t = true, action = ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub feedback_enabled: bool,

    /// Apply feedback only to this provider (default: every provider).
    #[arg(long, env = "MDP_FB_PROVIDER_NAME")]
    pub feedback_provider: Option<String>,
}

/// Levels, watermarks and rate scales of the control loop.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Control loop")]
pub struct ControlArgs {
    /// Rate scale at level OK.
    #[arg(long, env = "MDP_FB_SCALE_OK", default_value_t = 1.0)]
    pub scale_ok: f64,
    /// Rate scale at level SOFT.
    #[arg(long, env = "MDP_FB_SCALE_SOFT", default_value_t = 0.5)]
    pub scale_soft: f64,
    /// Rate scale at level HARD (0 pauses).
    #[arg(long, env = "MDP_FB_SCALE_HARD", default_value_t = 0.0)]
    pub scale_hard: f64,

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
    /// Rate policy: step (one scale per level: --scale-ok/soft/hard) or
    /// proportional (continuous from the depth and its trend, 0 only at HARD).
    #[arg(long, env = "MDP_POLICY", default_value = "step")]
    pub policy: crate::control::RatePolicy,
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
}

/// Polling the store's metrics (pull mode) and the store's capacity.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Pull mode")]
pub struct PullArgs {
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
}

/// Pods sharing each provider's budget, and how a pod leaves.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Pods and replicas")]
pub struct PodArgs {
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
    pub pod_ip: Option<IpAddr>,
    /// Resolve the peer name from this hosts-format file instead of DNS.
    #[arg(long, env = "MDP_REPLICAS_HOSTS_FILE")]
    pub replicas_hosts_file: Option<PathBuf>,
    /// After SIGTERM/SIGINT, keep serving with /ready at 503 this long so load
    /// balancers stop routing here before the listener closes.
    #[arg(long, env = "MDP_DRAIN_DELAY", default_value = "0s", value_parser = duration)]
    pub drain_delay: Duration,
}

/// The listener and its limits.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "HTTP server")]
pub struct HttpArgs {
    /// Address to listen on: HOST:PORT, [IPV6]:PORT, or :PORT for every IPv4 and IPv6 address.
    #[arg(long, env = "MDP_LISTEN", default_value = DEFAULT_LISTEN, value_parser = listen_addr)]
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "MDP_MAX_BODY", default_value_t = 65_536)]
    pub max_body: u64,
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
    /// Time in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, env = "MDP_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub shutdown_timeout: Duration,
}

/// The bearer token of the write (and optionally read) routes.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Authentication")]
pub struct AuthArgs {
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
    pub auth_token_file: Option<PathBuf>,
    /// Require the token on the read routes too (/metrics and /api/v1/*).
    #[arg(long, env = "MDP_AUTH_READS", default_value_t = false, action = ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub auth_reads: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_a_bare_port_and_ipv6() {
        assert_eq!(listen_addr(":8000"), Ok("[::]:8000".parse().unwrap()));
        assert_eq!(listen_addr("[::]:9"), Ok("[::]:9".parse().unwrap()));
        assert_eq!(
            listen_addr("127.0.0.1:9"),
            Ok("127.0.0.1:9".parse().unwrap())
        );
        assert!(listen_addr(":99999").is_err());
        assert!(listen_addr("bad").unwrap_err().contains(":PORT"));
    }

    #[test]
    fn defaults_come_from_the_definitions_not_the_environment() {
        let http: HttpArgs = defaults();
        assert_eq!(http.listen, listen_addr(DEFAULT_LISTEN).unwrap());
        assert_eq!(http.idle_timeout, Duration::from_secs(60));
        let auth: AuthArgs = defaults();
        assert!(auth.auth_token.is_none() && !auth.auth_reads);
    }
}
