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
    drains: u32,
}

/// How long a congested queue may hold the publisher of `session`.
fn max_hold(session: &Session) -> Duration {
    Duration::from_millis(u64::from(session.limits().max_publisher_hold_ms))
}

/// Replies held back, and the queues they wait for.
#[derive(Debug, Default)]
pub struct PublisherHold {
    /// What is held; allocated only while something is (most connections never hold
    /// anything, and inline the two queues would cost every connection 56 bytes).
    /// How long a hold may last comes with the session's limits
    /// ([`SessionLimits::max_publisher_hold_ms`]): those the connection began with, as a
    /// reloaded configuration applies to new connections, and without a lock per PUBLISH.
    held: Option<Box<Holding>>,
}

/// The held replies and awaited queues of a hold in progress.
///
/// # Invariants
/// `waiting_on` holds each mailbox at most once.
#[derive(Debug, Default)]
struct Holding {
    replies: VecDeque<Held>,
    waiting_on: Vec<Awaited>,
}

/// What woke a waiting hold.
pub enum Woke {
    /// A congested queue drained or the hold expired.
    Drained,
    /// The first pending commit finished (`false`: it failed).
    Committed(bool),
}

impl PublisherHold {
    /// Acknowledges a routed PUBLISH now, or holds the acknowledgement when `congested`
    /// queues, a pending `ticket` or earlier held replies say so. Inlined: it runs once per
    /// PUBLISH, and out of line it cost ~20 instructions per message in fan-in.
    #[inline]
    pub fn acknowledge(
        &mut self,
        session: &mut Session,
        (qos, packet_id, reason): (QoS, Option<PacketId>, ReasonCode),
        congested: impl IntoIterator<Item = Arc<Mailbox>>,
        ticket: Option<CommitTicket>,
    ) {
        let mut until = None;
        for mailbox in congested {
            let held = self.held.get_or_insert_default();
            if !held
                .waiting_on
                .iter()
                .any(|a| Arc::ptr_eq(&a.mailbox, &mailbox))
            {
                let until = *until.get_or_insert_with(|| Instant::now() + max_hold(session));
                let drains = mailbox.drains();
                held.waiting_on.push(Awaited {
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
        if ticket.is_none() && self.held.is_none() {
            send(session, reply);
        } else {
            let held = self.held.get_or_insert_default();
            held.replies.push_back(Held { reply, ticket });
        }
    }

    /// Whether reading from the client must pause: a congested subscriber holds the
    /// publisher, or too many replies wait for commits.
    pub fn is_holding(&self) -> bool {
        self.held.as_ref().is_some_and(|held| {
            !held.waiting_on.is_empty() || held.replies.len() >= MAX_PENDING_COMMITS
        })
    }

    /// Whether anything waits (a wake-up source for the run loop).
    pub fn is_waiting(&self) -> bool {
        self.held.is_some()
    }

    /// Resolves when the first awaited queue is relieved (see `Outbox::is_relieved`), the
    /// hold expires, or the first pending commit finishes.
    pub async fn wait(&mut self) -> Woke {
        let Some(held) = self.held.as_deref_mut() else {
            return std::future::pending().await;
        };
        let deadline = held.waiting_on.iter().map(|a| a.until).min();
        let congested = held.waiting_on.first().map(|a| Arc::clone(&a.mailbox));
        let ticket = held.replies.iter_mut().find_map(|h| h.ticket.as_mut());
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
        let Some(held) = self.held.as_deref_mut() else {
            return;
        };
        if let Some(held) = held.replies.iter_mut().find(|h| h.ticket.is_some()) {
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
        let max_hold = max_hold(session);
        let Some(held) = self.held.as_deref_mut() else {
            return false;
        };
        let mut expired = false;
        held.waiting_on.retain_mut(|awaited| {
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
        if held.waiting_on.is_empty() {
            while held.replies.front().is_some_and(|h| h.ticket.is_none()) {
                if let Some(reply) = held.replies.pop_front() {
                    send(session, reply.reply);
                }
            }
            if held.replies.is_empty() {
                self.held = None;
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

#[cfg(test)]
mod tests {
    use fulmar_core::{QueueLimits, SessionLimits};
    use fulmar_proto::{PacketId, ProtocolVersion};

    use super::*;
    use crate::mailbox::tests::delivery;

    fn puback(id: u16) -> (QoS, Option<PacketId>, ReasonCode) {
        (QoS::AtLeastOnce, PacketId::new(id), ReasonCode::Success)
    }

    #[test]
    fn a_hold_holds_the_ack_until_the_queue_is_relieved_and_then_frees_itself() {
        let now = Instant::now();
        let mut session = Session::new(
            ProtocolVersion::V3_1_1,
            0,
            Arc::new(SessionLimits {
                max_publisher_hold_ms: 60_000,
                ..SessionLimits::default()
            }),
            now,
        );
        let mut hold = PublisherHold::default();
        assert!(std::mem::size_of::<PublisherHold>() <= 8);
        hold.acknowledge(&mut session, puback(1), [], None);
        assert!(
            session.poll_transmit().is_some(),
            "no congestion: acked at once"
        );
        assert!(!hold.is_waiting(), "nothing held, nothing allocated");

        let limits = QueueLimits {
            max_messages: 16,
            max_bytes: 1 << 20,
        };
        let subscriber = Arc::new(Mailbox::new("sub".into(), limits));
        while !subscriber.push(delivery()).congested {}
        hold.acknowledge(&mut session, puback(2), [Arc::clone(&subscriber)], None);
        assert!(hold.is_holding() && session.poll_transmit().is_none());
        hold.acknowledge(&mut session, puback(3), [], None);
        assert!(
            session.poll_transmit().is_none(),
            "later acks queue behind [MQTT-4.6.0-2]"
        );

        assert!(!hold.release_ready(&mut session, now), "still congested");
        assert!(hold.is_holding());
        let mut drained = Vec::new();
        subscriber.with(|outbox| outbox.pop_batch(usize::MAX, usize::MAX, &mut drained));
        subscriber.after_drain();
        assert!(!hold.release_ready(&mut session, now));
        let released: Vec<_> = std::iter::from_fn(|| session.poll_transmit()).collect();
        assert_eq!(released.len(), 2, "both held acks, in order: {released:?}");
        assert!(!hold.is_waiting(), "an emptied hold frees its queues");
    }
}
