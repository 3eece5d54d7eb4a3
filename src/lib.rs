//! mdp: closes the loop between a market-data store's write queue and the
//! rate-limited providers feeding it.
#![forbid(unsafe_code)]
// The modules below that are `pub` are what the binary, the integration tests
// and the benches use; the rest, and every item not reachable from here, is
// `pub(crate)`, so the compiler flags what nothing uses.
#![warn(unreachable_pub)]

pub mod autoscale;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod demo;
pub mod engine;
pub mod export;
pub mod feedback;
pub mod http;
pub mod level;
pub(crate) mod options;
pub mod rate;
pub(crate) mod repeats;
pub mod replicas;
pub mod service;
pub(crate) mod settings;
pub mod simulate;
pub(crate) mod store_queue;
pub mod telemetry;
