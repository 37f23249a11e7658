//! One suite of behaviour, run against both backends. For redb every case also closes the
//! store, reopens it and checks that the snapshot and the usage survived unchanged.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use fulmar_proto::{PacketId, PropertyValues, QoS, RetainHandling, SubscriptionOptions};
use fulmar_proto::{TopicFilter, TopicName};
use fulmar_store::{
    Durability, InflightRecord, InflightState, MemoryStore, MessageBody, Mutation, QueueUsage,
    RedbOptions, RedbStore, Store, StoreError, SubscriptionRecord, WillRecord,
};

use common::{body, delivery, enqueue, id, session, subscription};

fn apply(store: &dyn Store, batch: Vec<Mutation>) {
    store.apply(&batch, Durability::Immediate).unwrap();
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

/// Runs `case` on a memory store and on a redb store, then reopens the redb store.
fn both(case: fn(&dyn Store)) {
    case(&MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    let (snapshot, usage) = {
        let store = RedbStore::open(dir.path(), RedbOptions::default()).unwrap();
        case(&store);
        (store.load_all().unwrap(), store.usage())
    };
    let reopened = RedbStore::open(dir.path(), RedbOptions::default()).unwrap();
    assert_eq!(
        reopened.load_all().unwrap(),
        snapshot,
        "snapshot survives a reopen"
    );
    assert_eq!(reopened.usage(), usage, "usage is rebuilt on open");
}

#[test]
fn put_and_delete_session_cascades_everything_it_owns() {
    both(|store| {
        let m = body(store, "t", b"hello");
        let will = body(store, "will", b"bye");
        apply(store, vec![session("a"), session("b")]);
        apply(
            store,
            vec![
                Mutation::PutSubscription {
                    client_id: id("a"),
                    subscription: subscription("t/#", QoS::AtLeastOnce),
                },
                enqueue("a", 1, &m),
                enqueue("b", 1, &m),
                Mutation::PutInboundQos2 {
                    client_id: id("a"),
                    packet_id: pid(7),
                },
                Mutation::PutWill {
                    client_id: id("a"),
                    will: WillRecord {
                        message: Arc::clone(&will),
                        publish_at_ms: 5,
                    },
                },
            ],
        );
        assert_eq!(store.usage().bodies, 2);
        apply(store, vec![Mutation::DeleteSession { client_id: id("a") }]);
        let snapshot = store.load_all().unwrap();
        assert_eq!(snapshot.sessions.len(), 1);
        assert_eq!(&*snapshot.sessions[0].session.client_id, "b");
        assert_eq!(store.queue_usage("a"), QueueUsage::default());
        assert_eq!(store.usage().bodies, 1, "the will's body was collected");
        assert_eq!(store.usage().queued, 1);
    });
}

#[test]
fn subscriptions_are_put_replaced_and_deleted() {
    both(|store| {
        apply(store, vec![session("a")]);
        let options = SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
        };
        let full = SubscriptionRecord {
            filter: TopicFilter::new("$share/g/x/+").unwrap(),
            options,
            subscription_id: Some(268_435_455),
        };
        let put = |s: SubscriptionRecord| Mutation::PutSubscription {
            client_id: id("a"),
            subscription: s,
        };
        apply(
            store,
            vec![put(subscription("a/b", QoS::AtMostOnce)), put(full.clone())],
        );
        apply(store, vec![put(subscription("a/b", QoS::AtLeastOnce))]);
        let subs = &store.load_all().unwrap().sessions[0].subscriptions;
        assert_eq!(subs.len(), 2);
        assert!(subs.contains(&full));
        assert!(subs.contains(&subscription("a/b", QoS::AtLeastOnce)));
        apply(
            store,
            vec![Mutation::DeleteSubscription {
                client_id: id("a"),
                filter: TopicFilter::new("a/b").unwrap(),
            }],
        );
        assert_eq!(
            store.load_all().unwrap().sessions[0].subscriptions,
            vec![full]
        );
    });
}

#[test]
fn queue_keeps_sequence_order_and_dequeues_ranges_and_single_entries() {
    both(|store| {
        apply(store, vec![session("a")]);
        let bodies: Vec<_> = (0..6).map(|i| body(store, "q", &[i; 10])).collect();
        // Enqueued out of order: read back in sequence order.
        let batch = (0..6u64)
            .rev()
            .map(|i| enqueue("a", i * 10, &bodies[i as usize]))
            .collect();
        apply(store, batch);
        let per = bodies[0].queued_size();
        assert_eq!(
            store.queue_usage("a"),
            QueueUsage {
                messages: 6,
                bytes: 6 * per
            }
        );
        let range = |seqs| Mutation::Dequeue {
            client_id: id("a"),
            seqs,
        };
        apply(store, vec![range(0..=20), range(40..=40), range(55..=55)]);
        let snapshot = store.load_all().unwrap();
        let queue = &snapshot.sessions[0].queue;
        let seqs: Vec<u64> = queue.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, vec![30, 50]);
        assert_eq!(queue[0].1, delivery(&bodies[3]));
        assert_eq!(snapshot.sessions[0].next_seq(), 51);
        assert_eq!(
            store.queue_usage("a"),
            QueueUsage {
                messages: 2,
                bytes: 2 * per
            }
        );
        apply(store, vec![range(0..=u64::MAX)]);
        assert_eq!(store.queue_usage("a"), QueueUsage::default());
        assert_eq!(store.usage().bodies, 0, "dequeued bodies are collected");
    });
}

