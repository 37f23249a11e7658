//! The measurement timeline, run on the calling thread while the workers drive connections:
//!
//! ```text
//! setup (connect, subscribe) ─► Run: warm-up ─► window opens ─► window closes (duration)
//!   or all publishers done (count) ─► Stop: drain until every expected message arrived or
//!   nothing arrived for --drain s ─► Done: workers return their stats
//! ```
//!
//! Broker and generator CPU are sampled when the window opens and after the drain; `conn`
//! samples the broker's RSS before connecting and after holding.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::engine::{self, EngineConfig, GroupStats, Phase, Shared};
use super::payload::{now_ns, HEADER_LEN};
use super::plan::Plan;
use super::procstat::{sample, sample_self, ProcSample};
use super::report::{self, Broker, Connect, Generator, Latency, Report};
use super::transport::Transport;
use super::{BenchArgs, Scenario};

/// Generator CPU share (of its threads' cores) from which it reports itself saturated.
const SATURATED_PCT: f64 = 90.0;

/// Prints one progress line per second on stderr, with rates since the previous line.
struct Progress {
    quiet: bool,
    started: Instant,
    last: Instant,
    last_counts: (u64, u64),
}

impl Progress {
    fn new(quiet: bool) -> Self {
        let now = Instant::now();
        Self {
            quiet,
            started: now,
            last: now,
            last_counts: (0, 0),
        }
    }

    /// Sleeps up to `step`, printing a line when a second has passed.
    fn step(&mut self, shared: &Shared, label: &str, step: Duration) {
        std::thread::sleep(step);
        let elapsed = self.last.elapsed();
        if self.quiet || elapsed < Duration::from_secs(1) {
            return;
        }
        let counts = (
            shared.published.load(Relaxed),
            shared.received.load(Relaxed),
        );
        let secs = elapsed.as_secs_f64();
        eprintln!(
            "[{:>5.1}s] {label:<8} pub {:>8}/s  recv {:>8}/s  total recv {}  connected {}",
            self.started.elapsed().as_secs_f64(),
            report::si((counts.0 - self.last_counts.0) as f64 / secs),
            report::si((counts.1 - self.last_counts.1) as f64 / secs),
            counts.1,
            shared.ready.load(Relaxed) - shared.failed.load(Relaxed),
        );
        self.last = Instant::now();
        self.last_counts = counts;
    }

    /// Waits `secs` seconds, printing progress.
    fn wait(&mut self, shared: &Shared, label: &str, secs: f64) {
        let until = Instant::now() + Duration::from_secs_f64(secs.max(0.0));
        while let Some(left) = until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        {
            self.step(shared, label, left.min(Duration::from_millis(50)));
        }
    }
}

fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let mut addrs = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolve {host}"))?;
    addrs.next().with_context(|| format!("{host}: no address"))
}

/// Runs the whole benchmark and builds its report.
pub fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    if (args.size as usize) < HEADER_LEN {
        bail!("--size must be at least {HEADER_LEN}");
    }
    let addr = resolve(&args.host, args.port)?;
    let run_id = format!("{:x}{:x}", std::process::id(), now_ns() & 0xFFFF_FFFF);
    let plan = Plan::build(args, &run_id)?;
    let total = plan.clients.len();
    let broker_pid = args.broker_pid.map(|p| p.to_string());
    let broker_sample = || broker_pid.as_deref().and_then(sample);
    let shared = Arc::new(Shared::new(plan.publishers, args.max_outstanding));
    let config = Arc::new(engine_config(args, addr, &plan)?);
    let transport = config.transport.name();
    let mut progress = Progress::new(args.quiet);
    let before_connect = (Instant::now(), sample_self(), broker_sample());
    shared.setup_start.store(now_ns(), Relaxed);
    let clients = plan.clients.iter().cloned().enumerate().collect();
    let threads = usize::from(args.threads);
    let handles = engine::start(
        clients,
        threads,
        usize::from(args.conns_per_task),
        config,
        shared.clone(),
    )?;
    while shared.ready.load(Relaxed) < total {
        progress.step(&shared, "connect", Duration::from_millis(5));
    }
    let connect = connect_figures(
        total,
        threads,
        before_connect,
        (sample_self(), broker_sample()),
    );
    let finish = |shared: &Shared| -> GroupStats {
        shared.set_phase(Phase::Done);
        let mut stats = handles_join(handles);
        stats.errors.dedup();
        stats
    };
    if shared.failed.load(Relaxed) > 0 {
        let first = shared
            .first_failure
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default();
        let failed = shared.failed.load(Relaxed);
        finish(&shared);
        bail!("{failed} of {total} clients failed to set up; first: {first}");
    }

    let warmup = args
        .warmup
        .unwrap_or(if args.count.is_some() { 0.0 } else { 1.0 });
    let (window_start, self_start, broker_start);
    if args.scenario == Scenario::Conn {
        window_start = now_ns();
        (self_start, broker_start) = (sample_self(), before_connect.2);
        progress.wait(&shared, "hold", args.duration);
    } else {
        shared.set_phase(Phase::Run);
        progress.wait(&shared, "warmup", warmup);
        window_start = now_ns();
        shared.open_window(window_start);
        (self_start, broker_start) = (sample_self(), broker_sample());
        if args.count.is_some() {
            while shared.publishers_done.load(Relaxed) < plan.publishers as u64 {
                progress.step(&shared, "run", Duration::from_millis(5));
            }
        } else {
            progress.wait(&shared, "run", args.duration);
            shared.close_window(now_ns());
        }
        shared.set_phase(Phase::Stop);
        drain(&shared, &plan, args.drain, &mut progress);
    }
    let window_end_now = now_ns();
    let (self_end, broker_end) = (sample_self(), broker_sample());
    let run_started = Some(shared.run_start())
        .filter(|&t| t > 0)
        .unwrap_or(window_start);
    let stats = finish(&shared);

    let expected = plan.publishers_known.then(|| expected(&shared, &plan));
    let timeline = Timeline {
        addr,
        transport,
        connect,
        warmup,
        window_start,
        window_end_now,
        run_started,
        self_cpu: (self_start, self_end),
        broker: (broker_start, broker_end),
        expected,
    };
    Ok(assemble(args, &plan, &stats, timeline))
}

