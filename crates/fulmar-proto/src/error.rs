//! The codec's errors and their one mapping to MQTT 5.0 reason codes.

use crate::{ProtocolVersion, ReasonCode, TopicError};

/// Why bytes from the peer are not a valid MQTT packet.
///
/// After any error the connection must be closed (MQTT 5.0 section 4.13); on a decode error the
/// bytes of the offending packet may already have been consumed from the buffer.
/// [`DecodeError::reason_code`] gives the code for the CONNACK or DISCONNECT to send first.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The remaining length continues past its fourth byte [MQTT-1.5.5-1] (2.2.3 in 3.1.1).
    #[error("remaining length is longer than 4 bytes")]
    MalformedRemainingLength,
    /// The whole packet (fixed header + remaining length) exceeds the limit; detected from the
    /// fixed header alone, before the body is buffered.
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge {
        /// Size of the whole packet announced by its fixed header.
        size: usize,
        /// The limit passed to `decode`.
        max: usize,
    },
    /// CONNECT with a known protocol name but an unsupported level; the server answers CONNACK
    /// 0x01 (3.x) or 0x84 (5.0) [MQTT-3.1.2-2].
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolVersion(u8),
    /// CONNECT whose protocol name is neither `MQTT` nor `MQIsdp`; close without CONNACK
    /// [MQTT-3.1.2-1].
    #[error("invalid protocol name")]
    InvalidProtocolName,
    /// Packet type 0, or 15 (AUTH) outside MQTT 5.0.
    #[error("invalid packet type {0}")]
    InvalidPacketType(u8),
    /// Reserved fixed-header flag bits have the wrong value [MQTT-2.1.3-1], or DUP is set on a
    /// QoS 0 PUBLISH [MQTT-3.3.1-2].
    #[error("invalid fixed header flags 0x{flags:X} for {packet}")]
    InvalidFlags {
        /// Packet type name.
        packet: &'static str,
        /// The low nibble of the first byte.
        flags: u8,
    },
    /// A field runs past the end of the packet (or of its property block).
    #[error("packet ends in the middle of a field")]
    UnexpectedEof,
    /// Bytes are left over after the last field of the packet.
    #[error("unexpected bytes after the end of the packet")]
    TrailingBytes,
    /// A UTF-8 string field is ill-formed or contains U+0000 [MQTT-1.5.4-1] [MQTT-1.5.4-2].
    #[error("invalid UTF-8 string")]
    InvalidUtf8,
    /// A QoS field holds 3 [MQTT-3.3.1-4] [MQTT-3.1.2-14] [MQTT-3-8.3-4].
    #[error("invalid QoS {0}")]
    InvalidQoS(u8),
    /// The topic name of a PUBLISH or will is invalid.
    #[error("invalid topic name: {0}")]
    InvalidTopicName(TopicError),
    /// A topic filter of a SUBSCRIBE or UNSUBSCRIBE is invalid.
    #[error("invalid topic filter: {0}")]
    InvalidTopicFilter(TopicError),
    /// A packet identifier is 0 [MQTT-2.3.1-1].
    #[error("packet identifier is 0")]
    ZeroPacketId,
    /// A property identifier that MQTT 5.0 does not define.
    #[error("unknown property identifier 0x{0:02X}")]
    UnknownProperty(u32),
    /// A property that may appear once appears twice (MQTT 5.0 section 2.2.2.2).
    #[error("duplicate property 0x{0:02X}")]
    DuplicateProperty(u8),
    /// A property that this packet type must not carry (MQTT 5.0 section 2.2.2.2).
    #[error("property 0x{id:02X} is not allowed in {packet}")]
    PropertyNotAllowed {
        /// Property identifier.
        id: u8,
        /// Packet type name (or "Will").
        packet: &'static str,
    },
    /// A property value outside its allowed range (e.g. Receive Maximum 0).
    #[error("invalid value for property 0x{0:02X}")]
    InvalidPropertyValue(u8),
    /// A reason code that is unknown or not allowed in this packet type.
    #[error("reason code 0x{code:02X} is not valid in {packet}")]
    InvalidReasonCode {
        /// The byte received.
        code: u8,
        /// Packet type name.
        packet: &'static str,
    },
    /// Any other malformed packet; the text names the rule.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// A well-formed packet that breaks a protocol rule; the text names the rule.
    #[error("protocol error: {0}")]
    ProtocolError(&'static str),
}

impl DecodeError {
    /// The MQTT 5.0 reason code to report this error with (CONNACK before a successful CONNECT,
    /// DISCONNECT after), per MQTT 5.0 section 4.13.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            Self::UnsupportedProtocolVersion(_) => ReasonCode::UnsupportedProtocolVersion,
            Self::InvalidTopicName(TopicError::InvalidUtf8 | TopicError::NullCharacter)
            | Self::InvalidTopicFilter(_)
            | Self::MalformedRemainingLength
            | Self::InvalidPacketType(_)
            | Self::InvalidFlags { .. }
            | Self::UnexpectedEof
            | Self::TrailingBytes
            | Self::InvalidUtf8
            | Self::InvalidQoS(_)
            | Self::UnknownProperty(_)
            | Self::Malformed(_) => ReasonCode::MalformedPacket,
            Self::InvalidTopicName(_) => ReasonCode::TopicNameInvalid,
            // MQTT 5 §3.3.2.3.4: a Topic Alias of 0 gets DISCONNECT 0x94.
            Self::InvalidPropertyValue(crate::property_id::TOPIC_ALIAS) => {
                ReasonCode::TopicAliasInvalid
            }
            Self::InvalidProtocolName
            | Self::ZeroPacketId
            | Self::DuplicateProperty(_)
            | Self::PropertyNotAllowed { .. }
            | Self::InvalidPropertyValue(_)
            | Self::InvalidReasonCode { .. }
            | Self::ProtocolError(_) => ReasonCode::ProtocolError,
        }
    }
}

/// Why a packet cannot be encoded. Encoding checks the same rules decoding does, so whatever
/// `encode` accepts, `decode` gives back unchanged.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The remaining length (or a property block) would exceed 268 435 455 bytes.
    #[error("packet too large for MQTT (remaining length > 268435455)")]
    PacketTooLarge,
    /// A string or binary field is longer than 65 535 bytes.
    #[error("string or binary field longer than 65535 bytes")]
    StringTooLong,
    /// A string contains U+0000 [MQTT-1.5.4-2].
    #[error("string contains U+0000")]
    InvalidString,
    /// A property is not allowed in this packet or has an invalid value.
    #[error("property 0x{id:02X}: {reason}")]
    InvalidProperty {
        /// Property identifier.
        id: u8,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The reason code is not allowed in this packet type (MQTT 5.0).
    #[error("reason code 0x{code:02X} is not valid in {packet}")]
    InvalidReasonCode {
        /// The reason code's value.
        code: u8,
        /// Packet type name.
        packet: &'static str,
    },
    /// The packet type does not exist in this protocol version (AUTH before 5.0).
    #[error("{packet} does not exist in MQTT {version}")]
    UnsupportedPacket {
        /// Packet type name.
        packet: &'static str,
        /// The version asked for.
        version: ProtocolVersion,
    },
    /// The packet's fields break a rule of the specification; the text names it.
    #[error("invalid packet: {0}")]
    InvalidPacket(&'static str),
}
