//! One client connection: the task that owns a [`Session`] while the client is connected.
//!
//! ```text
//!  accept ─► read CONNECT (within connect_timeout) ─► handshake ─► run loop ─► finish
//!                                                                   │
//!     select over: commit gate · write wbuf · read+decode · mailbox wake · hold · keep-alive
//! ```
//! The run loop never blocks on one thing: a peer that stops reading stalls only its own
//! writes (its outbox then fills and drops, counted), never reads, kicks or the keep-alive.
//! A takeover (kick) and the broker's shutdown arrive as [`Signal`]s through the session's
//! mailbox, whose wake-up the loop waits on anyway: an idle connection waits on one wake-up
//! source, the socket and one timer.

mod detach;
mod finish;
mod handshake;
mod hold;
mod idle;
mod io;
mod packets;
mod spill;
mod store;
mod write_queue;

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fulmar_core::{Delivery, Outbound, ProtocolError, Session, SessionKey};
use fulmar_proto::{Connect, DecodeError, Packet, ProtocolVersion, PublishView, ReasonCode, Will};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

pub use detach::Detach;
use detach::Detached;
use idle::{IdleCheck, Waking};
pub use io::Io;
use io::ReadError;

use crate::admission::Admitted;
use crate::broker::Broker;
use crate::dormant::Dormant;
use crate::mailbox::{Mailbox, Signal};
use crate::metrics::bump;
use crate::registry::{Kick, Slot};
use crate::security::Origin;

/// Deliveries taken from the outbox per lock.
const BATCH: usize = 64;

thread_local! {
    /// The deliveries `pump` has taken from an outbox and not yet encoded: per thread, not
    /// per connection, so that a connection that once received a burst does not keep room
    /// for 64 deliveries (5 KiB) for the rest of its life. Empty between `pump` calls,
    /// which never await.
    static DELIVERIES: Cell<Vec<Delivery>> = const { Cell::new(Vec::new()) };
}

/// Why the run loop ended; decides the will and what happens to the session.
#[derive(Debug)]
pub(crate) enum Exit {
    /// DISCONNECT from the client; `with_will` for MQTT 5 reason 0x04.
    ClientDisconnect { with_will: bool },
    /// The peer closed the socket or it failed.
    Closed,
    /// A protocol violation, malformed packet or keep-alive expiry.
    Violation(ProtocolError),
    /// Another connection took the client id over.
    TakenOver(Kick),
    /// The broker is stopping.
    Shutdown,
    /// A 3.1.1 client published a QoS 1/2 message the store has no room for (see
    /// `handle_publish`).
    CannotStore,
    /// Nothing happened for `limits.dormant_after_ms` and nothing is pending: the
    /// connection may go dormant (see [`crate::dormant`]). Only from the run loop, and only
    /// on a transport that can sleep; closes like `Closed` if it ever reaches `finish`.
    Idle,
}

/// An established connection and the session it owns.
pub struct Connection {
    broker: Arc<Broker>,
    key: SessionKey,
    session: Session,
    /// The session's mailbox, which this connection listens to for signals.
    mailbox: Listening,
    /// Session Expiry Interval (seconds; `u32::MAX` never; 0 ends with the connection).
    expiry_secs: u32,
    /// Boxed: most clients have none, and inline it would cost every connection 400 bytes.
    will: Option<Box<Will>>,
    /// Who the client is (with its client id), for ACL checks.
    username: crate::broker::Username,
    slot: Arc<Slot>,
    hold: hold::PublisherHold,
    /// A commit that the bytes in the write buffer must wait for (QoS 2 sends of a stored
    /// session; see `flush_persist`).
    write_gate: Option<fulmar_store::CommitTicket>,
    /// The connection's place in the connection limits, held while it is open (awake or
    /// dormant); set by `serve` once the handshake is done.
    admitted: Option<Admitted>,
}

