//! Bytes on the wire: setup packets encoded with `fulmar-proto`, the pre-encoded PUBLISH
//! template the hot path copies and patches, and a fast parse of what the broker sends back.

use bytes::{Bytes, BytesMut};
use fulmar_proto::{
    Connect, PacketId, Properties, ProtocolVersion, Publish, QoS, Subscribe, SubscriptionOptions,
    TopicFilter, TopicName,
};

use super::payload::{Stamp, SEQ_OFFSET, TIME_OFFSET};

/// Packet type codes (high nibble of the first byte) the engine handles itself.
pub mod kind {
    /// PUBLISH.
    pub const PUBLISH: u8 = 3;
    /// PUBACK.
    pub const PUBACK: u8 = 4;
    /// PUBREC.
    pub const PUBREC: u8 = 5;
    /// PUBREL.
    pub const PUBREL: u8 = 6;
    /// PUBCOMP.
    pub const PUBCOMP: u8 = 7;
}

/// The protocol version for `-V`.
pub fn version(level: u8) -> ProtocolVersion {
    if level == 5 {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    }
}

/// QoS from its wire value (the CLI has checked 0..=2).
pub fn qos(value: u8) -> QoS {
    QoS::try_from(value).unwrap_or(QoS::AtMostOnce)
}

/// Session Expiry Interval of a persistent bench session (MQTT 5), seconds.
const PERSISTENT_SESSION_EXPIRY_SECS: u32 = 3600;

/// An encoded CONNECT without a will: clean start, or a persistent session.
pub fn connect(
    client_id: &str,
    (keep_alive, persistent): (u16, bool),
    version: ProtocolVersion,
    username: Option<&str>,
    password: Option<&str>,
) -> anyhow::Result<BytesMut> {
    let mut properties = Properties::default();
    if persistent && version == ProtocolVersion::V5 {
        properties.session_expiry_interval = Some(PERSISTENT_SESSION_EXPIRY_SECS);
    }
    let packet = fulmar_proto::Packet::from(Connect {
        protocol: version,
        clean_start: !persistent,
        keep_alive,
        client_id: client_id.to_owned(),
        will: None,
        username: username.map(str::to_owned),
        password: password.map(|p| Bytes::copy_from_slice(p.as_bytes())),
        properties,
    });
    let mut out = BytesMut::new();
    fulmar_proto::encode(&packet, version, &mut out)?;
    Ok(out)
}

