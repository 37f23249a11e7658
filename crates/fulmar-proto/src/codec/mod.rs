//! The fixed header (section 2.1) and the public entry points: [`decode`], [`encode`],
//! [`encoded_len`], [`encode_publish`], [`encode_publish_header`].

pub(crate) mod read;
pub(crate) mod write;

use bytes::{Buf, BufMut, BytesMut};

use self::read::Reader;
use self::write::{put_varint, varint_len};
use crate::{
    Ack, DecodeError, EncodeError, Packet, PacketId, PacketType, ProtocolVersion, Publish,
    PublishView, ReasonCode,
};

/// Largest remaining length a 4-byte Variable Byte Integer can carry (section 1.5.5).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Checks the first byte of the fixed header: packet type and its reserved flags (section 2.1.2,
/// 2.1.3). Done before the body arrives so garbage is rejected early.
fn check_first_byte(first: u8, version: ProtocolVersion) -> Result<PacketType, DecodeError> {
    let code = first >> 4;
    let flags = first & 0x0F;
    let packet = match PacketType::from_u8(code) {
        // AUTH exists only in 5.0; type 0 is reserved in every version.
        Some(PacketType::Auth) if !version.is_v5() => None,
        other => other,
    }
    .ok_or(DecodeError::InvalidPacketType(code))?;
    let valid = match packet {
        PacketType::Publish => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(DecodeError::InvalidQoS(3)); // [MQTT-3.3.1-4]
            }
            qos != 0 || flags & 0b1000 == 0 // [MQTT-3.3.1-2] no DUP on QoS 0
        }
        // [MQTT-3.6.1-1] [MQTT-3.8.1-1] [MQTT-3.10.1-1]
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => flags == 0b0010,
        _ => flags == 0, // [MQTT-2.1.3-1] reserved flags are 0
    };
    if valid {
        Ok(packet)
    } else {
        Err(DecodeError::InvalidFlags {
            packet: packet.name(),
            flags,
        })
    }
}

/// Parses the remaining length from `bytes` (the fixed header after its first byte).
/// `Ok(None)` if more bytes are needed; otherwise `(bytes used, value)`.
fn remaining_length(bytes: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&byte) = bytes.get(i) else {
            return Ok(None);
        };
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((i + 1, value)));
        }
    }
    Err(DecodeError::MalformedRemainingLength) // [MQTT-1.5.5-1] at most 4 bytes
}

/// Decode one packet from the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed; `buf` is then untouched. On success the packet's
/// bytes are split off `buf` and frozen, so payloads, topics and binary fields are zero-copy
/// slices of them. `version` is the connection's negotiated version; a CONNECT is decoded by its
/// own protocol level, so any value may be passed before CONNECT. `max_packet_size` bounds the
/// whole packet (fixed header included) and is checked from the fixed header alone, before the
/// body is buffered. After an error the connection must be closed; `buf` may have lost the
/// offending packet.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let packet_type = check_first_byte(first, version)?;
    let Some((len_bytes, remaining)) = remaining_length(&buf[1..])? else {
        return Ok(None);
    };
    let header = 1 + len_bytes;
    let size = header + remaining;
    if size > max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        return Ok(None);
    }
    if remaining == 2 {
        if let Some(ack) = short_ack(packet_type, [buf[header], buf[header + 1]])? {
            buf.advance(size);
            return Ok(Some(ack));
        }
    }
    let mut frame = buf.split_to(size).freeze();
    frame.advance(header);
    let mut reader = Reader::new(frame);
    let packet = Packet::decode_body(packet_type, first & 0x0F, &mut reader, version)?;
    if !reader.is_empty() {
        return Err(DecodeError::TrailingBytes); // the remaining length is consumed exactly
    }
    Ok(Some(packet))
}