#[test]
fn a_body_fanned_out_to_many_sessions_is_stored_once() {
    both(|store| {
        let m = body(store, "fan", &[7u8; 1000]);
        let mut batch: Vec<Mutation> = (0..50).map(|i| session(&format!("s{i}"))).collect();
        batch.extend((0..50).map(|i| enqueue(&format!("s{i}"), 0, &m)));
        apply(store, batch);
        let usage = store.usage();
        assert_eq!((usage.bodies, usage.queued), (1, 50));
        assert!(usage.body_bytes < 1100, "payload written once: {usage:?}");
        let snapshot = store.load_all().unwrap();
        let first = &snapshot.sessions[0].queue[0].1.message;
        assert!(snapshot
            .sessions
            .iter()
            .all(|s| Arc::ptr_eq(&s.queue[0].1.message, first)));
        for i in 0..49 {
            let seqs = 0..=0;
            apply(
                store,
                vec![Mutation::Dequeue {
                    client_id: id(&format!("s{i}")),
                    seqs,
                }],
            );
        }
        assert_eq!(store.usage().bodies, 1, "one reference left");
        apply(
            store,
            vec![Mutation::DeleteSession {
                client_id: id("s49"),
            }],
        );
        assert_eq!(store.usage().bodies, 0);
    });
}

#[test]
fn inflight_moves_through_its_states_and_keeps_send_order() {
    both(|store| {
        apply(store, vec![session("a")]);
        let (m1, m2) = (body(store, "x", b"1"), body(store, "x", b"2"));
        let put = |packet_id, seq, state, delivery| Mutation::PutInflight {
            client_id: id("a"),
            inflight: InflightRecord {
                packet_id,
                seq,
                state,
                delivery,
            },
        };
        apply(
            store,
            vec![
                put(
                    pid(9),
                    1,
                    InflightState::AwaitingPubRec,
                    Some(delivery(&m1)),
                ),
                put(
                    pid(3),
                    2,
                    InflightState::AwaitingPubAck,
                    Some(delivery(&m2)),
                ),
            ],
        );
        assert_eq!(store.usage().bodies, 2);
        // PUBREC: the message is released, the exchange waits for PUBCOMP.
        apply(
            store,
            vec![put(pid(9), 1, InflightState::AwaitingPubComp, None)],
        );
        assert_eq!(store.usage().bodies, 1);
        let inflight = store.load_all().unwrap().sessions[0].inflight.clone();
        let order: Vec<u16> = inflight.iter().map(|i| i.packet_id.get()).collect();
        assert_eq!(order, vec![9, 3], "send order, not packet id order");
        assert_eq!(inflight[0].state, InflightState::AwaitingPubComp);
        assert_eq!(inflight[1].delivery, Some(delivery(&m2)));
        let bad = put(
            pid(4),
            3,
            InflightState::AwaitingPubComp,
            Some(delivery(&m1)),
        );
        assert!(store.apply(&[bad], Durability::Immediate).is_err());
        let delete = |n| Mutation::DeleteInflight {
            client_id: id("a"),
            packet_id: pid(n),
        };
        apply(store, vec![delete(3)]);
        assert_eq!(store.usage().bodies, 0);
        assert_eq!(store.load_all().unwrap().sessions[0].inflight.len(), 1);
    });
}

#[test]
fn inbound_qos2_ids_are_put_and_deleted() {
    both(|store| {
        apply(store, vec![session("a")]);
        let put = |n| Mutation::PutInboundQos2 {
            client_id: id("a"),
            packet_id: pid(n),
        };
        apply(store, vec![put(300), put(2), put(65535)]);
        apply(
            store,
            vec![Mutation::DeleteInboundQos2 {
                client_id: id("a"),
                packet_id: pid(2),
            }],
        );
        let ids = store.load_all().unwrap().sessions[0].inbound_qos2.clone();
        assert_eq!(ids, vec![pid(300), pid(65535)]);
    });
}

