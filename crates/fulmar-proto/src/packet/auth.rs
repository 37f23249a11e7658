//! AUTH (MQTT 5.0 section 3.15): enhanced authentication exchanges. Does not exist in 3.x.

use bytes::{BufMut, BytesMut};

use crate::codec::read::Reader;
use crate::codec::write::check_reason;
use crate::properties::PropertyContext;
use crate::{DecodeError, EncodeError, PacketType, Properties, ProtocolVersion, ReasonCode};

/// One step of an enhanced authentication exchange (5.0 only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// Success, Continue authentication or Re-authenticate.
    pub reason: ReasonCode,
    /// Properties: authentication method and data, reason string, user properties.
    pub properties: Properties,
}

impl Auth {
    /// Only reached for 5.0: the fixed header rejects packet type 15 in 3.x.
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut packet = Self {
            reason: ReasonCode::Success,
            properties: Properties::default(),
        };
        // 5.0 section 3.15.2.1: remaining length 0 means Success without properties.
        if !r.is_empty() {
            packet.reason = r.reason(PacketType::Auth)?;
            if !r.is_empty() {
                packet.properties = Properties::decode(r, PropertyContext::Auth)?;
            }
        }
        Ok(packet)
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if !version.is_v5() {
            return Err(EncodeError::UnsupportedPacket {
                packet: "AUTH",
                version,
            });
        }
        check_reason(self.reason, PacketType::Auth)?;
        if self.reason == ReasonCode::Success && self.properties.is_empty() {
            return Ok(0);
        }
        Ok(1 + self.properties.encoded_len(PropertyContext::Auth)?)
    }

    pub(crate) fn write_body(&self, out: &mut BytesMut) {
        if self.reason == ReasonCode::Success && self.properties.is_empty() {
            return;
        }
        out.put_u8(self.reason.value());
        self.properties.write(out);
    }
}
