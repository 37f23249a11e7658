//! SUBSCRIBE (MQTT 5.0 section 3.8, 3.1.1 section 3.8) and subscription options.

use bytes::{BufMut, BytesMut};

use crate::codec::read::Reader;
use crate::properties::PropertyContext;
use crate::{DecodeError, EncodeError, PacketId, Properties, ProtocolVersion, QoS, TopicFilter};

/// Whether retained messages are sent when a subscription is made (5.0 section 3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum RetainHandling {
    /// Send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// Send them only if the subscription did not already exist.
    SendAtSubscribeIfNew = 1,
    /// Do not send retained messages.
    DoNotSend = 2,
}

/// The options byte of one subscription. In 3.x only `qos` exists; the rest stays default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS the client wants to receive.
    pub qos: QoS,
    /// Do not send the client its own publications (5.0).
    pub no_local: bool,
    /// Keep the retain flag as published instead of clearing it (5.0).
    pub retain_as_published: bool,
    /// Retained message handling (5.0).
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    fn decode(byte: u8, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let qos = QoS::try_from(byte & 0b11).map_err(|e| DecodeError::InvalidQoS(e.0))?;
        if !version.is_v5() {
            if byte & 0xFC != 0 {
                return Err(DecodeError::Malformed(
                    "reserved subscription option bits set",
                )); // [MQTT-3-8.3-4]
            }
            return Ok(Self {
                qos,
                ..Self::default()
            });
        }
        if byte & 0xC0 != 0 {
            return Err(DecodeError::Malformed(
                "reserved subscription option bits set",
            )); // [MQTT-3.8.3-5]
        }
        let retain_handling = match (byte >> 4) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendAtSubscribeIfNew,
            2 => RetainHandling::DoNotSend,
            // 5.0 section 3.8.3.1: "It is a Protocol Error to send a Retain Handling value of 3".
            _ => return Err(DecodeError::ProtocolError("retain handling 3")),
        };
        Ok(Self {
            qos,
            no_local: byte & 0x04 != 0,
            retain_as_published: byte & 0x08 != 0,
            retain_handling,
        })
    }

    fn encode(self, version: ProtocolVersion) -> u8 {
        let mut byte = self.qos.as_u8();
        if version.is_v5() {
            byte |= u8::from(self.no_local) << 2
                | u8::from(self.retain_as_published) << 3
                | (self.retain_handling as u8) << 4;
        }
        byte
    }
}

/// A request to add subscriptions. In 3.x the 5.0-only options are not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Identifier echoed by SUBACK.
    pub packet_id: PacketId,
    /// Properties (5.0): subscription identifier, user properties.
    pub properties: Properties,
    /// At least one filter with its options [MQTT-3.8.3-3].
    pub filters: Vec<(TopicFilter, SubscriptionOptions)>,
}

impl Subscribe {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            Properties::decode(r, PropertyContext::Subscribe)?
        } else {
            Properties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            let filter = r.topic_filter()?;
            let options = SubscriptionOptions::decode(r.u8()?, version)?;
            if options.no_local && filter.shared().is_some() {
                return Err(DecodeError::ProtocolError(
                    "no local on a shared subscription",
                )); // [MQTT-3.8.3-4]
            }
            filters.push((filter, options));
        }
        if filters.is_empty() {
            return Err(DecodeError::ProtocolError(
                "SUBSCRIBE without topic filters",
            )); // [MQTT-3.8.3-3]
        }
        Ok(Self {
            packet_id,
            properties,
            filters,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::InvalidPacket(
                "SUBSCRIBE without topic filters",
            ));
        }
        let mut len = 2;
        if version.is_v5() {
            len += self.properties.encoded_len(PropertyContext::Subscribe)?;
        }
        for (filter, options) in &self.filters {
            if version.is_v5() && options.no_local && filter.shared().is_some() {
                return Err(EncodeError::InvalidPacket(
                    "no local on a shared subscription",
                ));
            }
            len += 2 + filter.len() + 1;
        }
        Ok(len)
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.write(out);
        }
        for (filter, options) in &self.filters {
            crate::codec::write::put_bin(out, filter.as_str().as_bytes());
            out.put_u8(options.encode(version));
        }
    }
}
