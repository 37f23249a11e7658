//! A batch applied at once (where writes undone later in the batch are skipped) must leave
//! exactly the state and usage that applying its mutations one at a time leaves.

mod common;

use std::sync::Arc;

use fulmar_proto::{PacketId, TopicName};
use fulmar_store::{
    Durability, InflightRecord, InflightState, MemoryStore, MessageBody, Mutation, Store,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::{body, delivery, id, session};

fn random_mutation(rng: &mut StdRng, bodies: &[Arc<MessageBody>]) -> Mutation {
    let client = ["a", "b"][rng.gen_range(0..2)];
    let seq = rng.gen_range(0..4u64);
    let pid = PacketId::new(rng.gen_range(1..4u16)).unwrap();
    let message = &bodies[rng.gen_range(0..bodies.len())];
    match rng.gen_range(0..10) {
        0 | 1 => Mutation::Enqueue {
            client_id: id(client),
            seq,
            delivery: delivery(message),
        },
        2 => Mutation::Dequeue {
            client_id: id(client),
            seqs: seq..=seq + rng.gen_range(0..2),
        },
        3 | 4 => {
            let state = [
                InflightState::AwaitingPubAck,
                InflightState::AwaitingPubRec,
                InflightState::AwaitingPubComp,
            ][rng.gen_range(0..3)];
            Mutation::PutInflight {
                client_id: id(client),
                inflight: InflightRecord {
                    packet_id: pid,
                    seq,
                    state,
                    delivery: (state != InflightState::AwaitingPubComp).then(|| delivery(message)),
                },
            }
        }
        5 => Mutation::DeleteInflight {
            client_id: id(client),
            packet_id: pid,
        },
        6 => Mutation::PutInboundQos2 {
            client_id: id(client),
            packet_id: pid,
        },
        7 => Mutation::DeleteInboundQos2 {
            client_id: id(client),
            packet_id: pid,
        },
        8 => Mutation::PutRetained(Arc::clone(message)),
        _ => Mutation::DeleteRetained {
            topic: TopicName::new(message.topic.as_str()).unwrap(),
        },
    }
}

#[test]
fn a_batch_ends_where_its_mutations_one_by_one_end() {
    for case in 0..300u64 {
        let mut rng = StdRng::seed_from_u64(case);
        let (batched, stepwise) = (MemoryStore::new(), MemoryStore::new());
        let bodies: Vec<_> = (0..3)
            .map(|i| body(&batched, &format!("t/{i}"), &[i as u8; 8]))
            .collect();
        for store in [&batched, &stepwise] {
            store
                .apply(&[session("a"), session("b")], Durability::Immediate)
                .unwrap();
        }
        // Some state from before the batch, which the batch's deletes must still remove.
        let before: Vec<Mutation> = (0..rng.gen_range(0..6))
            .map(|_| random_mutation(&mut rng, &bodies))
            .collect();
        let batch: Vec<Mutation> = (0..rng.gen_range(1..24))
            .map(|_| random_mutation(&mut rng, &bodies))
            .collect();
        for store in [&batched, &stepwise] {
            for m in &before {
                store
                    .apply(std::slice::from_ref(m), Durability::Immediate)
                    .unwrap();
            }
        }
        batched.apply(&batch, Durability::Immediate).unwrap();
        for m in &batch {
            stepwise
                .apply(std::slice::from_ref(m), Durability::Immediate)
                .unwrap();
        }
        assert_eq!(
            batched.load_all().unwrap(),
            stepwise.load_all().unwrap(),
            "case {case}: {batch:#?}"
        );
        assert_eq!(batched.usage(), stepwise.usage(), "case {case}");
        for client in ["a", "b"] {
            assert_eq!(batched.queue_usage(client), stepwise.queue_usage(client));
        }
    }
}
