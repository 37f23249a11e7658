//! Builders shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Arc;

use bytes::Bytes;
use fulmar_proto::{Properties, ProtocolVersion, QoS, SubscriptionOptions, TopicFilter, TopicName};
use fulmar_store::{
    ClientId, MessageBody, Mutation, QueuedDelivery, SessionRecord, Store, SubscriptionRecord,
};

pub fn id(client: &str) -> ClientId {
    Arc::from(client)
}

pub fn session(client: &str) -> Mutation {
    Mutation::PutSession(SessionRecord {
        client_id: id(client),
        expiry_interval_secs: 3600,
        last_disconnect_ms: Some(1_700_000_000_000),
        protocol_version: ProtocolVersion::V5,
        username: Some(format!("user-of-{client}")),
    })
}

pub fn body(store: &dyn Store, topic: &str, payload: &[u8]) -> Arc<MessageBody> {
    Arc::new(MessageBody {
        id: store.next_message_id(),
        topic: TopicName::new(topic).unwrap(),
        payload: Bytes::copy_from_slice(payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
        expires_at_ms: None,
    })
}

pub fn delivery(message: &Arc<MessageBody>) -> QueuedDelivery {
    QueuedDelivery {
        message: Arc::clone(message),
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_ids: vec![],
    }
}

pub fn enqueue(client: &str, seq: u64, message: &Arc<MessageBody>) -> Mutation {
    Mutation::Enqueue {
        client_id: id(client),
        seq,
        delivery: delivery(message),
    }
}

pub fn subscription(filter: &str, qos: QoS) -> SubscriptionRecord {
    SubscriptionRecord {
        filter: TopicFilter::new(filter).unwrap(),
        options: SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        },
        subscription_id: None,
    }
}
