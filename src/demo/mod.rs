//! Demo: the service plus an embedded store model and synthetic provider load.

use crate::cli::ServeArgs;
use clap::Args;

/// Options of `mdp demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Runs `mdp demo` until SIGTERM/SIGINT.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("mdp demo is not available yet")
}
