//! Built-in provider profiles: the pacing rules a provider publishes.

use super::rule::{Limit, ProviderPacing, Rule, Scope};
use std::time::Duration;

/// The names `--provider-profile` accepts.
pub const PROFILES: &[&str] = &["ibkr"];

/// How long an IBKR lease lasts when the worker never returns it: a
/// historical request that has not answered in this time has failed.
pub const IBKR_LEASE: Duration = Duration::from_secs(120);

/// The built-in profile `name`, or None when there is no such profile.
pub fn profile(name: &str) -> Option<ProviderPacing> {
    match name {
        "ibkr" => Some(ibkr()),
        _ => None,
    }
}

/// IBKR's TWS API pacing (see docs/pacing.md for where each figure is
/// published): classes `historical` and `market_data`; historical requests
/// name their contract, exchange and tick type as `key`, the whole request as
/// `fingerprint`, and `BID_ASK` as `kind`.
pub fn ibkr() -> ProviderPacing {
    let secs = Duration::from_secs;
    let historical = || Some("historical".to_owned());
    ProviderPacing::new(
        "ibkr",
        vec![
            // "50 messages per second": every request is at least one message.
            Rule::new(
                "messages",
                Scope::Provider,
                Limit::Window {
                    count: 50,
                    window: secs(1),
                },
            ),
            // "No more than 60 historical requests in any 10-minute period";
            // BID_ASK requests count twice.
            Rule::new(
                "historical",
                Scope::Class("historical".into()),
                Limit::Window {
                    count: 60,
                    window: secs(600),
                },
            )
            .weight("BID_ASK", 2),
            // "Making six or more historical data requests for the same
            // Contract, Exchange and Tick Type within two seconds": at most 5.
            Rule::new(
                "same_contract",
                Scope::Key {
                    class: historical(),
                },
                Limit::Window {
                    count: 5,
                    window: secs(2),
                },
            )
            .weight("BID_ASK", 2),
            // "Making identical historical data requests within 15 seconds".
            Rule::new(
                "identical",
                Scope::Fingerprint {
                    class: historical(),
                },
                Limit::Interval { min: secs(15) },
            ),
            // At most 50 simultaneous open historical data requests.
            Rule::new(
                "open_historical",
                Scope::Class("historical".into()),
                Limit::Concurrency {
                    max: 50,
                    lease: IBKR_LEASE,
                },
            ),
            // 100 market data lines by default (more with market data boosters).
            Rule::new(
                "market_data_lines",
                Scope::Class("market_data".into()),
                Limit::Concurrency {
                    max: 100,
                    lease: Duration::from_secs(24 * 3600),
                },
            ),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_is_valid() {
        for name in PROFILES {
            let pacing = profile(name).expect("listed profiles exist");
            pacing.validate().expect("built-in profiles are valid");
        }
        assert!(profile("nope").is_none());
    }
}
