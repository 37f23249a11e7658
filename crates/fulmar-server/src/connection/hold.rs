//! Holding back replies: for a congested subscriber, and until the commit that makes them true.
//!
//! A message goes into every matching session's bounded queue. When an online subscriber's
//! queue reaches its congestion mark, the publisher is held: the broker stops reading from it
//! and holds its PUBACK/PUBREC until the queue drains, so TCP backpressure slows the publisher
//! to the subscriber's pace instead of it outrunning the queue into drops. Each queue holds a
//! publisher for at most `limits.max_publisher_hold_ms` from when it joined the hold: a
//! subscriber that stays stuck that long is then marked stalled, nobody is held for it again
//! until it drains, and what no longer fits its queue is dropped and counted. Only that queue
//! is marked: another that became congested later in the same hold (typically a live
//! subscriber flooded when the other publishers resume) gets its own full time to drain.
//! A publisher is never held for its own queue.
//!
//! A reply whose truth depends on a store commit (PUBACK/PUBREC of a message queued for a
//! persistent session or retained, SUBACK, UNSUBACK, PUBCOMP of a stored QoS 2 id) carries
//! that commit's ticket and waits for it. Reading goes on meanwhile (up to
//! [`MAX_PENDING_COMMITS`] replies), so one connection's acknowledgements pipeline behind the
//! group commit instead of one fsync per round trip.
//!
//! # Invariants
//! Replies leave in the order their requests arrived [MQTT-4.6.0-2..4]: once one is held,
//! every later one queues behind it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fulmar_core::Session;
use fulmar_proto::{Packet, PacketId, QoS, ReasonCode};
use fulmar_store::CommitTicket;

use crate::mailbox::Mailbox;

/// Replies waiting for commits before reading from the client pauses (bounds `replies`).
pub const MAX_PENDING_COMMITS: usize = 1024;

/// A reply to send once what it waits for is done.
#[derive(Debug)]
pub enum Reply {
    /// PUBACK / PUBREC for a routed PUBLISH: QoS, packet id, reason.
    Ack(QoS, Option<PacketId>, ReasonCode),
    /// Any other packet (SUBACK, UNSUBACK, PUBCOMP); boxed, as these are rare next to acks.
    Packet(Box<Packet>),
}

#[derive(Debug)]
struct Held {
    reply: Reply,
    /// The commit the reply waits for; `None` once committed (or when there is none).
    ticket: Option<CommitTicket>,
}

/// A congested queue a publisher waits for, and when it stops waiting for it.
#[derive(Debug)]
struct Awaited {
    mailbox: Arc<Mailbox>,
    until: Instant,
    /// The queue's [`Mailbox::drains`] when `until` was set: a different count later means
    /// it drained meanwhile, so it has not been stuck all that time.
    drains: u64,
}

/// Replies held back, and the queues they wait for.
///
/// # Invariants
/// `waiting_on` holds each mailbox at most once.
#[derive(Debug, Default)]
pub struct PublisherHold {
    replies: VecDeque<Held>,
    waiting_on: Vec<Awaited>,
    /// `limits.max_publisher_hold_ms` when the connection began (a reloaded configuration
    /// applies to new connections, and reading it per PUBLISH cost a lock).
    max_hold: Duration,
}

/// What woke a waiting hold.
pub enum Woke {
    /// A congested queue drained or the hold expired.
    Drained,
    /// The first pending commit finished (`false`: it failed).
    Committed(bool),
}

impl PublisherHold {
    /// Nothing held yet; a congested queue holds the publisher for at most `max_hold`.
    pub fn new(max_hold: Duration) -> Self {
        PublisherHold {
            max_hold,
            ..PublisherHold::default()
        }
    }

    /// Acknowledges a routed PUBLISH now, or holds the acknowledgement when `congested`
    /// queues, a pending `ticket` or earlier held replies say so.
    pub fn acknowledge(
        &mut self,
        session: &mut Session,
        (qos, packet_id, reason): (QoS, Option<PacketId>, ReasonCode),
        congested: impl IntoIterator<Item = Arc<Mailbox>>,
        ticket: Option<CommitTicket>,
    ) {
        let max_hold = self.max_hold;
        let mut now = None;
        for mailbox in congested {
            if !self
                .waiting_on
                .iter()
                .any(|a| Arc::ptr_eq(&a.mailbox, &mailbox))
            {
                let until = *now.get_or_insert_with(Instant::now) + max_hold;
                let drains = mailbox.drains();
                self.waiting_on.push(Awaited {
                    mailbox,
                    until,
                    drains,
                });
            }
        }
        if qos == QoS::AtMostOnce {
            return;
        }
        self.reply(session, Reply::Ack(qos, packet_id, reason), ticket);
    }

