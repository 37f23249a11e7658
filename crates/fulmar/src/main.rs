//! `fulmar`: the Fulmar MQTT broker and its tools, one binary with subcommands.

mod bench;
mod broker_args;
mod chat;
mod passwd;
mod pub_cmd;
mod serve;
mod serve_security;
mod sub_cmd;
mod tls_args;

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
    /// Run the broker (default: MQTT on 127.0.0.1:1883, WebSocket and chat page on
    /// 127.0.0.1:8083, anonymous access, in memory).
    Serve(serve::ServeArgs),
    /// Publish a message, like mosquitto_pub (-h host, -t topic, -m message, ...; --help).
    Pub(pub_cmd::PubArgs),
    /// Subscribe and print messages, like mosquitto_sub (-h host, -t filter, -v, --json; --help).
    Sub(sub_cmd::SubArgs),
    /// Join a chat room in the terminal: fulmar chat --room NAME --nick NAME.
    Chat(chat::ChatArgs),
    /// Add, update or delete a user in a password file, like mosquitto_passwd
    /// (FILE USER prompts; -b FILE USER PASSWORD; -D FILE USER; -c creates; --scram).
    Passwd(passwd::PasswdArgs),
    /// Load-generate and measure a broker: fulmar bench fanout -S 100 --broker-pid PID (--help).
    Bench(bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Pub(args) => pub_cmd::run(args),
        Command::Sub(args) => sub_cmd::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Passwd(args) => passwd::run(args),
        Command::Bench(args) => bench::run(args),
    }
}
