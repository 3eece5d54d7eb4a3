//! The `mdp` binary: parse the command line, build the configuration, run.
#![forbid(unsafe_code)]

use clap::Parser;
use clap::error::ErrorKind;
use mdp::cli::{Cli, Command, LogFormat};
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A panic anywhere ends the process with status 1, logged (the release
    // build aborts on panic rather than unwinding).
    mdp::service::exit_on_panic();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return clap_error(&error),
    };
    if let Err(message) = init_logging(&cli.log, cli.log_format) {
        eprintln!("mdp: {message}");
        return ExitCode::from(2);
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        // A task that died at run time is a fault (1); anything else is a
        // refused configuration or a failed start (2).
        Err(error) if error.is::<mdp::service::RunError>() => {
            eprintln!("mdp: {error:#}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("mdp: {}", one_line(&error));
            ExitCode::from(2)
        }
    }
}

/// Help and version as clap writes them; any other clap error on one line.
fn clap_error(error: &clap::Error) -> ExitCode {
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2))
        }
        _ => {
            let rendered = error.render().to_string();
            let first = rendered
                .lines()
                .find(|line| !line.trim().is_empty())
                .unwrap_or("invalid command line");
            let message = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("mdp: {message} (see mdp --help)");
            ExitCode::from(2)
        }
    }
}

/// An error and its causes, each said once: a cause whose text its parent
/// already shows is not repeated.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
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

/// Colour only on a terminal, and never when `NO_COLOR` is set (to anything but "").
fn colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

fn init_logging(filter: &str, format: LogFormat) -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let targets =
        mdp::cli::log_filter(filter).map_err(|e| format!("invalid --log {filter:?}: {e}"))?;
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .compact()
            .with_ansi(colour())
            .finish()
            .with(targets)
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_ansi(false)
            .finish()
            .with(targets)
            .init(),
    }
    Ok(())
}