#[test]
fn retained_messages_are_replaced_and_deleted_per_topic() {
    both(|store| {
        let (old, new, other) = (
            body(store, "r/1", b"old"),
            body(store, "r/1", b"new"),
            body(store, "r/2", b"x"),
        );
        apply(
            store,
            vec![
                Mutation::PutRetained(old),
                Mutation::PutRetained(Arc::clone(&other)),
            ],
        );
        apply(store, vec![Mutation::PutRetained(Arc::clone(&new))]);
        assert_eq!(store.usage().bodies, 2, "the replaced body was collected");
        assert_eq!(store.load_all().unwrap().retained, vec![new, other]);
        let topic = TopicName::new("r/1").unwrap();
        apply(store, vec![Mutation::DeleteRetained { topic }]);
        assert_eq!(store.load_all().unwrap().retained.len(), 1);
        assert_eq!(store.usage().bodies, 1);
    });
}

#[test]
fn wills_are_put_replaced_and_deleted() {
    both(|store| {
        apply(store, vec![session("a")]);
        let put = |m: &Arc<MessageBody>, at| Mutation::PutWill {
            client_id: id("a"),
            will: WillRecord {
                message: Arc::clone(m),
                publish_at_ms: at,
            },
        };
        let (w1, w2) = (body(store, "w", b"1"), body(store, "w", b"2"));
        apply(store, vec![put(&w1, 10)]);
        apply(store, vec![put(&w2, 20)]);
        let will = store.load_all().unwrap().sessions[0].will.clone().unwrap();
        assert_eq!((will.message, will.publish_at_ms), (w2, 20));
        apply(store, vec![Mutation::DeleteWill { client_id: id("a") }]);
        assert!(store.load_all().unwrap().sessions[0].will.is_none());
        assert_eq!(store.usage().bodies, 0);
    });
}

#[test]
fn a_failing_batch_leaves_no_trace() {
    both(|store| {
        apply(store, vec![session("keep")]);
        let before = store.load_all().unwrap();
        let m = body(store, "t", b"p");
        let batch = vec![
            session("new"),
            enqueue("new", 0, &m),
            Mutation::PutRetained(Arc::clone(&m)),
            Mutation::DeleteSession {
                client_id: id("keep"),
            },
            enqueue("nobody", 0, &m),
        ];
        let err = store.apply(&batch, Durability::Immediate).unwrap_err();
        assert!(
            matches!(err, StoreError::UnknownSession(ref c) if c == "nobody"),
            "{err}"
        );
        assert_eq!(store.load_all().unwrap(), before);
        assert_eq!(store.usage().bodies, 0);
        assert_eq!(store.queue_usage("new"), QueueUsage::default());
    });
}

#[test]
fn message_fields_and_properties_round_trip() {
    both(|store| {
        apply(store, vec![session("a")]);
        let properties = PropertyValues {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            content_type: Some("text/plain".into()),
            response_topic: Some(TopicName::new("reply/to").unwrap()),
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
            ..PropertyValues::default()
        }
        .into();
        let m = Arc::new(MessageBody {
            id: store.next_message_id(),
            topic: TopicName::new("a/b/c").unwrap(),
            payload: Bytes::from_static(b"\xff\x00payload"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties,
            expires_at_ms: Some(1_800_000_000_123),
        });
        let mut d = delivery(&m);
        d.subscription_ids = vec![1, 268_435_455];
        d.retain = true;
        let batch = vec![Mutation::Enqueue {
            client_id: id("a"),
            seq: 4,
            delivery: d.clone(),
        }];
        apply(store, batch);
        assert_eq!(store.load_all().unwrap().sessions[0].queue, vec![(4, d)]);
    });
}

#[test]
fn message_ids_are_never_handed_out_twice_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let last = {
        let store = RedbStore::open(dir.path(), RedbOptions::default()).unwrap();
        let m = body(&store, "t", b"x");
        apply(&store, vec![Mutation::PutRetained(Arc::clone(&m))]);
        m.id
    };
    let store = RedbStore::open(dir.path(), RedbOptions::default()).unwrap();
    assert!(store.next_message_id() > last);
}

#[test]
fn queued_entries_are_read_back_by_sequence() {
    both(|store| {
        let first = body(store, "t/1", b"one");
        let second = body(store, "t/2", b"two");
        apply(store, vec![session("a"), session("b")]);
        apply(
            store,
            vec![
                enqueue("a", 4, &first),
                enqueue("a", 9, &second),
                enqueue("b", 5, &second),
            ],
        );
        let got = store.load_queued("a", &[9, 5, 4]).unwrap();
        assert_eq!(got.len(), 3, "one answer per requested sequence, in order");
        assert_eq!(got[0].as_ref().unwrap().message.payload, &b"two"[..]);
        assert!(got[1].is_none(), "sequence 5 belongs to session b only");
        assert_eq!(got[2].as_ref().unwrap().message.topic.as_str(), "t/1");
        apply(
            store,
            vec![Mutation::Dequeue {
                client_id: id("a"),
                seqs: 4..=4,
            }],
        );
        assert!(store.load_queued("a", &[4]).unwrap()[0].is_none());
        assert!(store.load_queued("nobody", &[9]).unwrap()[0].is_none());
    });
}
