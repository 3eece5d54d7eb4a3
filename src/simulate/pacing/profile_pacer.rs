//! mdp's own pacing engine (`--provider-profile ibkr`) behind the replay's
//! [`Pacer`] boundary: the schedule the comparison checks as `ibkr_profile`.

use super::replay::{Answer, Pacer};
use super::workload::{Class, Request};
use crate::rate::pacing::{self, Decision};
use std::time::Duration;

/// How often a worker held by a full concurrency cap looks again.
const CAP_POLL: Duration = Duration::from_millis(250);

/// The built-in ibkr profile, paced by the engine the server uses.
pub struct ProfilePacer {
    engine: pacing::Pacer,
}

impl ProfilePacer {
    /// The ibkr profile at full scale on one pod.
    pub fn ibkr() -> ProfilePacer {
        let engine = pacing::Pacer::new(vec![pacing::profile::ibkr()])
            .expect("the built-in ibkr profile is valid");
        ProfilePacer { engine }
    }

    /// How a worker names `request` in its acquire: class, the contract as
    /// key, the whole query as fingerprint, `BID_ASK` as kind (its weight of
    /// two comes from the profile, not from the worker).
    fn acquire_request(request: &Request) -> pacing::Request {
        let class = match request.class {
            Class::Historical => "historical",
            Class::MarketData => "market_data",
            Class::Orders => "orders",
        };
        let mut acquire = pacing::Request::new("ibkr", Some(class));
        if request.class == Class::Historical {
            acquire = acquire
                .key(&request.key())
                .fingerprint(&request.fingerprint())
                .kind(&request.tick_type);
        }
        acquire
    }
}

impl Pacer for ProfilePacer {
    fn acquire(&mut self, now: Duration, request: &Request) -> Answer {
        match self.engine.acquire(&Self::acquire_request(request), now) {
            Decision::Granted { lease } => Answer::Granted {
                lease: lease.map(|l| l.id),
            },
            Decision::Held(held) => {
                // A full concurrency cap frees a slot at the next release, which
                // no clock can tell: the worker looks again shortly (its retry
                // time is only the earliest lease expiry). No known time at all
                // (paused): after a second, as the API advises.
                let wait = held.retry_after().unwrap_or(Duration::from_secs(1));
                let wait = if held.reason == pacing::HoldReason::Cap {
                    wait.min(CAP_POLL)
                } else {
                    wait
                };
                Answer::Retry(wait.max(Duration::from_millis(1)))
            }
            Decision::Impossible(impossible) => Answer::Never(impossible.to_string()),
            Decision::UnknownProvider => Answer::Never("unknown provider ibkr".into()),
        }
    }

    fn release(&mut self, now: Duration, _request: &Request, lease: Option<String>) {
        if let Some(lease) = lease {
            self.engine.release(&lease, now);
        }
    }
}
