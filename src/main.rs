//! The `mdp` binary: parse the command line, build the configuration, run.
#![forbid(unsafe_code)]

use clap::Parser;
use mdp::cli::{Cli, Command, LogFormat};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log, cli.log_format);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        // A task that died at run time is a fault (1); anything else is a
        // refused configuration or a failed start (2).
        Err(error) if error.is::<mdp::service::RunError>() => {
            eprintln!("mdp: {error:#}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("mdp: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            let config = mdp::config::ServeConfig::try_from(args)?;
            runtime()?.block_on(async {
                let service = mdp::service::Service::start(config).await?;
                service.run(mdp::service::termination()).await?;
                Ok(())
            })
        }
        Command::Demo(args) => runtime()?.block_on(mdp::demo::run(args)),
        Command::Simulate(args) => mdp::simulate::run(args),
        Command::Export(args) => mdp::export::run(args),
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.compact().init(),
        LogFormat::Json => builder.json().init(),
    }
}
