//! `fulmar serve`: load the configuration, start the broker, stop on Ctrl-C / SIGTERM.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use fulmar_server::config::ListenerConfig;
use fulmar_server::{Config, Server};

use crate::serve_security::SecurityArgs;

/// How long connections get to close when the broker stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Options of `fulmar serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// TCP listener address; repeatable; replaces the listeners of the config file.
    #[arg(long = "listen", value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
    /// MQTT-over-WebSocket listener address (path /mqtt, chat page at /); repeatable;
    /// replaces the websocket listeners of the config file.
    #[arg(long = "listen-ws", value_name = "ADDR:PORT")]
    listen_ws: Vec<SocketAddr>,
    /// Directory of the durable store (sessions, queues, retained messages); replaces
    /// `persistence.data_dir` (default ./fulmar-data).
    #[arg(long = "data-dir", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Keep everything in memory: nothing survives a restart.
    #[arg(long = "no-persistence", conflicts_with = "data_dir")]
    no_persistence: bool,
    #[command(flatten)]
    security: SecurityArgs,
}

/// The WebSocket listener `fulmar serve` runs when given no config file and no listener flag.
const DEFAULT_WEBSOCKET: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8083,
));

/// Runs the broker until a stop signal; the exit code tells scripts whether it started.
pub fn run(args: ServeArgs) -> ExitCode {
    init_logging();
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fulmar: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FULMAR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The configuration to run with. Listeners: with a config file, the file's, and each kind
/// of flag (`--listen`, `--listen-ws`) replaces that kind. Without a file, any listener flag
/// means exactly the listeners named on the command line; no flag at all means the defaults,
/// TCP 127.0.0.1:1883 and WebSocket 127.0.0.1:8083.
fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let listeners = |addrs: &[SocketAddr]| -> Vec<ListenerConfig> {
        addrs
            .iter()
            .map(|&bind| ListenerConfig::new(bind))
            .collect()
    };
    let flags_given = !args.listen.is_empty()
        || !args.listen_ws.is_empty()
        || !args.security.listen_tls.is_empty()
        || !args.security.listen_wss.is_empty();
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None if flags_given => Config {
            listeners: Vec::new(),
            ..Config::default()
        },
        None => Config {
            websocket_listeners: listeners(&[DEFAULT_WEBSOCKET]),
            ..Config::default()
        },
    };
    if !args.listen.is_empty() {
        config.listeners = listeners(&args.listen);
    }
    if !args.listen_ws.is_empty() {
        config.websocket_listeners = listeners(&args.listen_ws);
    }
    if let Some(dir) = &args.data_dir {
        config.persistence.data_dir = dir.clone();
        config.persistence.enabled = true;
    }
    if args.no_persistence {
        config.persistence.enabled = false;
    }
    args.security.apply(&mut config)?;
    Ok(config)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // FULMAR_WORKER_THREADS pins the number of runtime threads (benchmarks run the broker on
    // one core); default: one per core.
    if let Some(threads) = worker_threads_from_env()? {
        builder.worker_threads(threads);
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let server = Server::start(config).await?;
        wait_for_stop_signal(&server, &args).await?;
        tracing::info!("stop signal received; shutting down");
        server.shutdown(SHUTDOWN_GRACE).await;
        Ok(())
    })
}

fn worker_threads_from_env() -> anyhow::Result<Option<usize>> {
    match std::env::var("FULMAR_WORKER_THREADS") {
        Err(_) => Ok(None),
        Ok(value) => match value.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => anyhow::bail!(
                "invalid value {value:?} for FULMAR_WORKER_THREADS: expected a positive integer"
            ),
        },
    }
}

/// Re-reads the config file (when there is one) and applies it with the command-line
/// overrides; returns the errors to report. A bad file changes nothing.
fn reload_config(server: &Server, args: &ServeArgs) -> Vec<String> {
    if args.config.is_none() {
        return Vec::new();
    }
    match load_config(args) {
        Ok(fresh) => {
            for note in server.broker().replace_config(fresh) {
                tracing::warn!("SIGHUP: {note}");
            }
            Vec::new()
        }
        Err(error) => vec![format!("{error:#}")],
    }
}

/// Waits for Ctrl-C or SIGTERM; on SIGHUP reloads the password file, the ACL file and the TLS
/// certificates (a bad file is logged and the old one stays in force).
async fn wait_for_stop_signal(server: &Server, args: &ServeArgs) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    loop {
        tokio::select! {
            result = tokio::signal::ctrl_c() => return result.context("cannot watch Ctrl-C"),
            _ = terminate.recv() => return Ok(()),
            _ = hangup.recv() => {
                let mut errors = server.reload();
                errors.extend(reload_config(server, args));
                if errors.is_empty() {
                    tracing::info!("SIGHUP: configuration, password file, ACL file and TLS certificates reloaded");
                }
                for error in errors {
                    tracing::error!("SIGHUP: reload refused, previous version stays in force: {error}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    /// `fulmar serve` options as parsed from a command line.
    fn args(listen: &[&str], listen_ws: &[&str]) -> ServeArgs {
        let mut argv = vec!["serve"];
        for addr in listen {
            argv.extend(["--listen", addr]);
        }
        for addr in listen_ws {
            argv.extend(["--listen-ws", addr]);
        }
        <Cli as clap::Parser>::parse_from(argv).serve
    }

    fn binds(listeners: &[ListenerConfig]) -> Vec<String> {
        listeners.iter().map(|l| l.bind.to_string()).collect()
    }

    #[test]
    fn no_flags_and_no_file_run_tcp_1883_and_websocket_8083() {
        let config = load_config(&args(&[], &[])).unwrap();
        assert_eq!(binds(&config.listeners), ["127.0.0.1:1883"]);
        assert_eq!(binds(&config.websocket_listeners), ["127.0.0.1:8083"]);
    }

    #[test]
    fn listener_flags_name_exactly_the_listeners_that_run() {
        let config = load_config(&args(&["127.0.0.1:1999"], &[])).unwrap();
        assert_eq!(binds(&config.listeners), ["127.0.0.1:1999"]);
        assert!(config.websocket_listeners.is_empty());
        let config = load_config(&args(&[], &["127.0.0.1:9001"])).unwrap();
        assert!(config.listeners.is_empty());
        assert_eq!(binds(&config.websocket_listeners), ["127.0.0.1:9001"]);
    }
}
