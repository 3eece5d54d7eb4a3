//! Replica awareness: how many pods share each provider's budget, so that
//! scaling out never multiplies the load on a provider.
//!
//! The conservative rule, applied by [`ReplicaTracker`]:
//! - *Growth applies at once.* More peers means a smaller share, now.
//! - *Shrinking waits.* A smaller set must hold for `shrink_hold` before the
//!   share grows: a pod leaving the DNS answer may still be draining (and
//!   granting) for a while, and answers flap while pods come and go.
//! - *A newcomer assumes the most.* Until this pod has seen itself in the
//!   answer for one refresh (so its peers, refreshing as often, have seen it
//!   too), it counts at least `max_replicas` pods. Peers that have not yet
//!   noticed it are the only source of overshoot, bounded by one share of
//!   `1/max_replicas` for one refresh interval.
//! - *Failures change nothing.* An unanswered lookup keeps the last count.

use crate::repeats::{Report, seconds};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What one lookup of the peer name found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    /// Distinct addresses in the answer.
    pub addresses: u32,
    /// Whether this pod's own address is among them (None: own address unknown).
    pub includes_self: Option<bool>,
}

/// How the replica count is learned.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplicaSource {
    /// A fixed count (`--replicas N`).
    Static(u32),
    /// Count the addresses of a (headless Service) name, re-resolved every `refresh`.
    Dns {
        name: String,
        refresh: Duration,
        pod_ip: Option<IpAddr>,
        /// Resolve from this hosts-format file instead of DNS (tests, bare metal).
        hosts_file: Option<PathBuf>,
    },
}

/// The replica count in force and how it was decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaTracker {
    max_replicas: u32,
    shrink_hold: Duration,
    settle: Duration,
    effective: u32,
    shrink: Option<(u32, Duration)>,
    self_seen_since: Option<Duration>,
    last_observed: Option<u32>,
}

impl ReplicaTracker {
    /// A tracker that starts by assuming `max_replicas` pods.
    pub fn new(max_replicas: u32, shrink_hold: Duration, settle: Duration) -> Self {
        let max_replicas = max_replicas.max(1);
        ReplicaTracker {
            max_replicas,
            shrink_hold,
            settle,
            effective: max_replicas,
            shrink: None,
            self_seen_since: None,
            last_observed: None,
        }
    }

    /// The count each share is computed from.
    pub fn effective(&self) -> u32 {
        self.effective
    }

    /// What the last successful lookup implied, before the safety rules.
    pub fn observed(&self) -> Option<u32> {
        self.last_observed
    }

    /// This pod's share of each provider's budget.
    pub fn share(&self) -> f64 {
        1.0 / f64::from(self.effective)
    }

    /// Applies one lookup (None: it failed) at `now`; returns the count in force.
    pub fn observe(&mut self, resolution: Option<Resolution>, now: Duration) -> u32 {
        let Some(resolution) = resolution else {
            return self.effective;
        };
        let listed = resolution.includes_self.unwrap_or(true);
        let observed = (resolution.addresses + u32::from(!listed)).max(1);
        self.last_observed = Some(observed);
        if listed {
            self.self_seen_since.get_or_insert(now);
        } else {
            self.self_seen_since = None;
        }
        let settled = self
            .self_seen_since
            .is_some_and(|since| now.saturating_sub(since) >= self.settle);
        let candidate = if settled {
            observed
        } else {
            observed.max(self.max_replicas)
        };
        if candidate >= self.effective {
            self.effective = candidate;
            self.shrink = None;
            return self.effective;
        }
        match self.shrink {
            Some((count, since)) if count == candidate => {
                if now.saturating_sub(since) >= self.shrink_hold {
                    self.effective = candidate;
                    self.shrink = None;
                }
            }
            _ => self.shrink = Some((candidate, now)),
        }
        self.effective
    }
}

