//! A bounds-checked cursor over one packet's body.

use bytes::{Buf, Bytes};

use crate::topic::check_utf8;
use crate::{DecodeError, PacketId, PacketType, ReasonCode, TopicFilter, TopicName};

/// Reads MQTT data types (section 1.5) from the body of one packet.
///
/// # Invariants
/// Every read checks the available length first, so no input makes it panic or read past the
/// packet, and nothing is allocated from an untrusted length before that many bytes are known to
/// be present. Byte fields are zero-copy slices of the packet's buffer.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(DecodeError::UnexpectedEof)
        } else {
            Ok(())
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    /// Variable Byte Integer, at most 4 bytes (MQTT 5.0 section 1.5.5).
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..4 {
            let byte = self.u8()?;
            value |= u32::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Malformed(
            "variable byte integer longer than 4 bytes",
        ))
    }

    /// The next `n` bytes, zero-copy.
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }

    /// A sub-reader over the next `n` bytes (a property block).
    pub(crate) fn sub(&mut self, n: usize) -> Result<Self, DecodeError> {
        Ok(Self::new(self.take(n)?))
    }

    /// Everything left (a PUBLISH payload).
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Binary Data: two-byte length, then bytes (section 1.5.6).
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        self.take(len)
    }

    /// UTF-8 Encoded String (section 1.5.4), as validated bytes.
    pub(crate) fn utf8(&mut self) -> Result<Bytes, DecodeError> {
        let bytes = self.binary()?;
        check_utf8(&bytes).map_err(|_| DecodeError::InvalidUtf8)?;
        Ok(bytes)
    }

    /// UTF-8 Encoded String as an owned `String` (the length is already known to be present).
    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let bytes = self.binary()?;
        let s = check_utf8(&bytes).map_err(|_| DecodeError::InvalidUtf8)?;
        Ok(s.to_owned())
    }

    /// A non-zero packet identifier [MQTT-2.3.1-1].
    pub(crate) fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        PacketId::new(self.u16()?).ok_or(DecodeError::ZeroPacketId)
    }

    /// A topic name field (will topic).
    pub(crate) fn topic_name(&mut self) -> Result<TopicName, DecodeError> {
        TopicName::from_bytes(self.binary()?).map_err(DecodeError::InvalidTopicName)
    }

    /// A topic filter field (SUBSCRIBE, UNSUBSCRIBE).
    pub(crate) fn topic_filter(&mut self) -> Result<TopicFilter, DecodeError> {
        TopicFilter::from_bytes(self.binary()?).map_err(DecodeError::InvalidTopicFilter)
    }

    /// An MQTT 5.0 reason code that `packet` may carry.
    pub(crate) fn reason(&mut self, packet: PacketType) -> Result<ReasonCode, DecodeError> {
        let code = self.u8()?;
        ReasonCode::try_from(code)
            .ok()
            .filter(|reason| reason.allowed_in(packet))
            .ok_or(DecodeError::InvalidReasonCode {
                code,
                packet: packet.name(),
            })
    }
}
