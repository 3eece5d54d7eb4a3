//! mdp: closes the loop between a market-data store's write queue and the
//! rate-limited providers feeding it.
#![forbid(unsafe_code)]

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
pub mod options;
pub mod rate;
pub mod repeats;
pub mod replicas;
pub mod service;
pub mod settings;
pub mod simulate;
pub mod store_queue;
pub mod telemetry;
