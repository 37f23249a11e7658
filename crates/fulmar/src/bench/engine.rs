//! Worker threads, connection groups and the control block they share with the driver.
//!
//! `--threads` OS threads each run a current-thread tokio runtime. Clients are cut into
//! groups of `--conns-per-task`; one task per group connects its clients one after the other,
//! then drives them all from a single `poll_fn`: a wake-up of any socket polls the group once,
//! and each connection does whatever its readiness allows. The driver (another thread) moves
//! the [`Phase`] forward and wakes every group. Groups with a publisher also poll every
//! [`TICK`] (rate schedules, the flow limit); groups of receivers or idle clients sleep until a
//! socket, the phase or their next PINGREQ wakes them, so thousands of idle connections cost the
//! generator nothing between events.

use std::future::{poll_fn, Future as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::BytesMut;
use fulmar_proto::{Packet, ProtocolVersion};
use hdrhistogram::Histogram;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::Notify;

use super::conn::{Conn, Publisher};
use super::payload::{instant_at, now_ns};
use super::plan::ClientSpec;
use super::transport::Transport;
use super::wire;

/// Longest a group with a publisher sleeps without looking at the phase and the flow limit.
const TICK: Duration = Duration::from_millis(20);
/// Time allowed for one client's CONNECT and SUBSCRIBE round trips.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Filters per SUBSCRIBE packet.
const FILTERS_PER_SUBSCRIBE: usize = 16;
/// Error messages kept per group.
const MAX_ERRORS: usize = 4;

/// Where the run is; only the driver moves it forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    /// Connecting and subscribing.
    Setup = 0,
    /// Publishing (warm-up, then the measured window).
    Run = 1,
    /// Publishers stop; subscribers drain.
    Stop = 2,
    /// Everyone stops; groups return their stats.
    Done = 3,
}

/// What a group reads from [`Shared`] once per poll.
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    /// The phase.
    pub phase: Phase,
    /// When publishing started (payload clock): the origin of every publisher's rate schedule.
    pub run_start: u64,
    /// Deliveries at or after this instant count for throughput and latency...
    pub window_start: u64,
    /// ... and before this one.
    pub window_end: u64,
}

/// Everything a group measured; summed over groups at the end.
#[derive(Debug)]
pub struct GroupStats {
    /// Publishes written.
    pub published: u64,
    /// PUBLISH packets received (duplicates included).
    pub received: u64,
    /// Received minus duplicates.
    pub distinct: u64,
    /// Received inside the measured window.
    pub in_window: u64,
    /// Payload bytes received inside the window.
    pub bytes_in_window: u64,
    /// Received at or after the window start (the divisor for broker CPU per message).
    pub after_window_start: u64,
    /// Payloads that do not carry our header.
    pub foreign: u64,
    /// Publishers that finished.
    pub publishers_done: u64,
    /// Messages skipped over in a sequence and not (yet) arrived late: lost so far.
    pub settled: u64,
    /// Last receive time (payload clock).
    pub last_receive: u64,
    /// Connections that failed after setup.
    pub disconnects: u64,
    /// Duplicated deliveries (filled from the sequence trackers at the end).
    pub duplicates: u64,
    /// Deliveries that came out of order.
    pub out_of_order: u64,
    /// Sequence numbers missing inside the received range (gaps, not the tail).
    pub gap_lost: u64,
    /// Send-to-receive latency in nanoseconds, inside the window; none until the first
    /// sample, because a histogram is ~270 KiB of counters: one per group of 19,000 idle
    /// clients was 160 MB to zero, 9 % of the generator's time while connecting.
    pub latency: Option<Histogram<u64>>,
    /// First few errors.
    pub errors: Vec<String>,
}

