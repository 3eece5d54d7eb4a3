//! Validated configuration: what the service runs with, built from raw arguments.

use crate::autoscale::AutoscaleConfig;
use crate::control::{ControlConfig, ScalePolicy, Watermarks};
use crate::feedback::pull::PullConfig;
use crate::level::Level;
use crate::options::{AuthArgs, BudgetArgs, EngineArgs, HttpArgs, PodArgs, PullArgs, ServeArgs};
use crate::rate::ProviderSpec;
use crate::rate::pacing::{ProviderPacing, profile};
use crate::replicas::ReplicaSource;
use crate::settings::{OptionError, OptionErrors};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// A start-up configuration error: every refused option, each named, on one line.
pub type ConfigError = OptionErrors;

fn refuse(option: &'static str, message: impl ToString) -> OptionError {
    OptionError::new(option, message)
}

/// Connection-level limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionLimits {
    /// Open connections at most; beyond, new ones wait in the listen backlog.
    pub max_connections: usize,
    /// Time a client has to send a request's headers.
    pub header_timeout: Duration,
    /// A connection with no bytes read or written for this long is closed.
    pub idle_timeout: Duration,
}

/// A shared secret that never appears in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token of at least 16 characters, trimmed; None when too short.
    pub fn new(text: &str) -> Option<Token> {
        let text = text.trim();
        (text.len() >= 16 && !text.contains(char::is_whitespace)).then(|| Token(text.to_owned()))
    }

    /// Compares in time independent of where the first difference is.
    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// Limits the HTTP layer enforces.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpLimits {
    pub max_body: u64,
    pub acquire_max_wait: Duration,
}

/// The built-in profiles and the providers file the paced providers came from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PacingSource {
    pub profiles: Vec<String>,
    /// The file's path and text as read at start.
    pub file: Option<(std::path::PathBuf, String)>,
}

/// Everything `mdp serve` runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// Providers with one token bucket each.
    pub providers: Vec<ProviderSpec>,
    /// Providers paced by their published rules (profiles and the providers file).
    pub paced: Vec<ProviderPacing>,
    /// Where the paced providers came from, as given (the export carries them).
    pub pacing_source: PacingSource,
    pub feedback_enabled: bool,
    pub feedback_provider: Option<String>,
    pub control: ControlConfig,
    pub pull: Option<PullConfig>,
    pub store_capacity: u64,
    pub autoscale: AutoscaleConfig,
    pub replicas: ReplicaSource,
    /// A smaller replica count must hold this long before the share grows.
    pub replicas_shrink_hold: Duration,
    /// The shared budget in Redis, when asked for.
    pub budget_redis: Option<crate::rate::SharedConfig>,
    pub http: HttpLimits,
    pub connections: ConnectionLimits,
    pub auth_token: Option<Token>,
    pub auth_reads: bool,
    pub drain_delay: Duration,
    pub shutdown_timeout: Duration,
    /// Events stamped further ahead of the receive time are refused.
    pub max_clock_skew: Duration,
}

impl TryFrom<ServeArgs> for ServeConfig {
    type Error = ConfigError;

