use clap::Parser;
use firesfu::cli::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    firesfu::telemetry::init(&cli.common);
    let result = match cli.command {
        Command::Broadcast(args) => firesfu::broadcast::run(args).await,
        Command::Sidecar(args) => firesfu::sidecar::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("firesfu: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
