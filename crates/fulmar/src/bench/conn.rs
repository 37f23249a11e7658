//! One benchmark connection as a poll-driven state machine: no task of its own, so a group
//! task can drive many of them (see `engine.rs`).
//!
//! Each [`Conn::poll`] reads everything the socket has (several reads at most), handles the
//! packets (stats, acknowledgements), tops up its publisher's batch, and writes its pending
//! bytes in as few syscalls as the socket allows. Over TLS or WebSocket the same bytes go
//! through the layer's `poll_read`/`poll_write`, and a write round ends with a flush.

use std::io::ErrorKind;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::ReadBuf;

use super::engine::{GroupStats, Phase, Shared, Tick};
use super::payload::Stamp;
use super::track::{Arrival, SeqTrack};
use super::transport::Stream;
use super::wire::{kind, parse, put_ack, Incoming, PublishTemplate};
use std::sync::atomic::Ordering::Relaxed;

/// Initial size of the read buffer (grown only for packets larger than it).
const READ_BUF: usize = 64 * 1024;
/// A publisher tops its batch up when fewer bytes than this are pending...
const BATCH_LOW: usize = 16 * 1024;
/// ... to about this many bytes.
const BATCH_HIGH: usize = 64 * 1024;
/// Reads or write rounds per poll before yielding to the group's other connections.
const ROUNDS_PER_POLL: usize = 8;
/// Highest publisher index a subscriber tracks (payloads claiming more are counted as foreign).
const MAX_PUBLISHERS: usize = 1 << 20;
/// First read of a layered stream, on the stack: a layered stream has no readiness to wait on,
/// so this is what lets an idle connection hold no read buffer (as a plain TCP one does).
const PROBE: usize = 512;

/// The publishing side of a connection.
#[derive(Debug)]
pub struct Publisher {
    /// The encoded PUBLISH to copy.
    pub template: PublishTemplate,
    /// Global publisher index (slot in the shared `sent` counters).
    pub index: usize,
    /// Subscribers that receive each of its messages (for the flow limit).
    pub receivers: u64,
    /// QoS of the publications.
    pub qos: u8,
    /// Messages per second; 0 = unlimited.
    pub rate: u64,
    /// Messages to send in all, if `--count`.
    pub limit: Option<u64>,
    /// Unacknowledged publishes allowed (QoS 1/2).
    pub window: u32,
    /// Next sequence number (= messages sent so far).
    pub seq: u64,
    /// Unacknowledged publishes now.
    pub inflight: u32,
    /// `in_use[id]`: packet id `id` awaits its PUBACK / PUBCOMP.
    pub in_use: Vec<bool>,
    /// Next packet id to try.
    pub next_id: u16,
    /// No more publishes will be sent.
    pub done: bool,
}

impl Publisher {
    /// A packet id not in use; the caller has checked `inflight < window` (≤ 65535).
    fn allocate_id(&mut self) -> u16 {
        loop {
            let id = self.next_id;
            self.next_id = if id == u16::MAX { 1 } else { id + 1 };
            if !self.in_use[usize::from(id)] {
                self.in_use[usize::from(id)] = true;
                self.inflight += 1;
                return id;
            }
        }
    }

    fn release_id(&mut self, id: u16) {
        let slot = &mut self.in_use[usize::from(id)];
        if *slot {
            *slot = false;
            self.inflight -= 1;
        }
    }
}

/// A connection after its handshake (and subscriptions).
///
/// # Invariants
/// - `unflushed` is only ever set for a [`Stream::Layered`]; while it is set, bytes handed to
///   the layer may still sit in it, and every poll flushes again until it is clear.
#[derive(Debug)]
pub struct Conn {
    stream: Stream,
    /// Bytes were written into the layer (TLS, WebSocket) since its last completed flush.
    unflushed: bool,
    /// Bytes read, `rbuf[rstart..rend]` not yet parsed.
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    /// Bytes to write: `wbuf[wpos..]`.
    wbuf: Vec<u8>,
    wpos: usize,
    /// The broker speaks 5.0 (PUBLISH has a property block).
    v5: bool,
    /// Set for publishers.
    pub publisher: Option<Publisher>,
    /// Per-publisher sequence state, for subscribers (indexed by publisher).
    pub tracks: Vec<SeqTrack>,
    /// The connection failed; it is skipped from now on.
    pub dead: bool,
}