/// Serves one accepted stream until it closes, with its listener's authentication context.
/// Every transport goes through it; it keeps the connection counters. Never panics on client
/// input.
///
/// A plain fn returning an `async move` block rather than an `async fn`: an async fn's
/// future keeps its arguments for its whole life next to the locals they are moved into,
/// and this future is the task of every idle connection. The block's captures are used in
/// place.
#[allow(clippy::manual_async_fn)] // Deliberately not an async fn: see above.
pub fn serve<R, W>(
    origin: Origin,
    broker: Arc<Broker>,
    (reader, writer): (R, W),
    peer: SocketAddr,
    connection_id: u64,
    mut shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    Io<R, W>: Detach,
{
    async move {
        // A binding in this block takes room in the task for as long as any `.await` after
        // it, even once moved out: bind nothing the run loop does not need.
        broker.metrics().connection_accepted();
        let admitted =
            match broker
                .admission
                .admit(peer.ip(), &broker.config().limits, Instant::now())
            {
                Ok(admitted) => admitted,
                Err(refusal) => {
                    bump(&broker.metrics().connections_refused);
                    tracing::warn!(%peer, ?refusal, "connection refused by limits");
                    return;
                }
            };
        // A local, not an argument: `drive` takes it over, and an argument would keep its
        // room in the task beside `drive`'s copy.
        let mut io = Io::new(reader, writer);
        // Connecting and the close are boxed: their futures are several times the size of
        // the run loop's, and unboxed they would size the task (a future is as large as its
        // largest state) of every idle connection.
        let connecting = open(
            &broker,
            &mut io,
            &mut shutdown,
            (&origin, peer, connection_id),
        );
        let Some(mut connection) = Box::pin(connecting).await else {
            return;
        };
        connection.admitted = Some(admitted);
        drive(connection, io, peer, Waking::New).await;
    }
}

/// Runs an established connection until it closes. When it idles it goes dormant (where
/// the transport allows): its task then ends, and [`wake`] gives it a new one.
///
/// The connection is boxed for its whole life: it moves between tasks and the dormant set
/// as one pointer, and a task's future does not carry it (futures keep room for values
/// moved out of them).
async fn drive<R, W>(
    mut connection: Box<Connection>,
    mut io: Io<R, W>,
    peer: SocketAddr,
    mut waking: Waking,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    Io<R, W>: Detach,
{
    loop {
        let exit = connection.run(&mut io, waking).await;
        waking = Waking::Again;
        if !matches!(exit, Exit::Idle) {
            Box::pin((*connection).finish(exit, &mut io, peer)).await;
            return;
        }
        let socket = match io.detach() {
            Detached::Socket(socket) => socket,
            Detached::Kept(kept) => {
                io = kept;
                continue;
            }
            Detached::Lost(error) => return Box::pin(connection.close_lost(error, peer)).await,
        };
        // Most connections are dormant: they keep no room for traffic they do not have. If
        // the set refuses this one, its run loop allocates the room again on first use (once
        // per idle period, never per message).
        connection.session.release_idle_memory();
        let dormant_set = Arc::clone(&connection.broker.dormant);
        let socket = match dormant_set.admit(connection, socket) {
            Ok(()) => return,
            Err((back, socket)) => {
                connection = back;
                socket
            }
        };
        io = match Io::<R, W>::attach(socket) {
            Ok(io) => io,
            Err(error) => return Box::pin(connection.close_lost(error, peer)).await,
        };
    }
}

/// A dormant connection's new task: it runs on as if it had never slept.
pub(crate) async fn wake(dormant: Dormant) {
    let Dormant {
        connection, socket, ..
    } = dormant;
    let peer = peer_of(&socket);
    match detach::attach(socket) {
        Ok(io) => drive(connection, io, peer, Waking::Again).await,
        Err(error) => Box::pin(connection.close_lost(error, peer)).await,
    }
}

/// Ends a dormant connection whose peer closed its socket (it woke readable with nothing to
/// read), as the run loop ends one whose read finds the end of the stream, but without
/// going back to the runtime's epoll first and waiting a turn of it to read that end.
pub(crate) async fn close_closed(dormant: Dormant) {
    let Dormant {
        connection, socket, ..
    } = dormant;
    let peer = peer_of(&socket);
    drop(socket);
    connection.close_without_socket(peer).await;
}

/// The peer's address, asked of the socket: not kept while dormant (see `Dormant`). A socket
/// reset before it woke has no peer any more; its close is then logged with the unspecified
/// address.
fn peer_of(socket: &std::net::TcpStream) -> SocketAddr {
    socket
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Reads CONNECT and carries out the handshake: the connection, or `None` when it is to
/// close instead.
async fn open<R, W>(
    broker: &Arc<Broker>,
    io: &mut Io<R, W>,
    shutdown: &mut watch::Receiver<bool>,
    (origin, peer, connection_id): (&Origin, SocketAddr, u64),
) -> Option<Box<Connection>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let connect = read_connect(broker, io, peer, shutdown).await?;
    let connection = handshake::accept(broker, io, connect, connection_id, origin).await?;
    Some(Box::new(connection))
}

/// Reads the CONNECT packet; `None` (after answering where the spec says so) when the
/// connection is to close instead.
async fn read_connect<R, W>(
    broker: &Broker,
    io: &mut Io<R, W>,
    peer: SocketAddr,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Connect>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let max_packet = broker.config().limits.max_packet_size as usize;
    // [MQTT-3.1.0-1] CONNECT first, and within the configured time.
    let first = tokio::select! {
        read = tokio::time::timeout(
            broker.config().connect_timeout(),
            io.read_packet(ProtocolVersion::V3_1_1, max_packet),
        ) => read,
        _ = shutdown.changed() => return None,
    };
    match first {
        Ok(Ok(Packet::Connect(connect))) => Some(*connect),
        Ok(Ok(other)) => {
            bump(&broker.metrics().protocol_errors);
            tracing::info!(%peer, packet = other.kind_name(), "first packet is not CONNECT; closing");
            None
        }
        Ok(Err(ReadError::Decode(DecodeError::UnsupportedProtocolVersion(level)))) => {
            tracing::info!(%peer, level, "unsupported protocol level; CONNACK 0x01");
            // [MQTT-3.1.2-2] answer 0x01 in the 3.1.1 form, then close.
            handshake::refuse(
                io,
                ProtocolVersion::V3_1_1,
                ReasonCode::UnsupportedProtocolVersion,
            )
            .await;
            None
        }
        Ok(Err(ReadError::Decode(error))) => {
            bump(&broker.metrics().protocol_errors);
            tracing::info!(%peer, %error, "malformed CONNECT; closing");
            None
        }
        Ok(Err(ReadError::Closed)) => None,
        Err(_) => {
            bump(&broker.metrics().connect_timeouts);
            tracing::info!(%peer, "no CONNECT within connect_timeout_secs; closing");
            None
        }
    }
}

impl Connection {
    /// The client identifier (one allocation, shared by the mailbox and the registry).
    fn client_id(&self) -> &str {
        self.mailbox.client_id()
    }

    /// The session's mailbox.
    pub(crate) fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }

    /// When the connection must be closed if no packet arrives before it.
    pub(crate) fn keep_alive_deadline(&self) -> Option<Instant> {
        self.session.keep_alive_deadline()
    }

    /// Ends a connection whose socket was lost while it went dormant or woke (the kernel
    /// refused an epoll registration): closed, as if the peer had gone.
    async fn close_lost(self: Box<Self>, error: std::io::Error, peer: SocketAddr) {
        tracing::warn!(client_id = %self.client_id(), %peer, %error, "socket lost between tokio and the dormant set; closing");
        self.close_without_socket(peer).await;
    }

    /// Ends a connection whose peer is gone, as the run loop does when a read finds the
    /// end of the stream (the socket, if any, is closed by its owner).
    async fn close_without_socket(self: Box<Self>, peer: SocketAddr) {
        let mut closed = Io::new(tokio::io::empty(), tokio::io::sink());
        Box::pin((*self).finish(Exit::Closed, &mut closed, peer)).await;
    }

    /// Whether nothing is pending but what the peer or a publisher may send: no buffered
    /// bytes, no held replies, no commit to wait for, no publish-rate pause. (The mailbox's
    /// own queue is checked as the connection goes dormant.)
    fn is_idle<R, W>(&self, io: &Io<R, W>, now: Instant) -> bool {
        io.rbuf.is_empty()
            && io.wbuf.is_empty()
            && self.write_gate.is_none()
            && !self.hold.is_waiting()
            && self.session.read_paused_until(now).is_none()
    }

    /// The run loop: see the module docs.
    ///
    /// Not an async fn, for the reason given at [`serve`]: its future is part of every idle
    /// connection's task, and an async fn would keep `self` and `io` twice.
    #[allow(clippy::manual_async_fn)] // Deliberately not an async fn: see above.
    fn run<'a, R, W>(
        &'a mut self,
        io: &'a mut Io<R, W>,
        waking: Waking,
    ) -> impl Future<Output = Exit> + 'a
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
        Io<R, W>: Detach,
    {
        async move {
            let high_water = self.broker.config().limits.max_write_buffer_bytes;
            let max_packet = self.broker.config().limits.max_packet_size as usize;
            let mut idle = self.idle_check::<R, W>(waking);
            let far_future = || Instant::now() + Duration::from_secs(86_400 * 365);
            // One timer for the keep-alive deadline and the end of a publish-rate pause, whichever
            // comes first: every timer is part of the task's size for the connection's life.
            let timer = tokio::time::sleep_until(far_future().into());
            tokio::pin!(timer);
            let mut armed_deadline = None;
            let mut was_paused = false;
            // Shutdown began before we were an owner that [`Registry::shut_down`] could signal.
            if self.broker.registry.is_closing() {
                return Exit::Shutdown;
            }
            loop {
                // Before anything else: a kicked connection must not touch the session further.
                match self.mailbox.take_signal() {
                    Some(Signal::Kick(kick)) => return Exit::TakenOver(kick),
                    Some(Signal::Shutdown) => return Exit::Shutdown,
                    None => {}
                }
                // One clock read per wake-up serves every packet handled and every delivery sent
                // in it: they all happen within microseconds, far below the second-granularity
                // of keep-alive, expiry and rate limits, and reading the clock is a measurable
                // share of the per-message cost.
                let now = Instant::now();
                // Whole packets may already be buffered: pipelined behind CONNECT, or held back
                // while reading was paused (publish rate, or a congested subscriber).
                if !self.reading_paused(now) {
                    if let Some(exit) = self.handle_input(io, max_packet, now) {
                        return exit;
                    }
                }
                self.pump(io, high_water, now);
                io.release_empty();
                let paused = {
                    // Scoped: locals that outlive the `select!` below are part of the task.
                    let paused_until = self.session.read_paused_until(now);
                    let deadline = [
                        self.session.keep_alive_deadline(),
                        paused_until,
                        idle.as_ref().map(IdleCheck::deadline),
                    ]
                    .into_iter()
                    .flatten()
                    .min();
                    if deadline != armed_deadline {
                        timer
                            .as_mut()
                            .reset(deadline.unwrap_or_else(far_future).into());
                        armed_deadline = deadline;
                    }
                    paused_until.is_some()
                };
                if paused && !was_paused {
                    bump(&self.broker.metrics().publish_rate_pauses);
                }
                was_paused = paused;
                let can_read = io.wbuf.len() < high_water && !paused && !self.hold.is_holding();
                // A due idle check is a branch polled last, not the timer (see `IdleCheck`).
                let idle_due = idle.as_ref().is_some_and(|check| check.deadline() <= now);
                let waiting = self.hold.is_waiting();
                // Boxed, so that only a connection that holds replies pays for this future (it
                // is polled, and so allocated, only while `waiting`).
                let hold_wait = async { Box::pin(self.hold.wait()).await };
                let gated = self.write_gate.is_some();
                let gate = async {
                    match self.write_gate.as_mut() {
                        Some(ticket) => ticket.await,
                        None => std::future::pending().await,
                    }
                };
                // Set by a write that emptied the buffer; the flush is awaited after `select!`, so
                // that the select's output is not kept across it (and in the task's size).
                let mut flush = false;
                tokio::select! {
                    biased;
                    committed = gate => {
                        if let Err(error) = committed {
                            tracing::warn!(client_id = %self.client_id(), %error, "store commit failed; sending anyway");
                        }
                        self.write_gate = None;
                    }
                    written = io.wbuf.write_some(&mut io.writer), if !io.wbuf.is_empty() && !gated => {
                        if matches!(written, Ok(0) | Err(_)) {
                            return Exit::Closed;
                        }
                        flush = io.wbuf.is_empty();
                    }
                    read = io::read_some(&mut io.reader, &mut io.rbuf), if can_read => match read {
                        Ok(0) | Err(_) => return Exit::Closed,
                        Ok(_) => idle.as_mut().map_or((), IdleCheck::stir),
                    },
                    // Deliveries or a signal (checked at the top of the loop).
                    _ = self.mailbox.notified() => idle.as_mut().map_or((), IdleCheck::stir),
                    woke = hold_wait, if waiting => {
                        if let hold::Woke::Committed(ok) = woke {
                            self.hold.committed(ok);
                        }
                        if self.hold.release_ready(&mut self.session, Instant::now()) {
                            bump(&self.broker.metrics().publisher_holds_expired);
                        }
                    }
                    // The keep-alive deadline, an idle check, or the end of a read pause (the
                    // loop re-checks it). Polled last: a due idle check fires at once.
                    _ = async { if !idle_due { timer.as_mut().await } } => {
                        if let Some(exit) = self.on_timer(io, idle.as_mut()) {
                            return exit;
                        }
                    }
                }
                if flush {
                    let _ = io.writer.flush().await;
                }
            }
        }
    }

    /// The idle check of a run loop, when the connection may go dormant at all: on a
    /// transport that can sleep, with a started dormant set, unless configured off.
    fn idle_check<R, W>(&self, waking: Waking) -> Option<IdleCheck>
    where
        Io<R, W>: Detach,
    {
        let ms = self.broker.config().limits.dormant_after_ms;
        let can_sleep = ms > 0 && <Io<R, W>>::CAN_SLEEP && self.broker.dormant.is_enabled();
        can_sleep.then(|| IdleCheck::new(Duration::from_millis(ms), waking, Instant::now()))
    }

    /// The run loop's timer fired: the keep-alive deadline [MQTT-3.1.2-24], or an idle check.
    fn on_timer<R, W>(&mut self, io: &Io<R, W>, idle: Option<&mut IdleCheck>) -> Option<Exit> {
        let now = Instant::now();
        if let Err(e) = self.session.check_keep_alive(now) {
            bump(&self.broker.metrics().keep_alive_timeouts);
            return Some(Exit::Violation(e));
        }
        let idle = idle?;
        if idle.quiet(now) {
            if self.is_idle(io, now) {
                return Some(Exit::Idle);
            }
            idle.postpone(now);
        }
        None
    }

    /// Moves the session's replies and then queued deliveries (as the inflight window
    /// allows) into the write buffer, up to its high-water mark.
    fn pump<R, W>(&mut self, io: &mut Io<R, W>, high_water: usize, now: Instant)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        while let Some(packet) = self.session.poll_transmit() {
            io.queue(&packet, self.session.version());
        }
        let (mut sent, mut expired, mut too_large) = (0u64, 0u64, 0u64);
        let mut dropped_stored = Vec::new();
        let mut batch = DELIVERIES.take();
        while io.wbuf.len() < high_water {
            let window = self.session.outbound_window();
            self.mailbox
                .with(|outbox| outbox.pop_batch(window, BATCH, &mut batch));
            if batch.is_empty() {
                self.unspill(window, now, &mut batch);
                if batch.is_empty() {
                    break;
                }
            }
            let version = self.session.version();
            for delivery in batch.drain(..) {
                let stored = delivery.stored;
                let queue = |publish: PublishView<'_>| io.queue_publish(publish, version);
                match self.session.deliver_with(delivery, now, queue) {
                    Outbound::Send(()) => {
                        sent += 1;
                        continue;
                    }
                    Outbound::Expired => expired += 1,
                    Outbound::TooLarge => too_large += 1,
                }
                dropped_stored.extend(stored);
            }
        }
        DELIVERIES.set(batch);
        self.forget_stored(&dropped_stored);
        if sent + expired + too_large > 0 {
            self.mailbox.after_drain();
        }
        if let Some(gate) = self.flush_persist() {
            self.write_gate = Some(gate);
        }
        let metrics = self.broker.metrics();
        for (counter, n) in [
            (&metrics.messages_sent, sent),
            (&metrics.dropped_expired, expired),
            (&metrics.dropped_too_large, too_large),
        ] {
            if n > 0 {
                counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Whether packets from the client must wait: it exceeded its publish rate, or its last
    /// QoS 1/2 message filled a subscriber's queue (see [`hold`]); TCP backpressure then
    /// slows the publisher down instead of the broker dropping what it acknowledged.
    fn reading_paused(&self, now: Instant) -> bool {
        self.hold.is_holding() || self.session.read_paused_until(now).is_some()
    }
}

/// A connection's hold on its session's mailbox: it stops listening for signals when it
/// goes away, however it ends (also when its task is aborted), so that a later taker is
/// refused at once instead of waiting for a kick nobody answers.
struct Listening {
    mailbox: Arc<Mailbox>,
    connection_id: u64,
}

impl std::ops::Deref for Listening {
    type Target = Arc<Mailbox>;

    fn deref(&self) -> &Arc<Mailbox> {
        &self.mailbox
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        // A kick still waiting is dropped with its reply channel: the taker sees that at once.
        drop(self.mailbox.stop_listening(self.connection_id));
    }
}

#[cfg(test)]
mod tests;