    /// Sends `reply` now, or queues it behind held replies and its own commit.
    pub fn reply(&mut self, session: &mut Session, reply: Reply, ticket: Option<CommitTicket>) {
        if ticket.is_none() && self.replies.is_empty() && self.waiting_on.is_empty() {
            send(session, reply);
        } else {
            self.replies.push_back(Held { reply, ticket });
        }
    }

    /// Whether reading from the client must pause: a congested subscriber holds the
    /// publisher, or too many replies wait for commits.
    pub fn is_holding(&self) -> bool {
        !self.waiting_on.is_empty() || self.replies.len() >= MAX_PENDING_COMMITS
    }

    /// Whether anything waits (a wake-up source for the run loop).
    pub fn is_waiting(&self) -> bool {
        !self.waiting_on.is_empty() || !self.replies.is_empty()
    }

    /// Resolves when the first awaited queue is relieved (see `Outbox::is_relieved`), the
    /// hold expires, or the first pending commit finishes.
    pub async fn wait(&mut self) -> Woke {
        let deadline = self.waiting_on.iter().map(|a| a.until).min();
        let congested = self.waiting_on.first().map(|a| Arc::clone(&a.mailbox));
        let ticket = self.replies.iter_mut().find_map(|h| h.ticket.as_mut());
        let drained = async {
            match (congested, deadline) {
                (Some(mailbox), Some(deadline)) => tokio::select! {
                    _ = mailbox.relieved() => {}
                    _ = tokio::time::sleep_until(deadline.into()) => {}
                },
                _ => std::future::pending().await,
            }
        };
        let committed = async {
            match ticket {
                Some(ticket) => std::future::poll_fn(|cx| Pin::new(&mut *ticket).poll(cx)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = drained => Woke::Drained,
            result = committed => {
                if let Err(e) = &result {
                    tracing::error!(error = %e, "store commit failed; the reply that waited for it reports an error");
                }
                Woke::Committed(result.is_ok())
            }
        }
    }

    /// Records the outcome of the first pending commit (see [`Woke::Committed`]).
    pub fn committed(&mut self, ok: bool) {
        if let Some(held) = self.replies.iter_mut().find(|h| h.ticket.is_some()) {
            held.ticket = None;
            if !ok {
                if let Reply::Ack(_, _, reason) = &mut held.reply {
                    *reason = ReasonCode::ImplementationSpecificError;
                }
            }
        }
    }

    /// Releases the held replies that may go (in order): all of them up to the first one
    /// still waiting for its commit, once every awaited queue is relieved. A queue not
    /// relieved when its time is up is marked stalled and no longer awaited, so no
    /// publisher is held for it again until it drains (a stuck subscriber costs its
    /// publishers one hold, not one per message). Returns whether a queue's time ran out.
    pub fn release_ready(&mut self, session: &mut Session, now: Instant) -> bool {
        let max_hold = self.max_hold;
        let mut expired = false;
        self.waiting_on.retain_mut(|awaited| {
            if !awaited.mailbox.holds_publishers() {
                return false;
            }
            if now < awaited.until {
                return true;
            }
            let drains = awaited.mailbox.drains();
            if drains != awaited.drains {
                // Congested again after draining (other publishers refilled it): a new hold.
                awaited.until = now + max_hold;
                awaited.drains = drains;
                return true;
            }
            awaited.mailbox.mark_stalled();
            expired = true;
            false
        });
        if self.waiting_on.is_empty() {
            while self.replies.front().is_some_and(|h| h.ticket.is_none()) {
                if let Some(held) = self.replies.pop_front() {
                    send(session, held.reply);
                }
            }
        }
        expired
    }
}

/// Queues `reply` on the session. A failed commit's PUBACK/PUBREC goes out as 0x83 on MQTT 5;
/// 3.1.1 cannot refuse, so there the acknowledgement is withheld (the client re-sends the
/// message on its next connection).
fn send(session: &mut Session, reply: Reply) {
    match reply {
        Reply::Ack(qos, packet_id, reason) => {
            if reason == ReasonCode::ImplementationSpecificError && !session.version().is_v5() {
                return;
            }
            session.acknowledge(qos, packet_id, reason);
        }
        Reply::Packet(packet) => session.queue_transmit(*packet),
    }
}
