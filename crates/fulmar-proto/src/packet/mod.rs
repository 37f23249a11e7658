//! The [`Packet`] enum, [`PacketType`], and dispatch to the per-packet codecs (one file each).

mod ack;
mod auth;
mod connack;
mod connect;
mod disconnect;
mod publish;
mod suback;
mod subscribe;
mod unsuback;
mod unsubscribe;

use bytes::BytesMut;

pub use self::ack::Ack;
pub use self::auth::Auth;
pub use self::connack::ConnAck;
pub use self::connect::{Connect, Will};
pub use self::disconnect::Disconnect;
pub use self::publish::{Publish, PublishView};
pub use self::suback::SubAck;
pub use self::subscribe::{RetainHandling, Subscribe, SubscriptionOptions};
pub use self::unsuback::UnsubAck;
pub use self::unsubscribe::Unsubscribe;
use crate::codec::read::Reader;
use crate::{DecodeError, EncodeError, ProtocolVersion};

/// The MQTT control packet types (section 2.1.2), numbered as on the wire.
#[allow(missing_docs)] // named as in the specification
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    /// MQTT 5.0 only.
    Auth = 15,
}

impl PacketType {
    /// The type for the high nibble of a fixed header; `None` for reserved 0 (and > 15).
    pub const fn from_u8(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Connect,
            2 => Self::ConnAck,
            3 => Self::Publish,
            4 => Self::PubAck,
            5 => Self::PubRec,
            6 => Self::PubRel,
            7 => Self::PubComp,
            8 => Self::Subscribe,
            9 => Self::SubAck,
            10 => Self::Unsubscribe,
            11 => Self::UnsubAck,
            12 => Self::PingReq,
            13 => Self::PingResp,
            14 => Self::Disconnect,
            15 => Self::Auth,
            _ => return None,
        })
    }

    /// The specification's upper-case name, for logs and errors.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::ConnAck => "CONNACK",
            Self::Publish => "PUBLISH",
            Self::PubAck => "PUBACK",
            Self::PubRec => "PUBREC",
            Self::PubRel => "PUBREL",
            Self::PubComp => "PUBCOMP",
            Self::Subscribe => "SUBSCRIBE",
            Self::SubAck => "SUBACK",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::UnsubAck => "UNSUBACK",
            Self::PingReq => "PINGREQ",
            Self::PingResp => "PINGRESP",
            Self::Disconnect => "DISCONNECT",
            Self::Auth => "AUTH",
        }
    }
}

/// One MQTT control packet, in any protocol version.
// CONNECT is boxed: it holds two property blocks and the will (176 bytes inline against 80
// for PUBLISH), it arrives once per connection, and every decoded or queued packet moves a
// whole `Packet`.
#[allow(missing_docs)] // one variant per packet type, named as in the specification
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

impl Packet {
    /// The packet's type.
    pub const fn packet_type(&self) -> PacketType {
        match self {
            Self::Connect(_) => PacketType::Connect,
            Self::ConnAck(_) => PacketType::ConnAck,
            Self::Publish(_) => PacketType::Publish,
            Self::PubAck(_) => PacketType::PubAck,
            Self::PubRec(_) => PacketType::PubRec,
            Self::PubRel(_) => PacketType::PubRel,
            Self::PubComp(_) => PacketType::PubComp,
            Self::Subscribe(_) => PacketType::Subscribe,
            Self::SubAck(_) => PacketType::SubAck,
            Self::Unsubscribe(_) => PacketType::Unsubscribe,
            Self::UnsubAck(_) => PacketType::UnsubAck,
            Self::PingReq => PacketType::PingReq,
            Self::PingResp => PacketType::PingResp,
            Self::Disconnect(_) => PacketType::Disconnect,
            Self::Auth(_) => PacketType::Auth,
        }
    }

