//! `fulmar bench`: an MQTT load generator in the spirit of emqtt-bench, built on `fulmar-proto`.
//!
//! # Map
//! - this file: the command-line options ([`BenchArgs`]) and the entry point [`run`];
//! - `plan.rs`: what each scenario means — which clients exist, what they publish and subscribe;
//! - `wire.rs`: pre-encoded packets (CONNECT, SUBSCRIBE, a PUBLISH template patched in place)
//!   and the fast parse of incoming packets;
//! - `payload.rs`: the payload layout (publisher, sequence, send time) and the process clock;
//! - `track.rs`: per-publisher sequence accounting (lost, duplicated, out of order);
//! - `conn.rs`: one connection as a poll-driven state machine (no task of its own);
//! - `transport.rs`: the stream under a connection: plain TCP, TLS, WebSocket or WSS;
//! - `engine.rs`: worker threads (a current-thread tokio runtime each), groups of connections
//!   driven by one task, the shared control block;
//! - `driver.rs`: the measurement timeline (connect, warm-up, window, drain) and progress line;
//! - `procstat.rs`: CPU time and RSS from `/proc`;
//! - `report.rs`: the summary table and the `--json` object.
//!
//! # Why the engine looks like this
//! The generator must never be what limits a figure. Each PUBLISH is a memcpy of a pre-encoded
//! template plus three patched fields; many packets go out per `write` syscall and many come in
//! per `read`; the clock is read once per read or write batch, not per message; and one task
//! drives a whole group of connections, so a wake-up costs one task poll, not one per socket.
//!
//! # How far it goes (loopback, 2 vCPU machines; BENCHMARKS.md)
//! - Deliveries: one thread took 5.9 M QoS 0 deliveries/s in `fanout -S 100` at 45 % of its
//!   core (Intel Xeon).
//! - Connections: one thread opens 11-14 k connections/s (AMD EPYC) and is saturated doing it
//!   (`conn` says so). On loopback the sending side's core also runs the receiving side's TCP
//!   work, so the generator's core carries both halves of every handshake: ~70-80 µs per
//!   connect, 86 % of it in the kernel, more than the broker spends. `--threads` adds a thread
//!   per free core.

mod conn;
mod driver;
mod engine;
mod payload;
mod plan;
mod procstat;
mod report;
mod track;
mod transport;
mod wire;

use std::net::Ipv4Addr;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::tls_args::TlsArgs;

/// What to measure. See `plan.rs` for the clients, topics and filters of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Open `--connections` clients (at `--connect-rate`) and hold them: connects/s, RSS each.
    Conn,
    /// `-P` publishers only (no subscribers): publish ingest rate.
    Pub,
    /// `-S` subscribers on `--topic` (wildcards allowed), fed by publishers elsewhere
    /// (e.g. another `fulmar bench pub`); tail loss is unknown here.
    Sub,
    /// `-P` publishers on their own topics → 1 subscriber on a `+` wildcard.
    Fanin,
    /// 1 publisher → `-S` subscribers on the same topic.
    Fanout,
    /// `-N` publisher/subscriber pairs, each on its own topic.
    Pairs,
    /// `-S` subscribers holding `--filters` filters each (exact and wildcard, few match),
    /// `-P` publishers: cost per message as the number of subscriptions grows.
    Subs,
    /// `-N` pairs (default 1) at a fixed `--rate` (default 10000/s): the latency distribution.
    Latency,
}

