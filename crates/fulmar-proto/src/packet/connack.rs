//! CONNACK (MQTT 5.0 section 3.2, 3.1.1 section 3.2).

use bytes::{BufMut, BytesMut};

use crate::codec::read::Reader;
use crate::codec::write::check_reason;
use crate::properties::PropertyContext;
use crate::reason::{connack_v3_code, connack_v3_reason};
use crate::{DecodeError, EncodeError, PacketType, Properties, ProtocolVersion, ReasonCode};

/// The server's answer to CONNECT.
///
/// In 3.x the reason is carried as a connect return code: Success 0, UnsupportedProtocolVersion 1,
/// ClientIdentifierNotValid 2, BadUserNameOrPassword 4, NotAuthorized 5, anything else 3 (server
/// unavailable), which decodes back as ServerUnavailable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// The server resumed an existing session. Always false in 3.1, which has no such flag, and
    /// false with a failure reason [MQTT-3.2.2-4] [MQTT-3.2.2-6].
    pub session_present: bool,
    /// Connect result.
    pub reason: ReasonCode,
    /// CONNACK properties (5.0 only).
    pub properties: Properties,
}

impl ConnAck {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let flags = r.u8()?;
        // 3.1 has no Session Present flag: the byte is reserved and unused.
        let session_present = version != ProtocolVersion::V3_1 && flags & 0x01 != 0;
        if version != ProtocolVersion::V3_1 && flags & 0xFE != 0 {
            return Err(DecodeError::Malformed("reserved CONNACK flags set")); // [MQTT-3.2.2-1]
        }
        let reason = if version.is_v5() {
            r.reason(PacketType::ConnAck)?
        } else {
            let code = r.u8()?;
            connack_v3_reason(code).ok_or(DecodeError::InvalidReasonCode {
                code,
                packet: "CONNACK",
            })?
        };
        if session_present && reason != ReasonCode::Success {
            // [MQTT-3.2.2-4] (3.1.1) [MQTT-3.2.2-6] (5.0)
            return Err(DecodeError::ProtocolError(
                "session present with a refused connection",
            ));
        }
        let properties = if version.is_v5() {
            Properties::decode(r, PropertyContext::ConnAck)?
        } else {
            Properties::default()
        };
        Ok(Self {
            session_present,
            reason,
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.session_present && self.reason != ReasonCode::Success {
            return Err(EncodeError::InvalidPacket(
                "session present with a failure reason",
            ));
        }
        if version.is_v5() {
            check_reason(self.reason, PacketType::ConnAck)?;
            Ok(2 + self.properties.encoded_len(PropertyContext::ConnAck)?)
        } else {
            Ok(2)
        }
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        let session_present = self.session_present && version != ProtocolVersion::V3_1;
        out.put_u8(u8::from(session_present));
        if version.is_v5() {
            out.put_u8(self.reason.value());
            self.properties.write(out);
        } else {
            out.put_u8(connack_v3_code(self.reason));
        }
    }
}