/// What the timeline observed, for [`assemble`].
struct Timeline {
    addr: SocketAddr,
    transport: &'static str,
    connect: Connect,
    warmup: f64,
    window_start: u64,
    /// When the drain (or the `conn` hold) ended.
    window_end_now: u64,
    run_started: u64,
    self_cpu: (Option<ProcSample>, Option<ProcSample>),
    broker: (Option<ProcSample>, Option<ProcSample>),
    expected: Option<u64>,
}

/// Turns the counters and samples into the report (and the accounting errors).
fn assemble(args: &BenchArgs, plan: &Plan, stats: &GroupStats, t: Timeline) -> Report {
    let Timeline {
        addr,
        transport,
        connect,
        warmup,
        window_start,
        window_end_now,
        run_started,
        self_cpu: (self_start, self_end),
        broker: (broker_start, broker_end),
        expected,
    } = t;
    let total = plan.clients.len();
    let threads = usize::from(args.threads);
    let window_end = match (args.scenario, args.count) {
        (Scenario::Conn, _) => window_end_now,
        (_, Some(_)) => stats.last_receive.max(window_start),
        (_, None) => window_start + (args.duration * 1e9) as u64,
    };
    let window_s = (window_end.saturating_sub(window_start)) as f64 / 1e9;
    let run_s = (window_end_now.saturating_sub(run_started)) as f64 / 1e9;
    let per_sec = |n: u64| {
        if window_s > 0.0 {
            n as f64 / window_s
        } else {
            0.0
        }
    };
    let lost = expected.map_or(stats.gap_lost, |e| e.saturating_sub(stats.distinct));

    let wall = (window_end_now.saturating_sub(window_start)) as f64 / 1e9;
    let cpu_pct = 100.0 * cpu_seconds(self_start, self_end) / wall.max(1e-9) / threads as f64;
    let broker_stats = broker_stats(args, stats, total, broker_start.zip(broker_end));

    let mut errors = stats.errors.clone();
    if args.qos > 0 && lost > 0 {
        errors.push(format!("{lost} messages lost at QoS {}", args.qos));
    }
    if args.qos == 2 && stats.duplicates > 0 {
        errors.push(format!("{} duplicates at QoS 2", stats.duplicates));
    }
    Report {
        scenario: format!("{:?}", args.scenario).to_lowercase(),
        broker: addr.to_string(),
        transport,
        protocol: if args.protocol == 5 { "5.0" } else { "3.1.1" },
        qos: args.qos,
        payload_bytes: args.size,
        publishers: plan.publishers,
        subscribers: plan.subscribers,
        subscriptions: plan.subscriptions,
        connections: total,
        threads: args.threads,
        rate_per_publisher: args.rate,
        tcp_notsent_lowat: args.tcp_notsent_lowat,
        warmup_s: if args.scenario == Scenario::Conn {
            0.0
        } else {
            warmup
        },
        window_s,
        connect,
        published: stats.published,
        publish_per_sec: if run_s > 0.0 {
            stats.published as f64 / run_s
        } else {
            0.0
        },
        expected,
        delivered: stats.received,
        delivered_in_window: stats.in_window,
        msgs_per_sec: per_sec(stats.in_window),
        bytes_per_sec: per_sec(stats.bytes_in_window),
        latency_us: match &stats.latency {
            Some(histogram) if !histogram.is_empty() => Latency::of(histogram),
            _ => Latency::default(),
        },
        lost,
        duplicated: stats.duplicates,
        out_of_order: stats.out_of_order,
        foreign: stats.foreign,
        disconnects: stats.disconnects,
        generator: Generator {
            cpu_pct,
            saturated: cpu_pct >= SATURATED_PCT,
        },
        broker_stats,
        errors,
    }
}