/// Encoded SUBSCRIBE packets for `filters`, at most `per_packet` filters each, packet ids from 1.
pub fn subscribes(
    filters: &[String],
    qos: QoS,
    version: ProtocolVersion,
    per_packet: usize,
) -> anyhow::Result<(BytesMut, usize)> {
    let mut out = BytesMut::new();
    let mut packets = 0;
    for (i, chunk) in filters.chunks(per_packet.max(1)).enumerate() {
        let filters = chunk
            .iter()
            .map(|f| {
                let options = SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                };
                Ok((TopicFilter::new(f.clone())?, options))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let id = u16::try_from(i + 1).ok().and_then(PacketId::new);
        let packet_id = id.ok_or_else(|| anyhow::anyhow!("too many SUBSCRIBE packets"))?;
        let packet = fulmar_proto::Packet::Subscribe(Subscribe {
            packet_id,
            properties: Properties::default(),
            filters,
        });
        fulmar_proto::encode(&packet, version, &mut out)?;
        packets += 1;
    }
    Ok((out, packets))
}

/// One publisher's PUBLISH, encoded once; [`PublishTemplate::append`] copies it and patches
/// the packet id, sequence number and send time in place.
#[derive(Debug, Clone)]
pub struct PublishTemplate {
    /// The whole packet as first encoded (publisher index already in the payload).
    bytes: Vec<u8>,
    /// Offset of the packet id (QoS > 0).
    packet_id_at: Option<usize>,
    /// Offset of the payload.
    payload_at: usize,
}

impl PublishTemplate {
    /// Encodes the template for one publisher.
    pub fn new(
        topic: &str,
        qos: QoS,
        version: ProtocolVersion,
        size: usize,
        publisher: u32,
    ) -> anyhow::Result<Self> {
        let mut payload = vec![0u8; size];
        Stamp {
            publisher,
            seq: 0,
            sent_ns: 0,
        }
        .write(&mut payload);
        let publish = Publish {
            dup: false,
            qos,
            retain: false,
            topic: TopicName::new(topic)?,
            packet_id: (qos != QoS::AtMostOnce).then(|| PacketId::new(1)).flatten(),
            properties: Properties::default(),
            payload: Bytes::from(payload),
        };
        let mut out = BytesMut::new();
        fulmar_proto::encode_publish(&publish, version, &mut out)?;
        let payload_at = out.len() - size;
        // The packet id sits right before the (5.0: empty, one byte) property block.
        let props = usize::from(version.is_v5());
        let packet_id_at = (qos != QoS::AtMostOnce).then(|| payload_at - props - 2);
        Ok(Self {
            bytes: out.to_vec(),
            packet_id_at,
            payload_at,
        })
    }

    /// Encoded size of one message.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends one message to `out`.
    #[inline]
    pub fn append(&self, out: &mut Vec<u8>, packet_id: u16, seq: u32, sent_ns: u64) {
        let at = out.len();
        out.extend_from_slice(&self.bytes);
        let packet = &mut out[at..];
        if let Some(i) = self.packet_id_at {
            packet[i..i + 2].copy_from_slice(&packet_id.to_be_bytes());
        }
        let p = self.payload_at;
        packet[p + SEQ_OFFSET..p + TIME_OFFSET].copy_from_slice(&seq.to_be_bytes());
        packet[p + TIME_OFFSET..p + TIME_OFFSET + 8].copy_from_slice(&sent_ns.to_be_bytes());
    }
}

/// One packet read by [`parse`], borrowing the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A PUBLISH: its QoS, packet id (0 at QoS 0) and payload.
    Publish {
        /// Delivery QoS.
        qos: u8,
        /// Packet id, 0 at QoS 0.
        packet_id: u16,
        /// Application payload.
        payload: &'a [u8],
    },
    /// PUBACK, PUBREC, PUBREL or PUBCOMP ([`kind`]) and its packet id.
    Ack {
        /// Packet type code.
        kind: u8,
        /// Acknowledged packet id.
        packet_id: u16,
    },
    /// Anything else (PINGRESP, DISCONNECT, ...): its packet type code.
    Other(u8),
}

/// What went wrong in [`parse`]: the broker sent something this engine cannot read.
#[derive(Debug, PartialEq, Eq)]
pub struct WireError(&'static str);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed packet from the broker: {}", self.0)
    }
}

impl std::error::Error for WireError {}

/// Parses one packet from the front of `buf`: `Ok(None)` if incomplete, else the packet and
/// how many bytes it took. Reads only what the benchmark needs (no topic validation).
pub fn parse(buf: &[u8], v5: bool) -> Result<Option<(Incoming<'_>, usize)>, WireError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut remaining = 0usize;
    let mut header = 1;
    loop {
        let Some(&byte) = buf.get(header) else {
            return Ok(None);
        };
        remaining |= usize::from(byte & 0x7F) << (7 * (header - 1));
        header += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if header > 4 {
            return Err(WireError("remaining length over 4 bytes"));
        }
    }
    let total = header + remaining;
    let Some(body) = buf.get(header..total) else {
        return Ok(None);
    };
    let packet = match first >> 4 {
        kind::PUBLISH => parse_publish(first, body, v5)?,
        k @ (kind::PUBACK..=kind::PUBCOMP) => {
            let id = body.get(..2).ok_or(WireError("short acknowledgement"))?;
            Incoming::Ack {
                kind: k,
                packet_id: u16::from_be_bytes([id[0], id[1]]),
            }
        }
        other => Incoming::Other(other),
    };
    Ok(Some((packet, total)))
}