    /// Checks every option and reports all the refused ones at once.
    fn try_from(args: ServeArgs) -> Result<Self, ConfigError> {
        let ServeArgs {
            engine,
            http,
            auth,
            budget,
        } = args;
        let EngineArgs {
            providers: provider_args,
            control: c,
            pull: pull_args,
            autoscale: autoscale_args,
            pods,
        } = engine;
        let mut errors = OptionErrors::default();
        let paced = errors.check(paced_providers(&provider_args));
        let has_paced = paced.as_ref().is_some_and(|(p, _)| !p.is_empty());
        let providers = errors.check(parse_providers(&provider_args.providers, has_paced));
        if let (Some(providers), Some((paced, _))) = (&providers, &paced) {
            for spec in providers {
                if paced.iter().any(|p| p.name == spec.name) {
                    errors.refuse(
                        "provider",
                        format!("{:?} is also a paced provider (profile or file)", spec.name),
                    );
                }
            }
            if let Some(name) = &provider_args.feedback_provider
                && !providers.iter().any(|p| &p.name == name)
                && !paced.iter().any(|p| &p.name == name)
            {
                errors.refuse(
                    "feedback-provider",
                    format!("{name:?} is not a configured provider"),
                );
            }
        }
        let watermarks = errors.check(
            Watermarks::try_new(
                c.soft_watermark,
                c.hard_watermark,
                c.hard_release,
                c.soft_release,
            )
            .map_err(|e| refuse(watermark_option(&e), e)),
        );
        let policy = errors.check(
            ScalePolicy::try_new(c.scale_ok, c.scale_soft, c.scale_hard)
                .map_err(|e| refuse(scale_option(&e), e)),
        );
        let stale_level = errors.check(
            c.stale_level
                .parse::<Level>()
                .map_err(|e| refuse("stale-level", e)),
        );
        if stale_level == Some(Level::Ok) {
            errors.refuse("stale-level", "a stale coordinator must never count as ok");
        }
        if c.feedback_ttl.is_some_and(|ttl| ttl.is_zero()) {
            errors.refuse("feedback-ttl", "must be > 0 (omit it to turn the TTL off)");
        }
        if c.max_coordinators == 0 {
            errors.refuse("max-coordinators", "must be >= 1");
        }
        if c.forget_after.is_some_and(|after| after.is_zero()) {
            errors.refuse(
                "forget-after",
                "must be > 0 (leave it unset to never forget)",
            );
        }
        if pull_args.store_capacity == 0 {
            errors.refuse("store-capacity", "must be > 0");
        }
        let pull = match pull_args.store_metrics_url.clone() {
            Some(url) => errors.check(pull_config(&pull_args, url).map(Some)),
            None => Some(None),
        };
        let autoscale = watermarks.and_then(|w| {
            errors.check(autoscale_args.build(pull_args.store_capacity, w.soft_release))
        });
        let replicas = errors.check(replica_source(&pods));
        let connections = errors.check(connection_limits(&http));
        let auth_token = errors.check(auth_token(&auth));
        let budget_redis = errors.check(budget_redis(&budget));
        if auth.auth_reads && matches!(auth_token, Some(None)) {
            errors.refuse("auth-reads", "needs --auth-token or --auth-token-file");
        }
        if http.max_body < 1024 {
            errors.refuse("max-body", "must be at least 1024 bytes");
        }
        let (
            Some(providers),
            Some((paced, pacing_source)),
            Some(watermarks),
            Some(policy),
            Some(stale_level),
            Some(pull),
            Some(autoscale),
            Some(replicas),
            Some(connections),
            Some(auth_token),
            Some(budget_redis),
            true,
        ) = (
            providers,
            paced,
            watermarks,
            policy,
            stale_level,
            pull,
            autoscale,
            replicas,
            connections,
            auth_token,
            budget_redis,
            errors.is_empty(),
        )
        else {
            return Err(errors);
        };
        let control = ControlConfig {
            watermarks,
            policy,
            relax_after: c.relax_after,
            recovery_ramp: c.recovery_ramp,
            push_ttl: c.feedback_ttl,
            pull_ttl: pull_args.pull_ttl,
            pull_max_failures: pull_args.pull_max_failures,
            stale_level,
            max_coordinators: c.max_coordinators,
            forget_after: c.forget_after,
            pulled: pull_args.store_metrics_url.is_some(),
            rate_policy: c.policy,
            proportional: crate::control::ProportionalTuning::for_watermarks(
                watermarks.soft_at,
                watermarks.hard_at,
            ),
        };
        Ok(ServeConfig {
            listen: http.listen,
            providers,
            paced,
            pacing_source,
            feedback_enabled: provider_args.feedback_enabled,
            feedback_provider: provider_args.feedback_provider,
            control,
            pull,
            store_capacity: pull_args.store_capacity,
            autoscale,
            replicas,
            replicas_shrink_hold: pods.replicas_shrink_hold,
            budget_redis,
            http: HttpLimits {
                max_body: http.max_body,
                acquire_max_wait: http.acquire_max_wait,
            },
            connections,
            auth_token,
            auth_reads: auth.auth_reads,
            drain_delay: pods.drain_delay,
            shutdown_timeout: http.shutdown_timeout,
            max_clock_skew: c.max_clock_skew,
        })
    }
}

