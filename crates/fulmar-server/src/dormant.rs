//! Dormant connections: idle connections without a task.
//!
//! Most of a broker's connections are idle most of the time (a device connected, subscribed
//! and waiting). A tokio task, its socket registration and its run-loop future cost such a
//! connection about 1.4 KB. A dormant connection is only its [`Connection`] (boxed) and its
//! socket, whose readiness one epoll set polls for all dormant connections together.
//!
//! A plain-TCP connection goes dormant after `limits.dormant_after_ms` with nothing to do
//! (TLS and WebSocket keep state in their streams and stay awake). It wakes, as a new task,
//! when:
//! - its socket becomes readable (data, FIN or an error). epoll reports a socket that is
//!   already readable when it is added, so nothing that arrived before is missed;
//! - its mailbox gets a delivery or a signal (takeover, shutdown); see
//!   [`Mailbox::try_go_dormant`];
//! - its keep-alive deadline passes (checked every [`SWEEP`]).
//!
//! A socket that is readable with nothing to read was closed by its client: that connection
//! is ended by the set itself rather than woken (see `DormantSet::spawn`).
//!
//! # Invariants
//! - Exactly one party wakes a dormant connection: the one that takes its [`WakeTicket`]
//!   back from the mailbox. A pusher or signaller then calls [`DormantSet::wake`]; this set,
//!   on readiness or a deadline, claims it with [`Mailbox::claim_dormant`].
//! - Lock order: the set's table, then a mailbox's signals. A pusher releases the mailbox
//!   before it calls `wake`.
//! - A slot's `generation` changes whenever it is reused, so a late ticket for a connection
//!   that already woke never wakes another.

use std::future::Future;
use std::os::fd::AsRawFd;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use parking_lot::Mutex;
use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::task::JoinSet;

use crate::connection::{self, Connection};
use crate::listener::reap_finished;
use crate::mailbox::Mailbox;

/// How often keep-alive deadlines of dormant connections are checked: a dormant
/// connection that misses its deadline is closed at most this late.
pub const SWEEP: Duration = Duration::from_millis(250);

/// Readiness events taken from the epoll set per call.
const EVENTS: usize = 256;

/// What woke a connection whose socket became readable (a packet, its end, or an error).
const SOCKET_READY: &str = "socket";

/// The dormant connections of one broker.
#[derive(Default)]
pub struct DormantSet {
    table: Mutex<Slab<Dormant>>,
    /// Set once by [`DormantSet::start`]; until then no connection goes dormant.
    runtime: OnceLock<Runtime>,
}

/// What waking a connection needs: where to register sockets and where to spawn tasks.
struct Runtime {
    registry: mio::Registry,
    handle: tokio::runtime::Handle,
    tasks: Arc<Mutex<JoinSet<()>>>,
    /// Where [`SweepTick`]s count from.
    started: Instant,
}

/// A connection without a task. 24 bytes, and so is its table entry: the table's capacity
/// doubles, so each byte here costs up to two per dormant connection. (The peer's address
/// is asked of the socket on waking rather than kept: 32 bytes.)
pub struct Dormant {
    pub(crate) connection: Box<Connection>,
    pub(crate) socket: std::net::TcpStream,
    generation: u32,
    keep_alive_deadline: SweepTick,
}

/// A keep-alive deadline in [`SWEEP`]s since the set started, rounded up (so a deadline
/// is never seen early); `SweepTick::NEVER` for none. 32 bits of sweeps last 34 years.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SweepTick(u32);

impl SweepTick {
    const NEVER: SweepTick = SweepTick(u32::MAX);

    /// The first sweep at or after `at`.
    fn at_or_after(started: Instant, at: Option<Instant>) -> SweepTick {
        let Some(at) = at else {
            return SweepTick::NEVER;
        };
        let since = at.saturating_duration_since(started).as_nanos();
        let sweep = SWEEP.as_nanos();
        let ticks = since.div_ceil(sweep);
        SweepTick(u32::try_from(ticks).unwrap_or(u32::MAX - 1))
    }

    /// The last sweep at or before `now`.
    fn at_or_before(started: Instant, now: Instant) -> SweepTick {
        let since = now.saturating_duration_since(started).as_nanos();
        let ticks = since / SWEEP.as_nanos();
        SweepTick(u32::try_from(ticks).unwrap_or(u32::MAX - 1))
    }
}

/// The right to wake one dormant connection; held by its mailbox while it sleeps.
#[derive(Debug)]
pub struct WakeTicket {
    set: Arc<DormantSet>,
    key: u32,
    generation: u32,
}

impl WakeTicket {
    /// Wakes the connection this ticket was issued for.
    pub fn wake(self) {
        self.set.wake(self.key, self.generation);
    }

    pub(crate) fn is_for(&self, key: u32, generation: u32) -> bool {
        self.key == key && self.generation == generation
    }