fn parse_publish(first: u8, body: &[u8], v5: bool) -> Result<Incoming<'_>, WireError> {
    let qos = (first >> 1) & 0b11;
    let short = WireError("short PUBLISH");
    let topic_len = usize::from(u16::from_be_bytes([
        *body.first().ok_or(short)?,
        *body.get(1).ok_or(WireError("short PUBLISH"))?,
    ]));
    let mut at = 2 + topic_len;
    let mut packet_id = 0;
    if qos > 0 {
        let id = body.get(at..at + 2).ok_or(WireError("short PUBLISH"))?;
        packet_id = u16::from_be_bytes([id[0], id[1]]);
        at += 2;
    }
    if v5 {
        let mut len = 0usize;
        for i in 0..4 {
            let byte = *body.get(at).ok_or(WireError("short PUBLISH properties"))?;
            at += 1;
            len |= usize::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                break;
            }
        }
        at += len;
    }
    let payload = body.get(at..).ok_or(WireError("short PUBLISH payload"))?;
    Ok(Incoming::Publish {
        qos,
        packet_id,
        payload,
    })
}

/// Appends a 2-byte acknowledgement (`kind` is a [`kind`] code; PUBREL carries flags 0b0010).
/// Valid in 5.0 too: remaining length 2 means reason Success, no properties.
#[inline]
pub fn put_ack(out: &mut Vec<u8>, ack_kind: u8, packet_id: u16) {
    let flags = if ack_kind == kind::PUBREL { 0b0010 } else { 0 };
    let id = packet_id.to_be_bytes();
    out.extend_from_slice(&[ack_kind << 4 | flags, 2, id[0], id[1]]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistent_connects_keep_their_session() {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for persistent in [false, true] {
                let mut buf = connect("c", (30, persistent), version, None, None).unwrap();
                let Some(fulmar_proto::Packet::Connect(c)) =
                    fulmar_proto::decode(&mut buf, ProtocolVersion::V3_1_1, 1 << 20).unwrap()
                else {
                    panic!("not a CONNECT");
                };
                assert_eq!(c.clean_start, !persistent);
                let expiry = c.properties.session_expiry_interval;
                let wanted = (persistent && version == ProtocolVersion::V5)
                    .then_some(PERSISTENT_SESSION_EXPIRY_SECS);
                assert_eq!(expiry, wanted, "{version:?} persistent={persistent}");
            }
        }
    }

    #[test]
    fn template_patches_round_trip_through_the_real_decoder() {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                let t = PublishTemplate::new("a/b", qos, version, 40, 9).expect("template");
                let mut out = Vec::new();
                t.append(&mut out, 513, 77, 1_000_000);
                let mut buf = BytesMut::from(&out[..]);
                let Some(fulmar_proto::Packet::Publish(p)) =
                    fulmar_proto::decode(&mut buf, version, 1 << 20).expect("decodes")
                else {
                    panic!("not a publish");
                };
                assert_eq!(
                    p.packet_id.map(PacketId::get),
                    (qos != QoS::AtMostOnce).then_some(513)
                );
                let stamp = Stamp::read(&p.payload).expect("stamp");
                assert_eq!(
                    (stamp.publisher, stamp.seq, stamp.sent_ns),
                    (9, 77, 1_000_000)
                );
                let (fast, used) = parse(&out, version.is_v5()).expect("ok").expect("complete");
                assert_eq!(used, out.len());
                let Incoming::Publish { payload, .. } = fast else {
                    panic!("fast path: not a publish");
                };
                assert_eq!(payload, &p.payload[..]);
                assert_eq!(parse(&out[..out.len() - 1], version.is_v5()), Ok(None));
            }
        }
    }

    #[test]
    fn acks_parse() {
        let mut out = Vec::new();
        put_ack(&mut out, kind::PUBREL, 300);
        let (packet, used) = parse(&out, false).expect("ok").expect("complete");
        assert_eq!(used, 4);
        assert_eq!(
            packet,
            Incoming::Ack {
                kind: kind::PUBREL,
                packet_id: 300
            }
        );
        assert_eq!(out[0], 0x62);
    }
}
