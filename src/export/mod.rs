//! Export: the Grafana dashboard, the Kubernetes/KEDA manifests and the alert rules.

use crate::cli::ServeArgs;
use clap::Args;

/// Options of `mdp export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Runs `mdp export`.
pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("mdp export is not available yet")
}