    /// The packet type's name ("PUBLISH", ...) for logs.
    pub const fn kind_name(&self) -> &'static str {
        self.packet_type().name()
    }

    /// Decodes the variable header and payload of a packet whose fixed header was checked.
    pub(crate) fn decode_body(
        packet_type: PacketType,
        flags: u8,
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        Ok(match packet_type {
            PacketType::Connect => Self::Connect(Box::new(Connect::decode(r)?)),
            PacketType::ConnAck => Self::ConnAck(ConnAck::decode(r, version)?),
            PacketType::Publish => Self::Publish(Publish::decode(flags, r, version)?),
            PacketType::PubAck => Self::PubAck(Ack::decode(packet_type, r, version)?),
            PacketType::PubRec => Self::PubRec(Ack::decode(packet_type, r, version)?),
            PacketType::PubRel => Self::PubRel(Ack::decode(packet_type, r, version)?),
            PacketType::PubComp => Self::PubComp(Ack::decode(packet_type, r, version)?),
            PacketType::Subscribe => Self::Subscribe(Subscribe::decode(r, version)?),
            PacketType::SubAck => Self::SubAck(SubAck::decode(r, version)?),
            PacketType::Unsubscribe => Self::Unsubscribe(Unsubscribe::decode(r, version)?),
            PacketType::UnsubAck => Self::UnsubAck(UnsubAck::decode(r, version)?),
            // [MQTT-3.12] [MQTT-3.13]: no variable header or payload; `decode` rejects extra bytes.
            PacketType::PingReq => Self::PingReq,
            PacketType::PingResp => Self::PingResp,
            PacketType::Disconnect => Self::Disconnect(Disconnect::decode(r, version)?),
            PacketType::Auth => Self::Auth(Auth::decode(r)?),
        })
    }

    /// First byte of the fixed header: type and flags.
    pub(crate) fn first_byte(&self) -> u8 {
        match self {
            Self::Publish(publish) => publish.view().first_byte(),
            // [MQTT-3.6.1-1] [MQTT-3.8.1-1] [MQTT-3.10.1-1]
            Self::PubRel(_) | Self::Subscribe(_) | Self::Unsubscribe(_) => {
                (self.packet_type() as u8) << 4 | 0b0010
            }
            _ => (self.packet_type() as u8) << 4,
        }
    }

    /// Remaining length for `version`; validates everything `decode` would reject.
    pub(crate) fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        match self {
            Self::Connect(p) => p.body_len(),
            Self::ConnAck(p) => p.body_len(version),
            Self::Publish(p) => Ok(p.view().header_len(version)? + p.payload.len()),
            Self::PubAck(p) | Self::PubRec(p) | Self::PubRel(p) | Self::PubComp(p) => {
                p.body_len(self.packet_type(), version)
            }
            Self::Subscribe(p) => p.body_len(version),
            Self::SubAck(p) => p.body_len(version),
            Self::Unsubscribe(p) => p.body_len(version),
            Self::UnsubAck(p) => p.body_len(version),
            Self::PingReq | Self::PingResp => Ok(0),
            Self::Disconnect(p) => p.body_len(version),
            Self::Auth(p) => p.body_len(version),
        }
    }

    /// Writes the body sized by `body_len`.
    pub(crate) fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        match self {
            Self::Connect(p) => p.write_body(out),
            Self::ConnAck(p) => p.write_body(version, out),
            Self::Publish(p) => {
                p.view().write_header(version, out);
                out.extend_from_slice(&p.payload);
            }
            Self::PubAck(p) | Self::PubRec(p) | Self::PubRel(p) | Self::PubComp(p) => {
                p.write_body(version, out);
            }
            Self::Subscribe(p) => p.write_body(version, out),
            Self::SubAck(p) => p.write_body(version, out),
            Self::Unsubscribe(p) => p.write_body(version, out),
            Self::UnsubAck(p) => p.write_body(version, out),
            Self::PingReq | Self::PingResp => {}
            Self::Disconnect(p) => p.write_body(version, out),
            Self::Auth(p) => p.write_body(out),
        }
    }
}

macro_rules! impl_from {
    ($($variant:ident($ty:ident)),*) => {$(
        impl From<$ty> for Packet {
            fn from(p: $ty) -> Self {
                Self::$variant(p)
            }
        }
    )*};
}
impl From<Connect> for Packet {
    fn from(p: Connect) -> Self {
        Self::Connect(Box::new(p))
    }
}
impl_from!(
    ConnAck(ConnAck),
    Publish(Publish),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    Disconnect(Disconnect),
    Auth(Auth)
);