/// Reads the addresses of `name` from a hosts-format file (`ADDR NAME...`).
pub fn addresses_from_hosts(text: &str, name: &str) -> Vec<IpAddr> {
    let mut found: Vec<IpAddr> = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let addr: IpAddr = fields.next()?.parse().ok()?;
            fields.any(|n| n.eq_ignore_ascii_case(name)).then_some(addr)
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// A failed lookup in one readable line (the resolver's own text carries the
/// Debug form of the query and of the answer's records).
fn lookup_error(name: &str, error: &hickory_resolver::net::NetError) -> String {
    use hickory_resolver::net::NetError;
    if error.is_nx_domain() {
        return format!("{name}: no such name");
    }
    if error.is_no_records_found() {
        return format!("{name}: no addresses");
    }
    if matches!(error, NetError::Timeout) {
        return format!("{name}: the DNS query timed out");
    }
    let text = error.to_string();
    let line = text.lines().next().unwrap_or("lookup failed");
    let short: String = line.chars().take(160).collect();
    format!("{name}: {short}")
}

/// A resolver with the system's DNS settings (`/etc/resolv.conf` and the hosts
/// file), read by mdp itself: the static binary has no NSS modules.
pub fn system_resolver() -> Result<hickory_resolver::TokioResolver, String> {
    hickory_resolver::TokioResolver::builder_tokio()
        .and_then(|builder| builder.build())
        .map_err(|e| e.to_string())
}

/// Resolves the peer name once.
pub async fn resolve(
    name: &str,
    hosts_file: Option<&std::path::Path>,
    resolver: &hickory_resolver::TokioResolver,
) -> Result<Vec<IpAddr>, String> {
    if let Some(path) = hosts_file {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        return Ok(addresses_from_hosts(&text, name));
    }
    let answer = resolver
        .lookup_ip(name)
        .await
        .map_err(|e| lookup_error(name, &e))?;
    let mut found: Vec<IpAddr> = answer.iter().collect();
    found.sort();
    found.dedup();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn seen(addresses: u32, includes_self: bool) -> Option<Resolution> {
        Some(Resolution {
            addresses,
            includes_self: Some(includes_self),
        })
    }

    #[test]
    fn a_newcomer_assumes_the_most_until_it_is_listed_and_settled() {
        let mut tracker = ReplicaTracker::new(10, secs(15), secs(5));
        assert_eq!(tracker.effective(), 10);
        assert_eq!(
            tracker.observe(seen(3, false), secs(0)),
            10,
            "not listed yet"
        );
        assert_eq!(
            tracker.observe(seen(4, true), secs(5)),
            10,
            "listed, not settled"
        );
        // Settled now, but 4 < 10 is a shrink: it waits for the hold.
        assert_eq!(tracker.observe(seen(4, true), secs(10)), 10);
        assert_eq!(tracker.observe(seen(4, true), secs(25)), 4);
        assert!((tracker.share() - 0.25).abs() < 1e-12);
    }

    #[test]
    fn growth_applies_at_once_and_shrinking_waits() {
        let mut tracker = ReplicaTracker::new(10, secs(15), secs(0));
        tracker.observe(seen(2, true), secs(0));
        tracker.observe(seen(2, true), secs(15));
        assert_eq!(tracker.effective(), 2);
        assert_eq!(
            tracker.observe(seen(5, true), secs(16)),
            5,
            "growth is immediate"
        );
        assert_eq!(tracker.observe(seen(3, true), secs(20)), 5);
        assert_eq!(
            tracker.observe(seen(4, true), secs(30)),
            5,
            "a changed answer restarts the hold"
        );
        assert_eq!(tracker.observe(seen(4, true), secs(44)), 5);
        assert_eq!(tracker.observe(seen(4, true), secs(45)), 4);
    }

    #[test]
    fn failures_keep_the_last_count() {
        let mut tracker = ReplicaTracker::new(10, secs(0), secs(0));
        tracker.observe(seen(3, true), secs(0));
        tracker.observe(seen(3, true), secs(1));
        assert_eq!(tracker.effective(), 3);
        assert_eq!(tracker.observe(None, secs(2)), 3);
    }

    #[test]
    fn a_pod_missing_from_its_own_answer_counts_itself() {
        let mut tracker = ReplicaTracker::new(2, secs(0), secs(0));
        assert_eq!(tracker.observe(seen(2, false), secs(0)), 3);
        let unknown_self = Some(Resolution {
            addresses: 0,
            includes_self: None,
        });
        assert_eq!(
            tracker.observe(unknown_self, secs(1)),
            3,
            "never below the last without a hold"
        );
    }

    #[test]
    fn reads_a_hosts_file() {
        let hosts = "127.0.0.1 localhost\n127.0.0.2 peers.local # pod b\n127.0.0.3 peers.local other\n# 127.0.0.9 peers.local\n127.0.0.2 PEERS.local\n";
        let found = addresses_from_hosts(hosts, "peers.local");
        assert_eq!(found.len(), 2);
    }
}

/// The replica count as shown in the state API.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReplicaView {
    /// The count each share is computed from.
    pub count: u32,
    /// What the last lookup implied (before the safety rules).
    pub observed: Option<u32>,
    /// This pod's share of each provider's budget.
    pub share: f64,
    /// `static` or `dns`.
    pub source: &'static str,
    pub name: Option<String>,
    pub lookup_failures: u64,
}