impl GroupStats {
    /// All zero.
    pub fn empty() -> Self {
        Self {
            published: 0,
            received: 0,
            distinct: 0,
            in_window: 0,
            bytes_in_window: 0,
            after_window_start: 0,
            foreign: 0,
            publishers_done: 0,
            settled: 0,
            last_receive: 0,
            disconnects: 0,
            duplicates: 0,
            out_of_order: 0,
            gap_lost: 0,
            latency: None,
            errors: Vec::new(),
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Self) {
        self.published += other.published;
        self.received += other.received;
        self.distinct += other.distinct;
        self.in_window += other.in_window;
        self.bytes_in_window += other.bytes_in_window;
        self.after_window_start += other.after_window_start;
        self.foreign += other.foreign;
        self.publishers_done += other.publishers_done;
        self.last_receive = self.last_receive.max(other.last_receive);
        self.disconnects += other.disconnects;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.gap_lost += other.gap_lost;
        if let Some(other) = &other.latency {
            let _ = self.latency.get_or_insert_with(new_histogram).add(other);
        }
        self.errors.extend(other.errors.iter().cloned());
    }

    /// Records one send-to-receive latency (ns) inside the window.
    pub fn record_latency(&mut self, ns: u64) {
        let _ = self
            .latency
            .get_or_insert_with(new_histogram)
            .record(ns.max(1));
    }

    fn error(&mut self, message: String) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(message);
        }
    }
}

/// 1 ns .. 1 h at 3 significant digits; values above are saturated.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds")
}

/// The control block: phase and window from the driver, live counters from the groups.
#[derive(Debug)]
pub struct Shared {
    phase: AtomicU8,
    /// Notified (all waiters) after every phase change.
    phase_changed: Notify,
    run_start: AtomicU64,
    window_start: AtomicU64,
    window_end: AtomicU64,
    /// When setup began (payload clock): the origin of the `--connect-rate` schedule.
    pub setup_start: AtomicU64,
    /// Clients that finished setup, successfully or not.
    pub ready: AtomicUsize,
    /// Setup failures, and the first message.
    pub failed: AtomicUsize,
    /// The first setup error.
    pub first_failure: Mutex<Option<String>>,
    /// Messages sent per publisher: the tail of each sequence, for loss accounting.
    pub sent: Vec<AtomicU64>,
    /// Live totals for the progress line (updated once per group poll).
    pub published: AtomicU64,
    /// Live: PUBLISH packets received.
    pub received: AtomicU64,
    /// Live: distinct messages received.
    pub distinct: AtomicU64,
    /// Live: publishers done.
    pub publishers_done: AtomicU64,
    /// Live: messages skipped in their sequence (lost unless they turn up late).
    pub settled: AtomicU64,
    /// Live: deliveries the publishes so far call for (sent × receivers), for the flow limit.
    pub expected: AtomicU64,
    /// `--max-outstanding` (0 = none).
    pub max_outstanding: u64,
}

impl Shared {
    /// A control block for `publishers` publishers, in the setup phase.
    pub fn new(publishers: usize, max_outstanding: u64) -> Self {
        Self {
            phase: AtomicU8::new(Phase::Setup as u8),
            phase_changed: Notify::new(),
            run_start: AtomicU64::new(0),
            window_start: AtomicU64::new(u64::MAX),
            window_end: AtomicU64::new(u64::MAX),
            setup_start: AtomicU64::new(now_ns()),
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            first_failure: Mutex::new(None),
            sent: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
            published: AtomicU64::new(0),
            received: AtomicU64::new(0),
            distinct: AtomicU64::new(0),
            publishers_done: AtomicU64::new(0),
            expected: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            max_outstanding,
        }
    }

    /// Moves to `phase`; entering [`Phase::Run`] also starts the rate schedules.
    pub fn set_phase(&self, phase: Phase) {
        if phase == Phase::Run {
            self.run_start.store(now_ns(), Relaxed);
        }
        self.phase.store(phase as u8, Relaxed);
        self.phase_changed.notify_waiters();
    }

    /// When publishing started (0 before [`Phase::Run`]).
    pub fn run_start(&self) -> u64 {
        self.run_start.load(Relaxed)
    }

    /// Opens the measured window now.
    pub fn open_window(&self, at: u64) {
        self.window_start.store(at, Relaxed);
    }

    /// Closes the measured window.
    pub fn close_window(&self, at: u64) {
        self.window_end.store(at, Relaxed);
    }

    fn tick(&self) -> Tick {
        let phase = match self.phase.load(Relaxed) {
            0 => Phase::Setup,
            1 => Phase::Run,
            2 => Phase::Stop,
            _ => Phase::Done,
        };
        Tick {
            phase,
            run_start: self.run_start.load(Relaxed),
            window_start: self.window_start.load(Relaxed),
            window_end: self.window_end.load(Relaxed),
        }
    }
}