impl Conn {
    /// Wraps a connected stream; `leftover` are bytes already read past the handshake.
    pub fn new(stream: Stream, v5: bool, leftover: &[u8], publisher: Option<Publisher>) -> Self {
        Self {
            stream,
            unflushed: false,
            // Empty until the first read: an idle connection holds no buffer.
            rbuf: leftover.to_vec(),
            rstart: 0,
            rend: leftover.len(),
            wbuf: Vec::with_capacity(if publisher.is_some() { BATCH_HIGH } else { 0 }),
            wpos: 0,
            v5,
            publisher,
            tracks: Vec::new(),
            dead: false,
        }
    }

    /// Queues a PINGREQ (sent on the next poll) so the broker's keep-alive never fires.
    pub fn queue_ping(&mut self) {
        self.wbuf.extend_from_slice(&[0xC0, 0x00]);
    }

    /// Drives the connection as far as it can go without blocking. Returns the time (on the
    /// payload clock) at which a rate-limited publisher wants to be polled again.
    pub fn poll(
        &mut self,
        cx: &mut Context<'_>,
        tick: &Tick,
        shared: &Shared,
        stats: &mut GroupStats,
    ) -> std::io::Result<Option<u64>> {
        self.read(cx, tick, stats)?;
        let mut deadline = None;
        for round in 0.. {
            deadline = self.fill(tick, shared, stats);
            let flushed = self.write(cx)?;
            let more = flushed
                && deadline.is_none()
                && self
                    .publisher
                    .as_ref()
                    .is_some_and(|p| p.rate == 0 && !p.done);
            let window_open = self
                .publisher
                .as_ref()
                .is_some_and(|p| p.qos == 0 || p.inflight < p.window);
            if !(more && window_open) {
                break;
            }
            if round + 1 == ROUNDS_PER_POLL {
                cx.waker().wake_by_ref(); // still room to send: come back after the others
                break;
            }
        }
        Ok(deadline)
    }