impl ReplicaView {
    pub fn fixed(count: u32) -> Self {
        ReplicaView {
            count,
            observed: Some(count),
            share: 1.0 / f64::from(count.max(1)),
            source: "static",
            name: None,
            lookup_failures: 0,
        }
    }
}

/// How often a peer lookup that keeps failing is said again.
const PEER_WARNING_PERIOD: Duration = Duration::from_secs(60);

/// Keeps the replica count current from a headless Service's addresses.
pub struct DnsWatch {
    pub name: String,
    pub refresh: Duration,
    pub pod_ip: Option<IpAddr>,
    pub hosts_file: Option<PathBuf>,
    pub resolver: hickory_resolver::TokioResolver,
    pub tracker: ReplicaTracker,
}

impl DnsWatch {
    /// The view of the tracker as it stands, after `failures` failed lookups.
    pub fn view(&self, failures: u64) -> ReplicaView {
        ReplicaView {
            count: self.tracker.effective(),
            observed: self.tracker.observed(),
            share: self.tracker.share(),
            source: "dns",
            name: Some(self.name.clone()),
            lookup_failures: failures,
        }
    }

    /// Looks the peers up every `refresh` until shutdown; each new view goes
    /// to `apply` and then to `publish`.
    pub async fn run(
        mut self,
        apply: impl Fn(&ReplicaView) + Send,
        publish: tokio::sync::watch::Sender<ReplicaView>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let clock = crate::clock::Clock::new();
        let mut ticks = tokio::time::interval(self.refresh);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0u64;
        let mut repeats = crate::repeats::Repeats::new(PEER_WARNING_PERIOD);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.changed() => return,
            }
            let before = self.tracker.effective();
            let name = &self.name;
            let resolution = match resolve(name, self.hosts_file.as_deref(), &self.resolver).await {
                Ok(addresses) => {
                    if let Report::Recovered { count, over } = repeats.success(clock.now()) {
                        tracing::info!(%name, "peer lookup works again after {count} failures in {} s", seconds(over));
                    }
                    Some(Resolution {
                        addresses: u32::try_from(addresses.len()).unwrap_or(u32::MAX),
                        includes_self: self.pod_ip.map(|ip| addresses.contains(&ip)),
                    })
                }
                Err(error) => {
                    failures += 1;
                    match repeats.failure(clock.now()) {
                        Report::First => {
                            tracing::warn!(%name, "peer lookup failed, keeping {before} replicas: {error}")
                        }
                        Report::Still { count, over } => {
                            tracing::warn!(%name, "peer lookup still failing: {count} lookups in {} s, keeping {before} replicas, last: {error}", seconds(over))
                        }
                        _ => tracing::debug!(%name, "peer lookup failed: {error}"),
                    }
                    None
                }
            };
            let after = self.tracker.observe(resolution, clock.now());
            if after != before {
                tracing::info!(%name, from = before, to = after, "replica count changed; each pod now grants 1/{after}");
            }
            let current = self.view(failures);
            apply(&current);
            publish.send_replace(current);
        }
    }
}
