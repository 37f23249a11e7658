//! DISCONNECT (MQTT 5.0 section 3.14, 3.1.1 section 3.14).

use bytes::{BufMut, BytesMut};

use crate::codec::read::Reader;
use crate::codec::write::check_reason;
use crate::properties::PropertyContext;
use crate::{DecodeError, EncodeError, PacketType, Properties, ProtocolVersion, ReasonCode};

/// The end of a connection, from either side (server-sent only in 5.0). In 3.x the packet is
/// empty: the reason is Normal disconnection and properties are empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// Why the connection ends; 0x04 asks the server to publish the will anyway.
    pub reason: ReasonCode,
    /// Properties (5.0): session expiry, reason string, server reference, user properties.
    pub properties: Properties,
}

impl Default for Disconnect {
    fn default() -> Self {
        Self {
            reason: ReasonCode::NORMAL_DISCONNECTION,
            properties: Properties::default(),
        }
    }
}

impl Disconnect {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let mut packet = Self::default();
        // 5.0 section 3.14.2.1: remaining length 0 means Normal disconnection; below 2 there is no
        // property length. 3.x: no variable header (extra bytes are rejected by `decode`).
        if version.is_v5() && !r.is_empty() {
            packet.reason = r.reason(PacketType::Disconnect)?;
            if !r.is_empty() {
                packet.properties = Properties::decode(r, PropertyContext::Disconnect)?;
            }
        }
        Ok(packet)
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if !version.is_v5() {
            return Ok(0);
        }
        check_reason(self.reason, PacketType::Disconnect)?;
        Ok(match (self.reason, self.properties.is_empty()) {
            (ReasonCode::Success, true) => 0,
            (_, true) => 1,
            (_, false) => 1 + self.properties.encoded_len(PropertyContext::Disconnect)?,
        })
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
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
