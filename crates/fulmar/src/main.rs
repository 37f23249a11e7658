//! `fulmar`: the Fulmar MQTT broker and its tools, one binary with subcommands.

mod serve;

use clap::{Parser, Subcommand};

/// Fulmar: an MQTT 3.1 / 3.1.1 / 5.0 broker and tools.
#[derive(Debug, Parser)]
#[command(name = "fulmar", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker (default: 127.0.0.1:1883, anonymous access, in memory).
    Serve(serve::ServeArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args),
    }
}