impl ServeConfig {
    /// The configuration of the engine alone (as `mdp simulate` models it): the
    /// HTTP and authentication settings take their defaults.
    pub fn for_engine(engine: EngineArgs) -> Result<Self, ConfigError> {
        ServeConfig::try_from(ServeArgs {
            engine,
            http: crate::options::defaults(),
            auth: crate::options::defaults(),
            budget: crate::options::defaults(),
        })
    }
}

fn auth_token(args: &AuthArgs) -> Result<Option<Token>, OptionError> {
    let (text, option) = match (&args.auth_token, &args.auth_token_file) {
        (Some(text), _) => (text.clone(), "auth-token"),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                refuse(
                    "auth-token-file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            (text, "auth-token-file")
        }
        (None, None) => return Ok(None),
    };
    // The message never repeats the token.
    Token::new(&text).map(Some).ok_or_else(|| {
        refuse(
            option,
            "the token must be at least 16 characters without spaces",
        )
    })
}

fn budget_redis(args: &BudgetArgs) -> Result<Option<crate::rate::SharedConfig>, OptionError> {
    let Some(url) = &args.budget_redis else {
        return Ok(None);
    };
    if args.budget_redis_timeout.is_zero() {
        return Err(refuse("budget-redis-timeout", "must be > 0"));
    }
    if args.budget_redis_probe.is_zero() {
        return Err(refuse("budget-redis-probe", "must be > 0"));
    }
    if args.budget_redis_prefix.is_empty() {
        return Err(refuse("budget-redis-prefix", "must not be empty"));
    }
    let config = crate::rate::SharedConfig {
        url: url.clone(),
        key_prefix: args.budget_redis_prefix.clone(),
        timeout: args.budget_redis_timeout,
        probe_every: args.budget_redis_probe,
    };
    // The message names the problem, never the URL (it may hold a password).
    config.validate().map_err(|e| refuse("budget-redis", e))?;
    Ok(Some(config))
}

fn connection_limits(args: &HttpArgs) -> Result<ConnectionLimits, OptionError> {
    if args.max_connections == 0 {
        return Err(refuse("max-connections", "must be >= 1"));
    }
    if args.header_timeout.is_zero() {
        return Err(refuse("header-timeout", "must be > 0"));
    }
    if args.idle_timeout <= args.acquire_max_wait {
        return Err(refuse(
            "idle-timeout",
            "must be longer than --acquire-max-wait, or waiting acquires would be cut off",
        ));
    }
    Ok(ConnectionLimits {
        max_connections: args.max_connections,
        header_timeout: args.header_timeout,
        idle_timeout: args.idle_timeout,
    })
}

fn replica_source(args: &PodArgs) -> Result<ReplicaSource, OptionError> {
    match (&args.replicas, &args.replicas_dns) {
        (Some(0), _) => Err(refuse("replicas", "must be >= 1")),
        (Some(n), _) => Ok(ReplicaSource::Static(*n)),
        (None, Some(name)) => {
            let valid = !name.is_empty()
                && name.len() <= 253
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !valid {
                return Err(refuse(
                    "replicas-dns",
                    format!("{name:?} is not a DNS name"),
                ));
            }
            if args.replicas_refresh < Duration::from_millis(100) {
                return Err(refuse("replicas-refresh", "must be at least 100ms"));
            }
            Ok(ReplicaSource::Dns {
                name: name.clone(),
                refresh: args.replicas_refresh,
                pod_ip: args.pod_ip,
                hosts_file: args.replicas_hosts_file.clone(),
            })
        }
        (None, None) => Ok(ReplicaSource::Static(1)),
    }
}

/// The paced providers of `--provider-profile` and `--providers-file`, names unique.
fn paced_providers(
    args: &crate::options::ProviderArgs,
) -> Result<(Vec<ProviderPacing>, PacingSource), OptionError> {
    let mut paced: Vec<ProviderPacing> = Vec::new();
    let mut source = PacingSource::default();
    for name in args
        .profiles
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
    {
        let config = profile::profile(name).ok_or_else(|| {
            refuse(
                "provider-profile",
                format!(
                    "unknown profile {name:?} (known: {})",
                    profile::PROFILES.join(", ")
                ),
            )
        })?;
        if paced.iter().any(|p| p.name == config.name) {
            return Err(refuse(
                "provider-profile",
                format!("{name:?} is given twice"),
            ));
        }
        source.profiles.push(name.to_owned());
        paced.push(config);
    }
    if let Some(path) = &args.providers_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            refuse(
                "providers-file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let configs = crate::rate::pacing::file::parse(&text, &path.display().to_string())
            .map_err(|e| refuse("providers-file", e))?;
        for config in configs {
            if paced.iter().any(|p| p.name == config.name) {
                return Err(refuse(
                    "providers-file",
                    format!(
                        "{}: provider {:?} is also given by --provider-profile",
                        path.display(),
                        config.name
                    ),
                ));
            }
            paced.push(config);
        }
        source.file = Some((path.clone(), text));
    }
    Ok((paced, source))
}

