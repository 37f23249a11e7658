//! PUBLISH (MQTT 5.0 section 3.3, 3.1.1 section 3.3).

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::read::Reader;
use crate::properties::PropertyContext;
use crate::{DecodeError, EncodeError, PacketId, Properties, ProtocolVersion, QoS, TopicName};

/// An application message on its way to or from a client.
///
/// `packet_id` is `Some` exactly when `qos` is above 0; `dup` is only set with QoS above 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Re-delivery of an earlier attempt (QoS > 0 only) [MQTT-3.3.1-2].
    pub dup: bool,
    /// Delivery QoS.
    pub qos: QoS,
    /// Retain flag: store as the topic's retained message (to server) or sent from the retained
    /// store / retain-as-published (to client).
    pub retain: bool,
    /// Topic; empty only in a 5.0 PUBLISH that carries a Topic Alias.
    pub topic: TopicName,
    /// Packet identifier, present iff QoS > 0 [MQTT-2.2.1-2].
    pub packet_id: Option<PacketId>,
    /// PUBLISH properties (5.0 only).
    pub properties: Properties,
    /// Application payload, shared and never copied per subscriber.
    pub payload: Bytes,
}

impl Publish {
    /// Decodes the body; `flags` were checked with the fixed header (no QoS 3, no DUP on QoS 0).
    pub(crate) fn decode(
        flags: u8,
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let qos = QoS::try_from((flags >> 1) & 0b11).map_err(|e| DecodeError::InvalidQoS(e.0))?;
        let raw_topic = r.binary()?; // [MQTT-3.3.2-1]
        let packet_id = match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce | QoS::ExactlyOnce => Some(r.packet_id()?),
        };
        let properties = if version.is_v5() {
            Properties::decode(r, PropertyContext::Publish)?
        } else {
            Properties::default()
        };
        let topic = if raw_topic.is_empty() && version.is_v5() {
            if properties.topic_alias.is_none() {
                // 5.0 section 3.3.2.3.4: an empty topic needs a Topic Alias.
                return Err(DecodeError::ProtocolError(
                    "empty topic name without topic alias",
                ));
            }
            TopicName::empty()
        } else {
            // [MQTT-3.3.2-2] no wildcards; [MQTT-4.7.3-1] non-empty (3.x).
            TopicName::from_bytes(raw_topic).map_err(DecodeError::InvalidTopicName)?
        };
        Ok(Self {
            dup: flags & 0b1000 != 0,
            qos,
            retain: flags & 0b0001 != 0,
            topic,
            packet_id,
            properties,
            payload: r.rest(),
        })
    }

    /// A borrowed view of this PUBLISH, as the encoder takes it.
    pub fn view(&self) -> PublishView<'_> {
        PublishView {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: &self.topic,
            packet_id: self.packet_id,
            properties: &self.properties,
            payload: &self.payload,
        }
    }
}

/// A PUBLISH to encode whose topic, properties and payload are borrowed: a broker encodes each
/// recipient's copy straight from the one shared message, without building an owned
/// [`Publish`] (and the reference-count traffic of cloning its `Bytes`) per recipient.
/// Same field rules as [`Publish`].
#[derive(Debug, Clone, Copy)]
pub struct PublishView<'a> {
    /// Re-delivery of an earlier attempt (QoS > 0 only) [MQTT-3.3.1-2].
    pub dup: bool,
    /// Delivery QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Topic; empty only in a 5.0 PUBLISH that carries a Topic Alias.
    pub topic: &'a TopicName,
    /// Packet identifier, present iff QoS > 0 [MQTT-2.2.1-2].
    pub packet_id: Option<PacketId>,
    /// PUBLISH properties (5.0 only).
    pub properties: &'a Properties,
    /// Application payload.
    pub payload: &'a Bytes,
}

impl PublishView<'_> {
    /// The owned PUBLISH (shares topic and payload).
    pub fn to_publish(&self) -> Publish {
        Publish {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic.clone(),
            packet_id: self.packet_id,
            properties: self.properties.clone(),
            payload: self.payload.clone(),
        }
    }

    /// Exact encoded size of the whole packet for `version`; validates it.
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        crate::codec::frame_len(self.header_len(version)? + self.payload.len())
    }

    pub(crate) fn first_byte(&self) -> u8 {
        0x30 | u8::from(self.dup) << 3 | self.qos.as_u8() << 1 | u8::from(self.retain)
    }

    /// Size of the variable header (everything but the payload); validates the packet.
    pub(crate) fn header_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        match (self.qos, self.packet_id) {
            (QoS::AtMostOnce, Some(_)) => {
                return Err(EncodeError::InvalidPacket("QoS 0 PUBLISH with a packet id"));
            }
            (QoS::AtMostOnce, None) if self.dup => {
                return Err(EncodeError::InvalidPacket("DUP set on QoS 0 PUBLISH"));
                // [MQTT-3.3.1-2]
            }
            (QoS::AtLeastOnce | QoS::ExactlyOnce, None) => {
                return Err(EncodeError::InvalidPacket(
                    "QoS > 0 PUBLISH without a packet id",
                ));
            }
            _ => {}
        }
        let mut len = 2 + self.topic.len();
        if self.packet_id.is_some() {
            len += 2;
        }
        if version.is_v5() {
            if self.topic.is_empty() && self.properties.topic_alias.is_none() {
                return Err(EncodeError::InvalidPacket(
                    "empty topic without topic alias",
                ));
            }
            len += self.properties.encoded_len(PropertyContext::Publish)?;
        } else if self.topic.is_empty() {
            return Err(EncodeError::InvalidPacket("empty topic name"));
        }
        Ok(len)
    }

    /// Writes the variable header sized by `header_len`.
    pub(crate) fn write_header(&self, version: ProtocolVersion, out: &mut BytesMut) {
        crate::codec::write::put_bin(out, self.topic.as_str().as_bytes());
        if let Some(id) = self.packet_id {
            out.put_u16(id.get());
        }
        if version.is_v5() {
            self.properties.write(out);
        }
    }
}
