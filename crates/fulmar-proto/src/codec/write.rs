//! Helpers to size and write MQTT data types. Sizing functions validate; writers assume the sizing
//! function for the same field succeeded.

use bytes::{BufMut, BytesMut};

use crate::{EncodeError, PacketType, ReasonCode};

/// Bytes a Variable Byte Integer takes (section 1.5.5); `n` must be at most 268 435 455.
pub(crate) const fn varint_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes a Variable Byte Integer; `n` must be at most 268 435 455.
pub(crate) fn put_varint(out: &mut BytesMut, mut n: usize) {
    debug_assert!(n <= crate::MAX_REMAINING_LENGTH);
    loop {
        // Truncation intended: the low 7 bits.
        let mut byte = (n & 0x7F) as u8;
        n >>= 7;
        if n > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if n == 0 {
            return;
        }
    }
}

/// Encoded size of a UTF-8 string field; rejects > 65 535 bytes and U+0000 [MQTT-1.5.4-2].
pub(crate) fn str_len(s: &str) -> Result<usize, EncodeError> {
    if s.as_bytes().contains(&0) {
        return Err(EncodeError::InvalidString);
    }
    bin_len(s.as_bytes())
}

/// Encoded size of a binary field; rejects > 65 535 bytes.
pub(crate) fn bin_len(b: &[u8]) -> Result<usize, EncodeError> {
    if b.len() > usize::from(u16::MAX) {
        return Err(EncodeError::StringTooLong);
    }
    Ok(2 + b.len())
}

/// Writes a string or binary field sized by [`str_len`] / [`bin_len`].
pub(crate) fn put_bin(out: &mut BytesMut, b: &[u8]) {
    debug_assert!(b.len() <= usize::from(u16::MAX));
    // Truncation impossible: checked by `bin_len`.
    out.put_u16(b.len() as u16);
    out.put_slice(b);
}

/// Checks that MQTT 5.0 allows `reason` in `packet`.
pub(crate) fn check_reason(reason: ReasonCode, packet: PacketType) -> Result<(), EncodeError> {
    if reason.allowed_in(packet) {
        Ok(())
    } else {
        Err(EncodeError::InvalidReasonCode {
            code: reason.value(),
            packet: packet.name(),
        })
    }
}