fn parse_providers(texts: &[String], has_paced: bool) -> Result<Vec<ProviderSpec>, OptionError> {
    let mut providers: Vec<ProviderSpec> = Vec::new();
    for text in texts.iter().filter(|t| !t.trim().is_empty()) {
        let spec: ProviderSpec = text.parse().map_err(|e| refuse("provider", e))?;
        if providers.iter().any(|p| p.name == spec.name) {
            return Err(refuse(
                "provider",
                format!("{:?} is configured twice", spec.name),
            ));
        }
        providers.push(spec);
    }
    if providers.is_empty() && !has_paced {
        if texts.is_empty() {
            providers.push(ProviderSpec::default());
        } else {
            return Err(refuse("provider", "at least one provider is needed"));
        }
    }
    Ok(providers)
}

fn pull_config(args: &PullArgs, url: String) -> Result<PullConfig, OptionError> {
    let parsed = url::Url::parse(&url).map_err(|e| refuse("store-metrics-url", e))?;
    if parsed.scheme() != "http" {
        return Err(refuse(
            "store-metrics-url",
            "only http:// URLs are supported",
        ));
    }
    if args.pull_interval.is_zero() {
        return Err(refuse("pull-interval", "must be > 0"));
    }
    if args.pull_timeout.is_zero() || args.pull_timeout > args.pull_interval {
        return Err(refuse(
            "pull-timeout",
            "must be > 0 and at most --pull-interval",
        ));
    }
    if args.pull_ttl <= args.pull_interval {
        return Err(refuse("pull-ttl", "must be longer than --pull-interval"));
    }
    if args.pull_max_failures == 0 {
        return Err(refuse("pull-max-failures", "must be >= 1"));
    }
    if args.pull_metric.is_empty() || args.pull_label.is_empty() {
        return Err(refuse(
            "pull-metric",
            "metric and label names must not be empty",
        ));
    }
    Ok(PullConfig {
        url,
        interval: args.pull_interval,
        timeout: args.pull_timeout,
        metric: args.pull_metric.clone(),
        label: args.pull_label.clone(),
        capacity: args.store_capacity,
    })
}

fn watermark_option(error: &crate::control::WatermarkError) -> &'static str {
    match error {
        crate::control::WatermarkError::OutOfRange { name, .. } => name,
        crate::control::WatermarkError::Order { low, .. } => low,
    }
}

