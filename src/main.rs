//! The `arqonbus` binary: parse the command line, load the configuration, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use arqonbus::config::Config;

/// Exit code for configuration errors (EX_CONFIG from sysexits is 78; the project uses
/// EX_USAGE, 64, for every bad-input start-up failure).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(name = "arqonbus", version, about = "A small, sharp, reliable WebSocket message bus")]
struct Cli {
    /// Configuration file (TOML). Default: ./arqonbus.toml when it exists.
    #[arg(long, short = 'c', global = true, env = "ARQONBUS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

// Parsed once at start-up: the bench options' size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Run a gateway node (the default).
    Serve,
    /// Print the resolved configuration (defaults → file → environment), secrets masked.
    Config,
    /// Run a load test against a server (or the bare reference server it compares with).
    #[cfg(feature = "bench")]
    Bench(arqonbus_bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Cmd::Serve);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("arqonbus: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    #[cfg(feature = "bench")]
    if let Cmd::Bench(args) = command {
        return match runtime.block_on(arqonbus_bench::cli(args)) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("arqonbus bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("arqonbus: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match command {
        Cmd::Config => {
            print!("{}", config.to_toml());
            ExitCode::SUCCESS
        }
        _ => runtime.block_on(serve(config)),
    }
}

async fn serve(mut config: Config) -> ExitCode {
    // The node id is known before start so that traces name the node from the first span.
    let node_id = config.server.node_id.get_or_insert_with(arqonbus::app::default_node_id).clone();
    let tracing = arqonbus::telemetry::start_tracing(&config.telemetry, &node_id);
    arqonbus::telemetry::init_logging(&config.log, tracing.as_ref());
    arqonbus::telemetry::set_metric_channels(&config.telemetry.metric_channels);
    let node = match arqonbus::app::start(config).await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "start-up failed");
            eprintln!("arqonbus: {e}");
            return if e.is_config() { ExitCode::from(EXIT_CONFIG) } else { ExitCode::FAILURE };
        }
    };
    wait_for_signal().await;
    node.shutdown().await;
    if let Some(t) = tracing {
        t.shutdown(std::time::Duration::from_secs(2)).await;
    }
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the node");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