    /// A ticket into a set that is not started (waking through it does nothing).
    #[cfg(test)]
    pub(crate) fn unstarted(key: u32, generation: u32) -> Self {
        WakeTicket {
            set: Arc::default(),
            key,
            generation,
        }
    }
}

impl Runtime {
    /// Spawns a woken connection's task into the broker's connection tasks.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock();
        // Reaped here too, not only on accept: waking needs no accept to happen.
        reap_finished(&mut tasks);
        tasks.spawn_on(task, &self.handle);
    }
}

impl std::fmt::Debug for DormantSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DormantSet")
            .field("dormant", &self.len())
            .finish()
    }
}

impl DormantSet {
    /// Enables dormancy: woken connections are spawned on the current runtime into `tasks`.
    /// Returns the task that polls the sockets and checks deadlines (abort it to stop).
    /// Must be called from within a tokio runtime, at most once.
    pub fn start(
        self: &Arc<Self>,
        tasks: Arc<Mutex<JoinSet<()>>>,
    ) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        // SAFETY: a `Poll` owns its epoll descriptor for its whole life and always returns
        // that one from `as_raw_fd`.
        let ready = unsafe { AsyncFd::register_with_interest(poll, tokio::io::Interest::READABLE) }
            .map_err(|refused| refused.into_parts().1)?;
        let runtime = Runtime {
            registry,
            handle: tokio::runtime::Handle::current(),
            tasks,
            started: Instant::now(),
        };
        if self.runtime.set(runtime).is_err() {
            return Err(std::io::Error::other("dormant set already started"));
        }
        Ok(tokio::spawn(Arc::clone(self).watch(ready)))
    }

    /// Whether connections may go dormant (the set was started).
    pub fn is_enabled(&self) -> bool {
        self.runtime.get().is_some()
    }

    /// Dormant connections now.
    pub fn len(&self) -> usize {
        self.table.lock().len()
    }

    /// Whether no connection is dormant.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every dormant connection without closing it properly: for the end of a
    /// shutdown, after those that took the shutdown signal are gone.
    pub fn close(&self) {
        let left = std::mem::take(&mut *self.table.lock());
        if !left.is_empty() {
            tracing::warn!(
                connections = left.len(),
                "dropping dormant connections at shutdown"
            );
        }
    }

    /// Takes `connection` in, dormant, unless its mailbox already has work (or the set is
    /// not started, or the socket cannot be registered): then it is handed back.
    pub(crate) fn admit(
        self: &Arc<Self>,
        connection: Box<Connection>,
        socket: std::net::TcpStream,
    ) -> Result<(), (Box<Connection>, std::net::TcpStream)> {
        let Some(runtime) = self.runtime.get() else {
            return Err((connection, socket));
        };
        let mut table = self.table.lock();
        let entry = table.vacant_entry();
        let Ok(key) = u32::try_from(entry.key()) else {
            return Err((connection, socket));
        };
        let generation = next_generation();
        let ticket = WakeTicket {
            set: Arc::clone(self),
            key,
            generation,
        };
        let mailbox: &Mailbox = connection.mailbox();
        if !mailbox.try_go_dormant(ticket) {
            return Err((connection, socket));
        }
        let fd = socket.as_raw_fd();
        let token = Token(key as usize);
        if let Err(error) = runtime
            .registry
            .register(&mut SourceFd(&fd), token, Interest::READABLE)
        {
            tracing::warn!(%error, "cannot watch an idle connection's socket; it stays awake");
            if mailbox.claim_dormant(key, generation) {
                return Err((connection, socket));
            }
            // A pusher holds the ticket and will wake it at once: stay in the table for it.
        }
        let keep_alive_deadline =
            SweepTick::at_or_after(runtime.started, connection.keep_alive_deadline());
        tracing::debug!(client_id = mailbox.client_id(), "connection dormant");
        entry.insert(Dormant {
            connection,
            socket,
            generation,
            keep_alive_deadline,
        });
        Ok(())
    }

    /// Wakes the connection in slot `key` if it is still the one of `generation`; called
    /// by the holder of its [`WakeTicket`].
    fn wake(&self, key: u32, generation: u32) {
        let woken = {
            let mut table = self.table.lock();
            match table.get(key as usize) {
                Some(dormant) if dormant.generation == generation => {
                    Some(table.remove(key as usize))
                }
                _ => None,
            }
        };
        if let Some(dormant) = woken {
            self.spawn(dormant, "mailbox");
        }
    }

    /// Wakes the connection in slot `key` for readiness of its socket, unless a pusher took
    /// its ticket (it wakes it then).
    fn wake_ready(&self, key: usize) {
        let woken = {
            let mut table = self.table.lock();
            match table.get(key) {
                Some(dormant)
                    if dormant
                        .connection
                        .mailbox()
                        .claim_dormant(key as u32, dormant.generation) =>
                {
                    Some(table.remove(key))
                }
                _ => None,
            }
        };
        if let Some(dormant) = woken {
            self.spawn(dormant, SOCKET_READY);
        }
    }

    /// Wakes every connection whose keep-alive deadline passed; its task closes it.
    fn sweep(&self, now: Instant) {
        let Some(runtime) = self.runtime.get() else {
            return;
        };
        reap_finished(&mut runtime.tasks.lock());
        let now = SweepTick::at_or_before(runtime.started, now);
        let woken: Vec<Dormant> = {
            let mut table = self.table.lock();
            let due: Vec<usize> = table
                .iter()
                .filter(|(key, dormant)| {
                    dormant.keep_alive_deadline <= now
                        && dormant
                            .connection
                            .mailbox()
                            .claim_dormant(*key as u32, dormant.generation)
                })
                .map(|(key, _)| key)
                .collect();
            due.into_iter().map(|key| table.remove(key)).collect()
        };
        for dormant in woken {
            self.spawn(dormant, "keep-alive deadline");
        }
    }

    /// Gives a woken connection a task again, or ends it if its client closed the socket;
    /// `cause` is what woke it.
    fn spawn(&self, dormant: Dormant, cause: &'static str) {
        let Some(runtime) = self.runtime.get() else {
            return;
        };
        tracing::debug!(
            client_id = dormant.connection.mailbox().client_id(),
            cause,
            "connection woke"
        );
        let fd = dormant.socket.as_raw_fd();
        // Failing only for a socket that was never registered; it is watched by its task now.
        let _ = runtime.registry.deregister(&mut SourceFd(&fd));
        // A socket that woke readable with nothing to read was closed by its peer. Its
        // connection ends without a task of its own, usually within the one poll made here:
        // a task holds about 1 KB, and a mass disconnect would make one for every dormant
        // connection at once, faster than they run.
        if cause == SOCKET_READY && matches!(dormant.socket.peek(&mut [0; 1]), Ok(0)) {
            let mut closing = Box::pin(connection::close_closed(dormant));
            if closing.as_mut().now_or_never().is_none() {
                runtime.spawn(closing);
            }
            return;
        }
        runtime.spawn(connection::wake(dormant));
    }

    /// The set's own task: wakes connections whose sockets became readable, and checks
    /// deadlines every [`SWEEP`].
    async fn watch(self: Arc<Self>, mut ready: AsyncFd<Poll>) {
        let mut events = Events::with_capacity(EVENTS);
        let mut sweep = tokio::time::interval(SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                guard = ready.readable_mut() => {
                    let Ok(mut guard) = guard else {
                        tracing::error!("dormant connections' epoll set failed; they are no longer watched");
                        return;
                    };
                    if let Err(error) = guard.get_inner_mut().poll(&mut events, Some(Duration::ZERO)) {
                        if error.kind() != std::io::ErrorKind::Interrupted {
                            tracing::warn!(%error, "polling dormant connections failed");
                        }
                    }
                    // A full batch may have left events behind: poll again before waiting.
                    if events.iter().count() < EVENTS {
                        guard.clear_ready();
                    }
                    for event in events.iter() {
                        self.wake_ready(event.token().0);
                    }
                }
                _ = sweep.tick() => self.sweep(Instant::now()),
            }
        }
    }
}