fn scale_option(error: &crate::control::ScalePolicyError) -> &'static str {
    match error {
        crate::control::ScalePolicyError::OutOfRange { name, .. } => name,
        crate::control::ScalePolicyError::NotMonotonic { .. } => "scale-soft",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn config(extra: &[&str]) -> Result<ServeConfig, ConfigError> {
        let mut argv = vec!["serve"];
        argv.extend_from_slice(extra);
        ServeConfig::try_from(Serve::try_parse_from(argv).expect("parses").args)
    }

    #[test]
    fn a_profile_replaces_the_default_provider_and_mixes_with_plain_ones() {
        let cfg = config(&["--provider-profile", "ibkr"]).expect("valid");
        assert!(cfg.providers.is_empty(), "{:?}", cfg.providers);
        assert_eq!(cfg.paced, vec![profile::ibkr()]);
        assert_eq!(cfg.pacing_source.profiles, vec!["ibkr"]);
        let cfg =
            config(&["--provider-profile", "ibkr", "--provider", "polygon=5/s"]).expect("valid");
        assert_eq!(cfg.providers.len(), 1);
        assert_eq!(cfg.paced.len(), 1);
        config(&["--provider-profile", "ibkr", "--feedback-provider", "ibkr"])
            .expect("a paced provider can be the one feedback paces");
    }

    #[test]
    fn an_unknown_or_clashing_profile_is_refused_on_one_line() {
        for (argv, expected) in [
            (
                &["--provider-profile", "nope"][..],
                "--provider-profile: unknown profile \"nope\" (known: ibkr)",
            ),
            (
                &["--provider-profile", "ibkr", "--provider", "ibkr=1/s"][..],
                "--provider: \"ibkr\" is also a paced provider (profile or file)",
            ),
            (
                &["--provider-profile", "ibkr;ibkr"][..],
                "--provider-profile: \"ibkr\" is given twice",
            ),
        ] {
            let error = config(argv).expect_err("refused").to_string();
            assert!(error.contains(expected), "{argv:?}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }

    #[test]
    fn defaults_are_valid_and_documented() {
        let cfg = config(&[]).expect("valid");
        assert_eq!(cfg.providers, vec![ProviderSpec::default()]);
        assert_eq!(cfg.control, ControlConfig::default());
        assert!(cfg.pull.is_none());
        assert_eq!(
            cfg.autoscale,
            AutoscaleConfig::default(),
            "derived thresholds equal the documented defaults"
        );
    }

    #[test]
    fn nonsense_is_refused_naming_the_option() {
        let cases: &[(&[&str], &str)] = &[
            (&["--soft-watermark", "0.95"], "--soft-watermark"),
            (&["--hard-watermark", "1.5"], "--hard-watermark"),
            (&["--soft-release", "0.6"], "--soft-release"),
            (&["--scale-soft", "1.5"], "--scale-soft"),
            (&["--scale-hard", "NaN"], "--scale-hard"),
            (&["--scale-ok", "0.2"], "--scale-soft"),
            (&["--provider", "ibkr=0/s"], "--provider"),
            (
                &["--provider", "a=1/s", "--provider", "a=2/s"],
                "--provider",
            ),
            (&["--feedback-provider", "nope"], "--feedback-provider"),
            (&["--stale-level", "ok"], "--stale-level"),
            (&["--stale-level", "meh"], "--stale-level"),
            (&["--feedback-ttl", "0s"], "--feedback-ttl"),
            (&["--store-metrics-url", "not a url"], "--store-metrics-url"),
            (
                &["--store-metrics-url", "http://s/m", "--pull-ttl", "1s"],
                "--pull-ttl",
            ),
            (
                &["--store-metrics-url", "http://s/m", "--store-capacity", "0"],
                "--store-capacity",
            ),
            (&["--max-body", "10"], "--max-body"),
            (&["--replicas", "0"], "--replicas"),
            (&["--idle-timeout", "5s"], "--idle-timeout"),
            (&["--auth-token", "short"], "--auth-token"),
            (
                &["--auth-token-file", "/nonexistent/token"],
                "--auth-token-file",
            ),
            (&["--auth-reads", "true"], "--auth-reads"),
            (&["--max-connections", "0"], "--max-connections"),
            (&["--replicas-dns", "bad name!"], "--replicas-dns"),
        ];
        for (args, option) in cases {
            let err = config(args).expect_err("must be refused");
            let line = err.to_string();
            assert!(
                line.starts_with(&format!("invalid {option}:")),
                "{args:?}: {line}"
            );
            assert!(!line.contains('\n'));
        }
    }

    #[test]
    fn pull_mode_is_configured_from_the_url() {
        let cfg = config(&["--store-metrics-url", "http://127.0.0.1:9/metrics"]).expect("valid");
        let pull = cfg.pull.expect("pull mode on");
        assert_eq!(pull.capacity, 10_000);
        assert_eq!(pull.metric, "mds_coord_queue_depth");
    }

    #[test]
    fn every_invalid_option_is_reported_at_once() {
        let err = config(&[
            "--soft-watermark",
            "0.95",
            "--provider",
            "ibkr=0/s",
            "--max-body",
            "10",
            "--replicas",
            "0",
        ])
        .expect_err("refused");
        assert_eq!(
            err.options(),
            ["provider", "soft-watermark", "replicas", "max-body"]
        );
        let line = err.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(line.matches("invalid --").count(), 4, "{line}");
    }

    #[test]
    fn the_engine_alone_ignores_network_variables() {
        let engine: EngineArgs = crate::options::defaults();
        let cfg = ServeConfig::for_engine(engine).expect("valid");
        assert_eq!(cfg.control, ControlConfig::default());
    }
}
