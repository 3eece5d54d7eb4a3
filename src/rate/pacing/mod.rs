//! Provider pacing: the limits as providers publish them.
//!
//! A provider has several [`Rule`]s, each with a [`Scope`] (the provider, a
//! class, each key or each fingerprint within a class) and a [`Limit`] (an
//! exact sliding window, a token bucket, a minimum interval, a concurrency
//! cap held by leases). The [`Pacer`] checks every rule a [`Request`] goes
//! through at once, all or nothing, on the time its caller passes in, so
//! tests and the simulator drive it on virtual time.
//!
//! Scaling: the backpressure scale, the replica share and the pushback factor
//! multiply every rate rule (a window admits `count x scale`, at least 1
//! while the scale is above 0; an interval lasts `min / scale`; a bucket
//! runs at `rate x scale`). Concurrency caps take only the replica share:
//! slowing the rate already empties them, and halving a cap would strand
//! long requests already in flight. HARD (scale 0) pauses everything,
//! leases included.

mod engine;
pub mod file;
pub mod profile;
mod pushback;
mod rule;
mod window;

pub use engine::{
    Decision, Held, HoldReason, Impossible, Lease, Pacer, Planned, ProviderStatus, PushbackError,
    Request, RuleStatus, Ticket,
};
pub use pushback::{Pushback, PushbackKind};
pub use rule::{
    DEFAULT_MAX_TRACKED, Limit, ProviderPacing, PushbackPolicy, Rule, RuleError, Scope,
};
pub use window::SlidingWindow;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