    fn read(
        &mut self,
        cx: &mut Context<'_>,
        tick: &Tick,
        stats: &mut GroupStats,
    ) -> std::io::Result<()> {
        let mut rounds = 0;
        loop {
            if let Stream::Tcp(tcp) = &self.stream {
                match tcp.poll_read_ready(cx) {
                    Poll::Pending => return Ok(()),
                    Poll::Ready(result) => result?,
                }
            }
            let n = match &mut self.stream {
                Stream::Layered(io) if self.rbuf.is_empty() => {
                    let mut probe = [0u8; PROBE];
                    let mut buf = ReadBuf::new(&mut probe);
                    match Pin::new(io.as_mut()).poll_read(cx, &mut buf) {
                        Poll::Pending => return Ok(()),
                        Poll::Ready(result) => result?,
                    }
                    let n = buf.filled().len();
                    self.make_room();
                    self.rbuf[self.rend..self.rend + n].copy_from_slice(&probe[..n]);
                    n
                }
                _ => {
                    self.make_room();
                    match &mut self.stream {
                        Stream::Tcp(tcp) => match tcp.try_read(&mut self.rbuf[self.rend..]) {
                            Ok(n) => n,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                            Err(e) => return Err(e),
                        },
                        Stream::Layered(io) => {
                            let mut buf = ReadBuf::new(&mut self.rbuf[self.rend..]);
                            match Pin::new(io.as_mut()).poll_read(cx, &mut buf) {
                                Poll::Pending => return Ok(()),
                                Poll::Ready(result) => result?,
                            }
                            buf.filled().len()
                        }
                    }
                }
            };
            if n == 0 {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            self.rend += n;
            self.handle_input(tick, stats)?;
            rounds += 1;
            if rounds == ROUNDS_PER_POLL {
                cx.waker().wake_by_ref();
                return Ok(());
            }
        }
    }

    /// Ensures free space after `rend`: compacts, or grows for a packet larger than the buffer.
    fn make_room(&mut self) {
        if self.rstart == self.rend {
            (self.rstart, self.rend) = (0, 0);
        }
        if self.rend < self.rbuf.len() {
            return;
        }
        if self.rstart > 0 {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            (self.rstart, self.rend) = (0, self.rend - self.rstart);
        } else {
            let grown = (self.rbuf.len() * 2).max(READ_BUF);
            self.rbuf.resize(grown, 0);
        }
    }

    fn handle_input(&mut self, tick: &Tick, stats: &mut GroupStats) -> std::io::Result<()> {
        let now = super::payload::now_ns();
        loop {
            let parsed = parse(&self.rbuf[self.rstart..self.rend], self.v5)
                .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))?;
            let Some((packet, used)) = parsed else {
                return Ok(());
            };
            match packet {
                Incoming::Publish {
                    qos,
                    packet_id,
                    payload,
                } => {
                    record(&mut self.tracks, payload, now, tick, stats);
                    match qos {
                        1 => put_ack(&mut self.wbuf, kind::PUBACK, packet_id),
                        2 => put_ack(&mut self.wbuf, kind::PUBREC, packet_id),
                        _ => {}
                    }
                }
                Incoming::Ack { kind: k, packet_id } => match k {
                    kind::PUBREL => put_ack(&mut self.wbuf, kind::PUBCOMP, packet_id),
                    kind::PUBREC => put_ack(&mut self.wbuf, kind::PUBREL, packet_id),
                    _ => {
                        if let Some(p) = self.publisher.as_mut() {
                            p.release_id(packet_id);
                        }
                    }
                },
                Incoming::Other(14) => {
                    return Err(std::io::Error::other("the broker sent DISCONNECT"));
                }
                Incoming::Other(_) => {}
            }
            self.rstart += used;
        }
    }

    /// Appends the publishes now due; returns the next due time if the rate holds it back.
    fn fill(&mut self, tick: &Tick, shared: &Shared, stats: &mut GroupStats) -> Option<u64> {
        let p = self.publisher.as_mut()?;
        if p.done {
            return None;
        }
        if tick.phase < Phase::Run {
            return None;
        }
        if tick.phase >= Phase::Stop || p.limit.is_some_and(|l| p.seq >= l) {
            // With --count a publisher is done once everything it sent is acknowledged.
            if tick.phase >= Phase::Stop || p.inflight == 0 {
                p.done = true;
                stats.publishers_done += 1;
            }
            return None;
        }
        let now = super::payload::now_ns();
        let pending = self.wbuf.len() - self.wpos;
        if pending >= BATCH_LOW {
            return None;
        }
        let mut n = ((BATCH_HIGH - pending) / p.template.len()).max(1) as u64;
        let mut deadline = None;
        if p.rate > 0 {
            let elapsed = u128::from(now.saturating_sub(tick.run_start));
            let due =
                u64::try_from(elapsed * u128::from(p.rate) / 1_000_000_000).unwrap_or(u64::MAX) + 1;
            let allowed = due.saturating_sub(p.seq);
            if allowed <= n {
                n = allowed;
                let next = u128::from(p.seq + n) * 1_000_000_000 / u128::from(p.rate);
                deadline = Some(tick.run_start + u64::try_from(next).unwrap_or(u64::MAX));
            }
        }
        if p.qos > 0 {
            n = n.min(u64::from(p.window - p.inflight));
        }
        if let Some(limit) = p.limit {
            n = n.min(limit - p.seq);
        }
        if shared.max_outstanding > 0 && p.receivers > 0 {
            let expected = shared.expected.load(Relaxed);
            // Skipped (presumably lost) messages are settled: never wait for them.
            let arrived = shared.distinct.load(Relaxed) + shared.settled.load(Relaxed);
            let outstanding = expected.saturating_sub(arrived);
            if outstanding >= shared.max_outstanding {
                return Some(now + 200_000); // subscribers are behind: look again shortly
            }
            n = n.min((shared.max_outstanding - outstanding) / p.receivers + 1);
            shared.expected.fetch_add(n * p.receivers, Relaxed);
        }
        if self.wpos > 0 && self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        }
        for _ in 0..n {
            let id = if p.qos > 0 { p.allocate_id() } else { 0 };
            // Sequence numbers are u32 on the wire; 4 billion messages per publisher is beyond any run.
            p.template.append(&mut self.wbuf, id, p.seq as u32, now);
            p.seq += 1;
        }
        stats.published += n;
        deadline
    }

    /// Writes pending bytes; true when everything went out (through a layer: and was flushed).
    fn write(&mut self, cx: &mut Context<'_>) -> std::io::Result<bool> {
        match &mut self.stream {
            Stream::Tcp(tcp) => {
                while self.wpos < self.wbuf.len() {
                    match tcp.poll_write_ready(cx) {
                        Poll::Pending => return Ok(false),
                        Poll::Ready(result) => result?,
                    }
                    match tcp.try_write(&self.wbuf[self.wpos..]) {
                        Ok(n) => self.wpos += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
            Stream::Layered(io) => {
                while self.wpos < self.wbuf.len() {
                    match Pin::new(io.as_mut()).poll_write(cx, &self.wbuf[self.wpos..]) {
                        Poll::Pending => return Ok(false),
                        Poll::Ready(Ok(0)) => return Err(ErrorKind::WriteZero.into()),
                        Poll::Ready(Ok(n)) => self.wpos += n,
                        Poll::Ready(Err(e)) => return Err(e),
                    }
                    self.unflushed = true;
                }
                if self.unflushed {
                    match Pin::new(io.as_mut()).poll_flush(cx) {
                        // `wbuf` is fully handed over (`wpos == len`), so `fill` may reuse it.
                        Poll::Pending => return Ok(false),
                        Poll::Ready(result) => result?,
                    }
                    self.unflushed = false;
                }
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        Ok(true)
    }
}

/// Accounts one received payload.
#[inline]
fn record(
    tracks: &mut Vec<SeqTrack>,
    payload: &[u8],
    now: u64,
    tick: &Tick,
    stats: &mut GroupStats,
) {
    stats.received += 1;
    let Some(stamp) = Stamp::read(payload) else {
        stats.foreign += 1;
        return;
    };
    let publisher = stamp.publisher as usize;
    if publisher >= MAX_PUBLISHERS {
        stats.foreign += 1;
        return;
    }
    if publisher >= tracks.len() {
        tracks.resize_with(publisher + 1, SeqTrack::default);
    }
    let track = &mut tracks[publisher];
    let skipped = track.skipped;
    match track.record(stamp.seq) {
        Arrival::Duplicate => {}
        Arrival::OutOfOrder => {
            stats.distinct += 1;
            stats.settled -= 1; // a skipped message turned up after all
        }
        Arrival::InOrder => stats.distinct += 1,
    }
    stats.settled += track.skipped - skipped;
    stats.last_receive = now;
    if now >= tick.window_start && now < tick.window_end {
        stats.in_window += 1;
        stats.bytes_in_window += payload.len() as u64;
        stats.record_latency(now.saturating_sub(stamp.sent_ns));
    }
    if now >= tick.window_start {
        stats.after_window_start += 1;
    }
}
