//! The loopback ceiling for the benchmark harness (`bench/run.sh`): a bare
//! warp server on the same tokio runtime as `mdp`, answering `GET /health`
//! with the same constant body and nothing else.
//!
//! `cargo run --release --example bare_warp -- 127.0.0.1:18080`
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use warp::Filter;

const BODY: &str = r#"{"status":"healthy","service":"market-data-pipeline"}"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".into())
        .parse()?;
    let health = warp::path!("health")
        .and(warp::get())
        .map(|| warp::reply::with_header(BODY, "content-type", "application/json"));
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(warp::serve(health).run(addr));
    Ok(())
}
