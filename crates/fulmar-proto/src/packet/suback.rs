//! SUBACK (MQTT 5.0 section 3.9, 3.1.1 section 3.9).

use bytes::{BufMut, BytesMut};

use crate::codec::read::Reader;
use crate::codec::write::check_reason;
use crate::properties::PropertyContext;
use crate::reason::{suback_v3_code, suback_v3_reason};
use crate::{
    DecodeError, EncodeError, PacketId, PacketType, Properties, ProtocolVersion, ReasonCode,
};

/// The server's answer to SUBSCRIBE: one reason per requested filter, in order.
///
/// In 3.x the codes are 0, 1, 2 (granted QoS) and 0x80 (failure): every error reason encodes as
/// 0x80, which decodes as [`ReasonCode::UnspecifiedError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// The SUBSCRIBE being answered.
    pub packet_id: PacketId,
    /// Properties (5.0): reason string, user properties.
    pub properties: Properties,
    /// Granted QoS or failure, one per filter.
    pub reasons: Vec<ReasonCode>,
}

impl SubAck {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            Properties::decode(r, PropertyContext::SubAck)?
        } else {
            Properties::default()
        };
        let mut reasons = Vec::new();
        while !r.is_empty() {
            let reason = if version.is_v5() {
                r.reason(PacketType::SubAck)?
            } else {
                let code = r.u8()?;
                // [MQTT-3.9.3-2] other values are reserved
                suback_v3_reason(code).ok_or(DecodeError::InvalidReasonCode {
                    code,
                    packet: "SUBACK",
                })?
            };
            reasons.push(reason);
        }
        Ok(Self {
            packet_id,
            properties,
            reasons,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if !version.is_v5() {
            return Ok(2 + self.reasons.len());
        }
        for &reason in &self.reasons {
            check_reason(reason, PacketType::SubAck)?;
        }
        Ok(2 + self.properties.encoded_len(PropertyContext::SubAck)? + self.reasons.len())
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.write(out);
            for reason in &self.reasons {
                out.put_u8(reason.value());
            }
        } else {
            for &reason in &self.reasons {
                out.put_u8(suback_v3_code(reason));
            }
        }
    }
}
