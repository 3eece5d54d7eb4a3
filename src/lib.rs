//! mdp: closes the loop between a market-data store's write queue and the
//! rate-limited providers feeding it.
#![forbid(unsafe_code)]

pub mod autoscale;
pub mod level;
pub mod control;
pub mod clock;
pub mod rate;
pub mod feedback;
pub mod telemetry;
pub mod cli;
pub mod config;
pub mod engine;
pub mod http;
pub mod service;
