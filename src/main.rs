use clap::Parser;
use firesfu::cli::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut cli = Cli::parse();
    // Before anything else: a SIGTERM from now on is counted, never lost (see the function).
    firesfu::process::listen_for_signals();
    let (component, instance) = match &mut cli.command {
        Command::Broadcast(args) => {
            let id = firesfu::broadcast::instance_id(args);
            args.instance_id = Some(id.clone());
            ("broadcast", id)
        }
        Command::Sidecar(_) => ("sidecar", firesfu::process::host_instance("sidecar")),
        Command::Apikey(_) => ("apikey", firesfu::process::host_instance("apikey")),
        Command::Monitor(args) => {
            let id = firesfu::fleet::monitor::monitor_id(args);
            args.monitor_id = Some(id.clone());
            ("monitor", id)
        }
    };
    let telemetry = firesfu::telemetry::init(&cli.common, component, &instance);
    let result = match cli.command {
        Command::Broadcast(args) => firesfu::broadcast::run(args).await,
        Command::Sidecar(args) => firesfu::sidecar::run(args).await,
        Command::Monitor(args) => firesfu::fleet::monitor::run(args).await,
        Command::Apikey(args) => firesfu::sidecar::apikeys::run(args).await,
    };
    if let Err(e) = &result {
        tracing::error!("{e:#}");
    }
    // Exporters flush over the network: let the runtime drive them while this thread waits.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    if result.is_ok() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