/// How every connection is set up.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Broker address.
    pub addr: SocketAddr,
    /// Source addresses, round-robin by client index.
    pub bind: Vec<Ipv4Addr>,
    /// Protocol version.
    pub version: ProtocolVersion,
    /// QoS of publishes and subscriptions.
    pub qos: u8,
    /// Payload size.
    pub size: usize,
    /// Subscribers each publisher's messages go to.
    pub receivers: Vec<u64>,
    /// Messages per second per publisher (0 = unlimited).
    pub rate: u64,
    /// Messages per publisher, if counted.
    pub limit: Option<u64>,
    /// Inflight window per publisher.
    pub window: u16,
    /// CONNECT keep-alive in seconds.
    pub keepalive: u16,
    /// CONNECT user name.
    pub username: Option<String>,
    /// CONNECT password.
    pub password: Option<String>,
    /// New connections per second (0 = unlimited).
    pub connect_rate: u64,
    /// Subscribers connect with a persistent session.
    pub persistent_subscribers: bool,
    /// TCP, TLS, WebSocket or WSS.
    pub transport: Transport,
    /// `TCP_NOTSENT_LOWAT` of every connection (0 = the kernel's default).
    pub notsent_lowat: u32,
}

/// Starts `threads` worker threads over `clients` (global index, spec) in groups of
/// `per_task`. Each thread returns its groups' stats merged.
pub fn start(
    clients: Vec<(usize, ClientSpec)>,
    threads: usize,
    per_task: usize,
    config: Arc<EngineConfig>,
    shared: Arc<Shared>,
) -> anyhow::Result<Vec<std::thread::JoinHandle<GroupStats>>> {
    let mut per_thread: Vec<Vec<Vec<(usize, ClientSpec)>>> = vec![Vec::new(); threads];
    let mut chunks = clients.into_iter().peekable();
    let mut g = 0;
    while chunks.peek().is_some() {
        per_thread[g % threads].push(chunks.by_ref().take(per_task).collect());
        g += 1;
    }
    let mut handles = Vec::new();
    for (t, groups) in per_thread.into_iter().enumerate() {
        let (config, shared) = (config.clone(), shared.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("worker runtime")?;
        let handle = std::thread::Builder::new()
            .name(format!("bench-{t}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let tasks: Vec<_> = groups
                        .into_iter()
                        .map(|g| tokio::spawn(run_group(g, config.clone(), shared.clone())))
                        .collect();
                    let mut total = GroupStats::empty();
                    for task in tasks {
                        match task.await {
                            Ok(stats) => total.merge(&stats),
                            Err(e) => total.error(format!("group task failed: {e}")),
                        }
                    }
                    total
                })
            })?;
        handles.push(handle);
    }
    Ok(handles)
}

async fn run_group(
    clients: Vec<(usize, ClientSpec)>,
    config: Arc<EngineConfig>,
    shared: Arc<Shared>,
) -> GroupStats {
    let mut conns = Vec::with_capacity(clients.len());
    for (k, spec) in clients {
        if config.connect_rate > 0 {
            let due = shared.setup_start.load(Relaxed)
                + u64::try_from(k as u128 * 1_000_000_000 / u128::from(config.connect_rate))
                    .unwrap_or(u64::MAX);
            tokio::time::sleep_until(instant_at(due).into()).await;
        }
        let result = tokio::time::timeout(SETUP_TIMEOUT, setup(k, &spec, &config)).await;
        match result.unwrap_or_else(|_| Err(anyhow::anyhow!("timed out"))) {
            Ok(conn) => conns.push(conn),
            Err(e) => {
                if shared.failed.fetch_add(1, Relaxed) == 0 {
                    let message = format!("client {}: {e:#}", spec.client_id);
                    *shared
                        .first_failure
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(message);
                }
            }
        }
        shared.ready.fetch_add(1, Relaxed);
    }
    drive(conns, &shared, config.keepalive).await
}

/// Caps the bytes a connection may leave unsent in its kernel send buffer: `write` then waits
/// once `lowat` bytes are queued unsent, and the socket turns writable again below half of it.
#[cfg(target_os = "linux")]
fn limit_unsent(tcp: &tokio::net::TcpStream, lowat: u32) -> anyhow::Result<()> {
    socket2::SockRef::from(tcp)
        .set_tcp_notsent_lowat(lowat)
        .context("TCP_NOTSENT_LOWAT")
}

#[cfg(not(target_os = "linux"))]
fn limit_unsent(_tcp: &tokio::net::TcpStream, _lowat: u32) -> anyhow::Result<()> {
    Ok(())
}

