//! Simulation: the control loop and a model of Prometheus, KEDA and the HPA on virtual time.

use crate::cli::ServeArgs;
use clap::Args;

/// Options of `mdp simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Runs `mdp simulate`.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("mdp simulate is not available yet")
}