/// Options of `fulmar bench`.
///
/// Counts default per scenario (fanin: 16 publishers; fanout: 100 subscribers; pairs: 50 pairs;
/// subs: 100 subscribers × 100 filters, 10 publishers; conn: 1000 connections).
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Scenario to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Broker host (IPv4 address or name).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker port (of the listener that speaks the chosen transport: TLS, WebSocket, WSS).
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// QoS of publications and subscriptions.
    #[arg(long, short = 'q', default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// MQTT protocol level: 4 (3.1.1) or 5 (5.0).
    #[arg(short = 'V', long = "protocol", default_value_t = 4, value_parser = clap::value_parser!(u8).range(4..=5))]
    pub protocol: u8,
    /// Payload size in bytes (at least 16: publisher, sequence number and send time).
    #[arg(long, short = 's', default_value_t = 64, value_parser = clap::value_parser!(u32).range(16..))]
    pub size: u32,
    /// Messages per second per publisher; 0 = as fast as the window and the socket allow.
    #[arg(long, short = 'r', default_value_t = 0)]
    pub rate: u64,
    /// Length of the measured window in seconds (after `--warmup`).
    #[arg(long, short = 'd', default_value_t = 10.0)]
    pub duration: f64,
    /// Messages per publisher instead of a duration; the window ends with the last delivery.
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Seconds of load before the measured window starts (default 1, or 0 with `--count`).
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Seconds without progress after which the drain gives up waiting for messages.
    #[arg(long, default_value_t = 1.0)]
    pub drain: f64,
    /// Number of publishers (fanin, pub, subs).
    #[arg(short = 'P', long)]
    pub publishers: Option<usize>,
    /// Number of subscribers (fanout, sub, subs).
    #[arg(short = 'S', long)]
    pub subscribers: Option<usize>,
    /// Number of publisher/subscriber pairs (pairs, latency).
    #[arg(short = 'N', long)]
    pub pairs: Option<usize>,
    /// Number of connections (conn).
    #[arg(short = 'c', long)]
    pub connections: Option<usize>,
    /// Filters per subscriber (subs).
    #[arg(long, default_value_t = 100)]
    pub filters: usize,
    /// New connections per second (0 = as fast as the broker accepts).
    #[arg(long, default_value_t = 0)]
    pub connect_rate: u64,
    /// Publisher topic pattern; `%i` is the client index. Subscribers of fanin subscribe to it
    /// with `%i` replaced by `+`; of sub, to it as a filter.
    #[arg(long, short = 't')]
    pub topic: Option<String>,
    /// Deliveries in flight (sent × subscribers − received) above which publishers pause; keeps
    /// an unlimited-rate run measuring what the broker sustains rather than its overload queue
    /// (QoS 0 would otherwise be dropped wholesale and latency measure queueing). 0 = no limit.
    #[arg(long, default_value_t = 20_000)]
    pub max_outstanding: u64,
    /// Unsent bytes each connection may leave in its kernel send buffer (`TCP_NOTSENT_LOWAT`,
    /// Linux); 0 (the default) leaves the kernel's, no limit. With a limit, a publisher that
    /// the broker slows down sends from its own writes, as a device on another machine would.
    /// Without one, megabytes wait in the generator's sockets, and on loopback the kernel
    /// sends them from whichever core reopens the window: the broker's, when it slows its
    /// publishers down (BENCHMARKS.md, session 9).
    #[arg(long, default_value_t = 0)]
    pub tcp_notsent_lowat: u32,
    /// Unacknowledged QoS 1/2 publishes per publisher.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub inflight: u16,
    /// Source addresses to bind, round-robin (e.g. 127.0.0.2,127.0.0.3): past the ~28k
    /// ephemeral ports of one address.
    #[arg(long, value_delimiter = ',')]
    pub bind: Vec<Ipv4Addr>,
    /// Keep-alive in seconds sent in CONNECT (rumqttd refuses 0); PINGREQ every half of it.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u16).range(1..))]
    pub keepalive: u16,
    /// User name for CONNECT.
    #[arg(long, short = 'u')]
    pub username: Option<String>,
    /// Password for CONNECT.
    #[arg(long)]
    pub password: Option<String>,
    /// Worker threads, each with its own single-threaded runtime. Connecting is the costliest
    /// work per client: one thread opens ~12k connections/s on loopback.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: u16,
    /// Connections driven by one task.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub conns_per_task: u16,
    /// Subscribers keep persistent sessions (3.1.1: clean session 0; 5.0: Session Expiry of
    /// an hour), so a broker with persistence stores what it queues for them: QoS 1/2
    /// throughput to persistent sessions. Their sessions outlive the run.
    #[arg(long)]
    pub persistent: bool,
    /// Print one JSON object (see `report.rs`) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Broker process id: report its CPU time per delivered message and its RSS.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Connect over TLS; any of the TLS options below turns it on too. The host is the TLS
    /// server name the broker's certificate must carry (see --insecure).
    #[arg(long)]
    pub tls: bool,
    /// TLS: `--cafile`, `--cert`/`--key`, `--insecure`, `--tls-version` (as `fulmar pub`).
    #[command(flatten)]
    pub tls_args: TlsArgs,
    /// Connect over WebSocket (path /mqtt, subprotocol mqtt); with TLS, secure WebSocket (WSS).
    #[arg(long)]
    pub ws: bool,
}

/// Runs a benchmark; exit code 1 for a setup failure, 2 when the accounting found an error
/// (QoS 1/2 loss, QoS 2 duplicates, dropped connections).
pub fn run(args: BenchArgs) -> ExitCode {
    match driver::run(&args) {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.table());
            }
            if report.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(error) => {
            eprintln!("fulmar bench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
