//! PUBACK, PUBREC, PUBREL, PUBCOMP (MQTT 5.0 sections 3.4-3.7): one shape for all four.

use bytes::{BufMut, BytesMut};

use crate::codec::read::Reader;
use crate::codec::write::check_reason;
use crate::properties::PropertyContext;
use crate::{
    DecodeError, EncodeError, PacketId, PacketType, Properties, ProtocolVersion, ReasonCode,
};

/// A QoS 1/2 acknowledgement: PUBACK, PUBREC, PUBREL or PUBCOMP (the [`crate::Packet`] variant
/// says which). In 3.x only `packet_id` is on the wire; the reason is then always Success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The PUBLISH (or PUBREL) being acknowledged.
    pub packet_id: PacketId,
    /// Outcome (5.0).
    pub reason: ReasonCode,
    /// Properties (5.0): reason string and user properties.
    pub properties: Properties,
}

fn context(packet: PacketType) -> PropertyContext {
    match packet {
        PacketType::PubAck => PropertyContext::PubAck,
        PacketType::PubRec => PropertyContext::PubRec,
        PacketType::PubRel => PropertyContext::PubRel,
        _ => PropertyContext::PubComp,
    }
}

impl Ack {
    /// A successful acknowledgement without properties.
    pub fn new(packet_id: PacketId) -> Self {
        Self {
            packet_id,
            reason: ReasonCode::Success,
            properties: Properties::default(),
        }
    }

    pub(crate) fn decode(
        packet: PacketType,
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let mut ack = Self::new(r.packet_id()?);
        // 5.0 section 3.4.2.1: remaining length 2 means Success without properties.
        if version.is_v5() && !r.is_empty() {
            ack.reason = r.reason(packet)?;
            // 5.0 section 3.4.2.2.1: below 4 bytes there is no property length.
            if !r.is_empty() {
                ack.properties = Properties::decode(r, context(packet))?;
            }
        }
        Ok(ack)
    }

    pub(crate) fn body_len(
        &self,
        packet: PacketType,
        version: ProtocolVersion,
    ) -> Result<usize, EncodeError> {
        if !version.is_v5() {
            return Ok(2);
        }
        check_reason(self.reason, packet)?;
        Ok(match (self.reason, self.properties.is_empty()) {
            (ReasonCode::Success, true) => 2,
            (_, true) => 3,
            (_, false) => 3 + self.properties.encoded_len(context(packet))?,
        })
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        if !version.is_v5() {
            return;
        }
        match (self.reason, self.properties.is_empty()) {
            (ReasonCode::Success, true) => {}
            (reason, true) => out.put_u8(reason.value()),
            (reason, false) => {
                out.put_u8(reason.value());
                self.properties.write(out);
            }
        }
    }
}