/// The per-connection settings from the options. Reads the TLS files here, so an unreadable one
/// fails the run before any connection.
fn engine_config(args: &BenchArgs, addr: SocketAddr, plan: &Plan) -> anyhow::Result<EngineConfig> {
    let transport = Transport {
        tls: args.tls_args.config(args.tls).map_err(anyhow::Error::msg)?,
        ws: args.ws,
        host: args.host.clone(),
        port: args.port,
    };
    Ok(EngineConfig {
        addr,
        bind: args.bind.clone(),
        version: super::wire::version(args.protocol),
        qos: args.qos,
        size: args.size as usize,
        receivers: plan.receivers.clone(),
        rate: args.rate,
        limit: args.count,
        window: args.inflight,
        username: args.username.clone(),
        password: args.password.clone(),
        keepalive: args.keepalive,
        connect_rate: args.connect_rate,
        persistent_subscribers: args.persistent,
        transport,
        notsent_lowat: args.tcp_notsent_lowat,
    })
}

/// The setup phase's figures, from samples (this process, the broker) taken when it began
/// (with its start time) and when every client was ready.
fn connect_figures(
    clients: usize,
    threads: usize,
    (started, self_before, broker_before): (Instant, Option<ProcSample>, Option<ProcSample>),
    (self_after, broker_after): (Option<ProcSample>, Option<ProcSample>),
) -> Connect {
    let seconds = started.elapsed().as_secs_f64();
    let generator_cpu_pct =
        100.0 * cpu_seconds(self_before, self_after) / seconds.max(1e-9) / threads as f64;
    Connect {
        clients,
        seconds,
        per_sec: clients as f64 / seconds.max(1e-9),
        generator_cpu_pct,
        generator_saturated: generator_cpu_pct >= SATURATED_PCT,
        broker_cpu_us_per_client: broker_before
            .zip(broker_after)
            .filter(|_| clients > 0)
            .map(|(a, b)| b.cpu_seconds_since(&a) * 1e6 / clients as f64),
    }
}

/// CPU seconds between two samples of one process (0 without both).
fn cpu_seconds(a: Option<ProcSample>, b: Option<ProcSample>) -> f64 {
    a.zip(b)
        .map(|(a, b)| b.cpu_seconds_since(&a))
        .unwrap_or(0.0)
}

/// Broker CPU per message and RSS, from the two `/proc` samples.
fn broker_stats(
    args: &BenchArgs,
    stats: &GroupStats,
    total: usize,
    samples: Option<(ProcSample, ProcSample)>,
) -> Option<Broker> {
    let (pid, (a, b)) = args.broker_pid.zip(samples)?;
    let cpu = b.cpu_seconds_since(&a);
    let (divisor, per) = if stats.after_window_start > 0 {
        (stats.after_window_start, "delivered")
    } else {
        (stats.published, "published")
    };
    Some(Broker {
        pid,
        cpu_s: cpu,
        cpu_us_per_msg: (divisor > 0).then(|| cpu * 1e6 / divisor as f64),
        per,
        rss_start_bytes: a.rss,
        rss_end_bytes: b.rss,
        rss_per_connection_bytes: (args.scenario == Scenario::Conn && total > 0)
            .then(|| (b.rss as f64 - a.rss as f64) / total as f64),
    })
}

/// Deliveries the subscriptions call for, given what each publisher sent.
fn expected(shared: &Shared, plan: &Plan) -> u64 {
    shared
        .sent
        .iter()
        .zip(&plan.receivers)
        .map(|(sent, r)| sent.load(Relaxed) * r)
        .sum()
}

/// Waits until every expected message has arrived, or nothing has for `quiet_secs`.
fn drain(shared: &Shared, plan: &Plan, quiet_secs: f64, progress: &mut Progress) {
    let quiet = Duration::from_secs_f64(quiet_secs.max(0.0));
    let mut last = (shared.received.load(Relaxed), Instant::now());
    loop {
        progress.step(shared, "drain", Duration::from_millis(5));
        let received = shared.received.load(Relaxed);
        let distinct = shared.distinct.load(Relaxed);
        if plan.publishers_known && distinct >= expected(shared, plan) {
            return;
        }
        if received != last.0 {
            last = (received, Instant::now());
        } else if last.1.elapsed() >= quiet {
            return;
        }
    }
}

fn handles_join(handles: Vec<std::thread::JoinHandle<GroupStats>>) -> GroupStats {
    let mut total: Option<GroupStats> = None;
    for handle in handles {
        match handle.join() {
            Ok(stats) => match total.as_mut() {
                Some(t) => t.merge(&stats),
                None => total = Some(stats),
            },
            Err(_) => eprintln!("fulmar bench: a worker thread panicked"),
        }
    }
    total.unwrap_or_else(GroupStats::empty)
}
