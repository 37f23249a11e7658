//! UNSUBACK (MQTT 5.0 section 3.11, 3.1.1 section 3.11).

use bytes::{BufMut, BytesMut};

use crate::codec::read::Reader;
use crate::codec::write::check_reason;
use crate::properties::PropertyContext;
use crate::{
    DecodeError, EncodeError, PacketId, PacketType, Properties, ProtocolVersion, ReasonCode,
};

/// The server's answer to UNSUBSCRIBE. 3.x carries only the packet id: `reasons` and
/// `properties` are empty on decode and ignored on encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// The UNSUBSCRIBE being answered.
    pub packet_id: PacketId,
    /// Properties (5.0): reason string, user properties.
    pub properties: Properties,
    /// One result per filter (5.0).
    pub reasons: Vec<ReasonCode>,
}

impl UnsubAck {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let mut ack = Self {
            packet_id,
            properties: Properties::default(),
            reasons: Vec::new(),
        };
        if version.is_v5() {
            ack.properties = Properties::decode(r, PropertyContext::UnsubAck)?;
            while !r.is_empty() {
                ack.reasons.push(r.reason(PacketType::UnsubAck)?);
            }
        }
        Ok(ack)
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if !version.is_v5() {
            return Ok(2);
        }
        for &reason in &self.reasons {
            check_reason(reason, PacketType::UnsubAck)?;
        }
        Ok(2 + self.properties.encoded_len(PropertyContext::UnsubAck)? + self.reasons.len())
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.write(out);
            for reason in &self.reasons {
                out.put_u8(reason.value());
            }
        }
    }
}