/// A generation number unique among the tickets alive at once (it wraps after 2^32).
fn next_generation() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_is_never_seen_before_it_passes() {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(600);
        let tick = SweepTick::at_or_after(started, Some(deadline));
        assert!(SweepTick::at_or_before(started, started + Duration::from_millis(599)) < tick);
        assert!(SweepTick::at_or_before(started, started + Duration::from_millis(750)) >= tick);
        let on_a_sweep = SweepTick::at_or_after(started, Some(started + SWEEP * 2));
        assert_eq!(
            on_a_sweep,
            SweepTick::at_or_before(started, started + SWEEP * 2)
        );
    }

    #[test]
    fn no_deadline_never_passes() {
        let started = Instant::now();
        let far = started + Duration::from_secs(60 * 60 * 24 * 365 * 100);
        assert!(SweepTick::at_or_before(started, far) < SweepTick::NEVER);
        assert_eq!(SweepTick::at_or_after(started, None), SweepTick::NEVER);
    }

    /// The table's entries are what dormancy costs beyond the connection itself. `slab`'s
    /// entry is private; this is its shape (a vacant entry keeps the next free key).
    #[test]
    fn a_table_entry_is_24_bytes() {
        #[allow(dead_code)]
        enum Entry {
            Vacant(usize),
            Occupied(Dormant),
        }
        assert_eq!(std::mem::size_of::<Dormant>(), 24);
        assert_eq!(std::mem::size_of::<Entry>(), 24);
    }
}
