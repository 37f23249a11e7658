//! UNSUBSCRIBE (MQTT 5.0 section 3.10, 3.1.1 section 3.10).

use bytes::{BufMut, BytesMut};

use crate::codec::read::Reader;
use crate::codec::write::put_bin;
use crate::properties::PropertyContext;
use crate::{DecodeError, EncodeError, PacketId, Properties, ProtocolVersion, TopicFilter};

/// A request to remove subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Identifier echoed by UNSUBACK.
    pub packet_id: PacketId,
    /// Properties (5.0): user properties.
    pub properties: Properties,
    /// At least one filter [MQTT-3.10.3-2].
    pub filters: Vec<TopicFilter>,
}

impl Unsubscribe {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            Properties::decode(r, PropertyContext::Unsubscribe)?
        } else {
            Properties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(r.topic_filter()?);
        }
        if filters.is_empty() {
            return Err(DecodeError::ProtocolError(
                "UNSUBSCRIBE without topic filters",
            )); // [MQTT-3.10.3-2]
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
                "UNSUBSCRIBE without topic filters",
            ));
        }
        let mut len = 2 + self.filters.iter().map(|f| 2 + f.len()).sum::<usize>();
        if version.is_v5() {
            len += self.properties.encoded_len(PropertyContext::Unsubscribe)?;
        }
        Ok(len)
    }

    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.write(out);
        }
        for filter in &self.filters {
            put_bin(out, filter.as_str().as_bytes());
        }
    }
}