/// Binds that follow take only the address: the kernel picks the port at `connect`, needing
/// only the 4-tuple to be unique, rather than searching at `bind` for a port no other socket on
/// that address holds: a source port may then serve one connection per destination.
#[cfg(target_os = "linux")]
fn defer_port_choice(socket: &TcpSocket) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let enable: libc::c_int = 1;
    // SAFETY: a plain integer option on a socket this function borrows, with its exact size.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            std::ptr::addr_of!(enable).cast(),
            std::mem::size_of_val(&enable) as libc::socklen_t,
        )
    };
    if result != 0 {
        return Err(std::io::Error::last_os_error()).context("IP_BIND_ADDRESS_NO_PORT");
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn defer_port_choice(_socket: &TcpSocket) -> anyhow::Result<()> {
    Ok(())
}

/// Connects one client, subscribes it, and wraps it for the hot loop.
async fn setup(k: usize, spec: &ClientSpec, config: &EngineConfig) -> anyhow::Result<Conn> {
    let socket = if config.addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if !config.bind.is_empty() {
        let source = config.bind[k % config.bind.len()];
        defer_port_choice(&socket)?;
        socket
            .bind(SocketAddr::new(source.into(), 0))
            .with_context(|| format!("bind {source}"))?;
    }
    let tcp = socket.connect(config.addr).await.context("connect")?;
    tcp.set_nodelay(true)?;
    if config.notsent_lowat > 0 {
        limit_unsent(&tcp, config.notsent_lowat)?;
    }
    let mut stream = config.transport.open(tcp).await?;
    let io = stream.io();
    let version = config.version;
    let persistent = config.persistent_subscribers && !spec.filters.is_empty();
    let connect = wire::connect(
        &spec.client_id,
        (config.keepalive, persistent),
        version,
        config.username.as_deref(),
        config.password.as_deref(),
    )?;
    io.write_all(&connect).await?;
    io.flush().await?;
    let mut buf = BytesMut::with_capacity(256);
    match read_packet(io, &mut buf, version).await? {
        Packet::ConnAck(ack) if !ack.reason.is_error() => {}
        Packet::ConnAck(ack) => bail!("connection refused: {:?}", ack.reason),
        other => bail!("expected CONNACK, got {other:?}"),
    }
    if !spec.filters.is_empty() {
        let qos = wire::qos(config.qos);
        let (packets, n) = wire::subscribes(&spec.filters, qos, version, FILTERS_PER_SUBSCRIBE)?;
        io.write_all(&packets).await?;
        io.flush().await?;
        for _ in 0..n {
            match read_packet(io, &mut buf, version).await? {
                Packet::SubAck(ack) if ack.reasons.iter().all(|r| !r.is_error()) => {}
                Packet::SubAck(ack) => bail!("subscription refused: {:?}", ack.reasons),
                other => bail!("expected SUBACK, got {other:?}"),
            }
        }
    }
    let publisher = match &spec.publish {
        Some(p) => Some(Publisher {
            template: wire::PublishTemplate::new(
                &p.topic,
                wire::qos(config.qos),
                version,
                config.size,
                p.index,
            )?,
            index: p.index as usize,
            receivers: config.receivers.get(p.index as usize).copied().unwrap_or(0),
            qos: config.qos,
            rate: config.rate,
            limit: config.limit,
            window: u32::from(config.window),
            seq: 0,
            inflight: 0,
            in_use: if config.qos > 0 {
                vec![false; 1 << 16]
            } else {
                Vec::new()
            },
            next_id: 1,
            done: false,
        }),
        None => None,
    };
    Ok(Conn::new(stream, version.is_v5(), &buf, publisher))
}

/// Reads one whole packet with the real decoder (setup only).
async fn read_packet(
    stream: &mut (impl AsyncRead + Unpin + ?Sized),
    buf: &mut BytesMut,
    version: ProtocolVersion,
) -> anyhow::Result<Packet> {
    loop {
        if let Some(packet) = fulmar_proto::decode(buf, version, 1 << 20)? {
            return Ok(packet);
        }
        if stream.read_buf(buf).await? == 0 {
            bail!("the broker closed the connection");
        }
    }
}

/// The hot loop of one group, until [`Phase::Done`]; then the sequence trackers are summed.
async fn drive(mut conns: Vec<Conn>, shared: &Shared, keepalive: u16) -> GroupStats {
    let mut stats = GroupStats::empty();
    let ping_every = Duration::from_secs(u64::from(keepalive)) / 2;
    let mut last_ping = tokio::time::Instant::now();
    let mut reported = (0u64, 0u64, 0u64, 0u64);
    let mut reported_settled = 0u64;
    let has_publisher = conns.iter().any(|c| c.publisher.is_some());
    let mut sleep = Box::pin(tokio::time::sleep(TICK));
    let mut phase_changed = Box::pin(shared.phase_changed.notified());
    poll_fn(|cx| {
        // Armed before the phase is read: a change after the read still wakes this group.
        while phase_changed.as_mut().poll(cx).is_ready() {
            phase_changed.set(shared.phase_changed.notified());
        }
        let tick = shared.tick();
        if tick.phase == Phase::Done {
            return Poll::Ready(());
        }
        let mut earliest: Option<u64> = None;
        if last_ping.elapsed() >= ping_every {
            last_ping = tokio::time::Instant::now();
            conns.iter_mut().for_each(Conn::queue_ping);
        }
        for conn in conns.iter_mut().filter(|c| !c.dead) {
            match conn.poll(cx, &tick, shared, &mut stats) {
                Ok(Some(due)) => earliest = Some(earliest.map_or(due, |e| e.min(due))),
                Ok(None) => {}
                Err(e) => {
                    conn.dead = true;
                    stats.disconnects += 1;
                    stats.error(format!("connection lost: {e}"));
                    if let Some(p) = conn.publisher.as_mut().filter(|p| !p.done) {
                        p.done = true;
                        stats.publishers_done += 1;
                    }
                }
            }
            if let Some(p) = &conn.publisher {
                shared.sent[p.index].store(p.seq, Relaxed);
            }
        }
        let now = (
            stats.published,
            stats.received,
            stats.distinct,
            stats.publishers_done,
        );
        shared.published.fetch_add(now.0 - reported.0, Relaxed);
        shared.received.fetch_add(now.1 - reported.1, Relaxed);
        shared.distinct.fetch_add(now.2 - reported.2, Relaxed);
        shared
            .publishers_done
            .fetch_add(now.3 - reported.3, Relaxed);
        reported = now;
        // `settled` can fall (a late arrival), so it is published as a difference both ways.
        if stats.settled >= reported_settled {
            shared
                .settled
                .fetch_add(stats.settled - reported_settled, Relaxed);
        } else {
            shared
                .settled
                .fetch_sub(reported_settled - stats.settled, Relaxed);
        }
        reported_settled = stats.settled;
        let mut wake = if has_publisher {
            tokio::time::Instant::now() + TICK
        } else {
            last_ping + ping_every
        };
        if let Some(due) = earliest {
            wake = wake.min(instant_at(due).into());
        }
        if wake < sleep.deadline() || sleep.is_elapsed() {
            sleep.as_mut().reset(wake);
        }
        if sleep.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    })
    .await;
    for conn in &conns {
        for track in &conn.tracks {
            stats.duplicates += track.duplicates;
            stats.out_of_order += track.out_of_order;
            stats.gap_lost += track.lost(None);
        }
    }
    stats
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_unsent_limit_is_set_on_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let before = socket2::SockRef::from(&tcp).tcp_notsent_lowat().unwrap();
        limit_unsent(&tcp, 96 * 1024).unwrap();
        let after = socket2::SockRef::from(&tcp).tcp_notsent_lowat().unwrap();
        assert_ne!(before, 96 * 1024, "the kernel's default is no limit");
        assert_eq!(after, 96 * 1024);
    }
}

#[cfg(test)]
mod stats_tests {
    use super::GroupStats;

    #[test]
    fn a_group_without_deliveries_holds_no_histogram_and_merges_samples_it_is_given() {
        let mut idle = GroupStats::empty();
        idle.merge(&GroupStats::empty());
        assert!(idle.latency.is_none(), "no samples, no counters allocated");

        let mut receiving = GroupStats::empty();
        receiving.record_latency(0);
        receiving.record_latency(5_000);
        idle.merge(&receiving);
        let histogram = idle.latency.as_ref().expect("merged samples");
        assert_eq!(histogram.len(), 2);
        assert_eq!(
            histogram.min(),
            1,
            "a zero latency is recorded as the lowest bucket"
        );
        assert!(histogram.max() >= 5_000);
    }
}