/// Hot path: an acknowledgement whose body is just its packet id (every one in 3.x; Success
/// without properties in 5.0, section 3.4.2.1), read in place rather than split off the
/// buffer. `None` for the other packet types.
fn short_ack(packet_type: PacketType, body: [u8; 2]) -> Result<Option<Packet>, DecodeError> {
    let ack = || {
        PacketId::new(u16::from_be_bytes(body))
            .map(Ack::new)
            .ok_or(DecodeError::ZeroPacketId) // [MQTT-2.3.1-1]
    };
    Ok(Some(match packet_type {
        PacketType::PubAck => Packet::PubAck(ack()?),
        PacketType::PubRec => Packet::PubRec(ack()?),
        PacketType::PubRel => Packet::PubRel(ack()?),
        PacketType::PubComp => Packet::PubComp(ack()?),
        _ => return Ok(None),
    }))
}

/// Size of a whole packet with a body of `body` bytes.
pub(crate) fn frame_len(body: usize) -> Result<usize, EncodeError> {
    if body > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge);
    }
    Ok(1 + varint_len(body) + body)
}

/// Append the encoding of `packet` for `version` to `out`. A CONNECT is encoded for its own
/// `protocol` field. On error nothing is appended.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    match packet {
        Packet::Publish(publish) => return encode_publish(publish, version, out),
        // Hot path: a plain acknowledgement is four bytes in every version (3.x has only the
        // packet id; 5.0 section 3.4.2.1: Success without properties omits the rest).
        Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubRel(ack) | Packet::PubComp(ack)
            if !version.is_v5()
                || (ack.reason == ReasonCode::Success && ack.properties.is_empty()) =>
        {
            let [high, low] = ack.packet_id.get().to_be_bytes();
            out.put_slice(&[packet.first_byte(), 2, high, low]);
            return Ok(());
        }
        _ => {}
    }
    let body = packet.body_len(version)?;
    out.reserve(frame_len(body)?);
    out.put_u8(packet.first_byte());
    put_varint(out, body);
    let start = out.len();
    packet.write_body(version, out);
    debug_assert_eq!(out.len() - start, body, "body_len and write_body disagree");
    Ok(())
}

/// Exact number of bytes [`encode`] would append, for Maximum Packet Size checks.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> Result<usize, EncodeError> {
    match packet {
        Packet::Publish(publish) => publish_encoded_len(publish, version),
        other => frame_len(other.body_len(version)?),
    }
}

/// Exact encoded size of a PUBLISH, without building a [`Packet`] (Maximum Packet Size checks
/// on the delivery path).
pub fn publish_encoded_len(
    publish: &Publish,
    version: ProtocolVersion,
) -> Result<usize, EncodeError> {
    publish.view().encoded_len(version)
}

/// Hot path: append a PUBLISH without building a [`Packet`] (no clone of topic or payload).
pub fn encode_publish(
    publish: &Publish,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    encode_publish_view(publish.view(), version, out)
}

/// [`encode_publish`] from borrowed parts: a broker encodes each recipient's copy straight
/// from the shared message. On error nothing is appended.
pub fn encode_publish_view(
    publish: PublishView<'_>,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let header = publish.header_len(version)?;
    let total = frame_len(header + publish.payload.len())?;
    out.reserve(total);
    write_publish_header(publish, version, header, out);
    out.put_slice(publish.payload);
    Ok(())
}

/// Append everything of a PUBLISH except its payload; the remaining length counts the payload,
/// so the caller writes `publish.payload` right after (e.g. a vectored write sharing one payload
/// among all subscribers). Returns the number of header bytes appended.
pub fn encode_publish_header(
    publish: &Publish,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    encode_publish_view_header(publish.view(), version, out)
}

/// [`encode_publish_header`] from borrowed parts. On error nothing is appended.
pub fn encode_publish_view_header(
    publish: PublishView<'_>,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    let header = publish.header_len(version)?;
    let total = frame_len(header + publish.payload.len())?;
    let header_total = total - publish.payload.len();
    out.reserve(header_total);
    write_publish_header(publish, version, header, out);
    Ok(header_total)
}

fn write_publish_header(
    publish: PublishView<'_>,
    version: ProtocolVersion,
    header: usize,
    out: &mut BytesMut,
) {
    out.put_u8(publish.first_byte());
    put_varint(out, header + publish.payload.len());
    let start = out.len();
    publish.write_header(version, out);
    debug_assert_eq!(
        out.len() - start,
        header,
        "header_len and write_header disagree"
    );
}
