//! Sans-IO codec for MQTT 3.1 (`MQIsdp`, level 3), 3.1.1 (level 4) and 5.0 (level 5).
//!
//! This crate turns bytes into [`Packet`]s and back. It knows nothing about sockets, async runtimes
//! or clocks: the server feeds it a read buffer and gets packets out, or hands it a packet and gets
//! bytes appended to a write buffer. Every rule the specification states about the *shape* of a
//! packet is checked here, once, so the session layer can trust what it receives.
//!
//! # Map
//! - [`types`](ProtocolVersion): protocol version, [`QoS`], [`PacketId`].
//! - `topic`: validated [`TopicName`] / [`TopicFilter`] newtypes over `Bytes`, and [`topic_matches`].
//! - `reason`: [`ReasonCode`], the MQTT 5.0 reason code table, with the 3.x mappings.
//! - `properties`: [`Properties`], every MQTT 5.0 property, with per-packet validation.
//! - `packet/`: one file per packet type; the [`Packet`] enum and its dispatch.
//! - `codec/`: the fixed header, [`decode`], [`encode`], [`encoded_len`], [`encode_publish`];
//!   `read.rs` is the bounds-checked cursor every decoder uses, `write.rs` the encoding helpers.
//! - `error`: [`DecodeError`] (with its one mapping to a reason code) and [`EncodeError`].
//!
//! # Zero copy
//! [`decode`] splits the packet's bytes off the read buffer and freezes them; topic names, filters,
//! payloads and binary properties are slices of that one allocation. [`encode_publish_header`] lets
//! the writer send a shared payload without copying it per subscriber.
#![warn(missing_docs)]

mod codec;
mod error;
mod packet;
mod properties;
mod reason;
mod topic;
mod types;

pub use codec::{
    decode, encode, encode_publish, encode_publish_header, encode_publish_view,
    encode_publish_view_header, encoded_len, publish_encoded_len, MAX_REMAINING_LENGTH,
};
pub use error::{DecodeError, EncodeError};
pub use packet::{
    Ack, Auth, ConnAck, Connect, Disconnect, Packet, PacketType, Publish, PublishView,
    RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
pub use properties::{property_id, Properties, PropertyValues};
pub use reason::{ReasonCode, UnknownReasonCode};
pub use topic::{topic_matches, TopicError, TopicFilter, TopicName, MAX_TOPIC_LEN};
pub use types::{InvalidQoS, PacketId, ProtocolVersion, QoS};
