//! Allocations of finished messages, kept per thread for the next routed ones.
//!
//! Every routed message is one `Arc<Message>` allocation (128-byte chunk), made when it is
//! routed and freed when its last recipient is done with it: once per message in fan-in and
//! pairs. glibc serves those from its per-thread cache and fast bins only while nothing large
//! is freed: a read slab or write chunk going back to the heap (which under load is many
//! times a second) makes free consolidate the fast bins, and the next allocations and frees
//! then take the sorted-bin paths. Callgrind put malloc and free at ~400 instructions per
//! message in 4 KiB fan-in (12 % of the broker's instructions), against ~100 here (taking
//! and keeping a spare, emptying it, the thread-local lookups).
//!
//! A message whose last reference is released through [`release`] is emptied at once (its
//! payload may be a slice of a read slab, which must not be kept alive) and its allocation
//! kept, up to [`SPARE_MESSAGES`] per thread; [`share`] takes one before allocating. A
//! message routed on one thread and finished on another leaves its allocation there: each
//! thread's spares stay bounded, and a thread with none allocates as before.
//!
//! # Invariants
//! Every spare is unique (strong count 1, no weak references) and holds [`vacant`].

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;
use fulmar_proto::{Properties, QoS, TopicName};

use crate::message::Message;

/// Spare allocations a thread keeps: a wave of messages routed from one read (up to a few
/// thousand small ones from a 256 KiB read) is mostly served from them. 4,096 × 128 bytes is
/// 512 KiB per worker thread at most, held once such a wave has passed.
pub const SPARE_MESSAGES: usize = 4096;

thread_local! {
    static SPARES: RefCell<Vec<Arc<Message>>> = const { RefCell::new(Vec::new()) };
}

/// What a spare allocation holds: nothing that owns or shares memory.
fn vacant() -> Message {
    Message {
        topic: TopicName::empty(),
        payload: Bytes::new(),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
        origin: None,
        expires_at: None,
    }
}

/// `Arc::new(message)`, in a spare allocation of this thread when it has one.
pub fn share(message: Message) -> Arc<Message> {
    // `try_with`: a thread being torn down has no spares any more.
    let spare = SPARES.try_with(|spares| spares.borrow_mut().pop());
    match spare.ok().flatten() {
        Some(mut spare) => match Arc::get_mut(&mut spare) {
            Some(slot) => {
                *slot = message;
                spare
            }
            None => Arc::new(message),
        },
        None => Arc::new(message),
    }
}

/// Drops one reference to a message; when it was the last, empties the message and keeps
/// its allocation for [`share`] while this thread has room for another spare.
///
/// Costs a recipient that is not the last one load of the strong count it is about to
/// decrement anyway (inline: in fan-out every recipient but the last takes this path).
#[inline]
pub fn release(message: Arc<Message>) {
    if Arc::strong_count(&message) == 1 {
        keep(message);
    }
}

/// The last reference: empties the message and keeps its allocation.
#[inline(never)]
fn keep(mut message: Arc<Message>) {
    let Some(slot) = Arc::get_mut(&mut message) else {
        return;
    };
    drop(std::mem::replace(slot, vacant()));
    let _ = SPARES.try_with(|spares| {
        let mut spares = spares.borrow_mut();
        if spares.len() < SPARE_MESSAGES {
            spares.push(message);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: Bytes) -> Message {
        Message {
            payload,
            topic: TopicName::new("a/b").unwrap(),
            qos: QoS::AtLeastOnce,
            ..vacant()
        }
    }

    #[test]
    fn the_last_release_empties_the_message_and_the_next_share_reuses_its_allocation() {
        let payload = Bytes::from(vec![7u8; 4096]);
        let first = share(message(payload.clone()));
        let other = Arc::clone(&first);
        let address = Arc::as_ptr(&first);
        release(first);
        assert!(!payload.is_unique(), "a recipient still holds the message");
        release(other);
        assert!(
            payload.is_unique(),
            "a spare keeps no payload (it may pin a read slab)"
        );
        let second = share(message(Bytes::from_static(b"x")));
        assert_eq!(Arc::as_ptr(&second), address);
        assert_eq!(&second.payload[..], b"x");
        assert_eq!(second.topic.as_str(), "a/b");
    }

    #[test]
    fn a_thread_keeps_at_most_its_share_of_spares() {
        let messages: Vec<_> = (0..SPARE_MESSAGES + 10).map(|_| share(vacant())).collect();
        messages.into_iter().for_each(release);
        assert_eq!(SPARES.with_borrow(Vec::len), SPARE_MESSAGES);
        SPARES.with_borrow_mut(Vec::clear);
    }
}
