//! Protocol violations by a client, and the reason code each one maps to.

use fulmar_proto::{DecodeError, QoS, ReasonCode};

/// Every way a connected client can violate the protocol. Each one ends the connection
/// (with a DISCONNECT carrying [`ProtocolError::reason_code`] for MQTT 5 clients).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The bytes did not decode.
    #[error("invalid packet: {0}")]
    Decode(#[from] DecodeError),
    /// [MQTT-3.1.0-2] a second CONNECT on one connection.
    #[error("second CONNECT on an established connection")]
    SecondConnect,
    /// A packet only a server may send, or AUTH without an authentication method.
    #[error("unexpected {0} packet from a client")]
    UnexpectedPacket(&'static str),
    /// More inbound QoS 2 messages awaiting PUBREL than allowed (MQTT 5 Receive Maximum).
    #[error("more than {0} inbound QoS 2 messages awaiting PUBREL")]
    ReceiveMaximumExceeded(usize),
    /// An MQTT 5 topic alias that is 0, above the maximum, or unknown [MQTT-3.3.2-8].
    #[error("topic alias {0} is invalid")]
    TopicAliasInvalid(u16),
    /// Keep-alive expired: no packet within 1.5 x keep-alive [MQTT-3.1.2-24].
    #[error("keep-alive timeout")]
    KeepAliveTimeout,
    /// PUBLISH with a QoS above the advertised Maximum QoS.
    #[error("QoS {0:?} is above the server's maximum QoS")]
    QoSNotSupported(QoS),
    /// PUBLISH with RETAIN while the server advertised Retain Available 0.
    #[error("retained messages are not supported")]
    RetainNotSupported,
    /// A QoS 0 payload marked UTF-8 that is not.
    #[error("payload marked as UTF-8 is not valid UTF-8")]
    PayloadFormatInvalid,
    /// SUBSCRIBE with a subscription identifier while the server does not support them.
    #[error("subscription identifiers are not supported")]
    SubscriptionIdentifiersNotSupported,
    /// DISCONNECT setting a session expiry after CONNECT set 0 [MQTT-3.14.2-2].
    #[error("session expiry set on DISCONNECT after CONNECT set 0")]
    SessionExpiryAfterZero,
    /// A PUBLISH topic longer, or with more levels, than the configured limits.
    #[error("topic name exceeds limits.max_topic_len or limits.max_topic_levels")]
    TopicNameTooLong,
    /// An AUTH packet the server cannot act on.
    #[error("unexpected AUTH packet")]
    UnexpectedAuth,
    /// A packet larger than the server's maximum packet size.
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge {
        /// Announced size of the packet.
        size: usize,
        /// Configured maximum.
        max: usize,
    },
}

impl ProtocolError {
    /// The MQTT 5 reason code to send in DISCONNECT for this violation (spec §4.13).
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            ProtocolError::Decode(e) => e.reason_code(),
            ProtocolError::SecondConnect | ProtocolError::UnexpectedPacket(_) => {
                ReasonCode::ProtocolError
            }
            ProtocolError::ReceiveMaximumExceeded(_) => ReasonCode::ReceiveMaximumExceeded,
            ProtocolError::TopicAliasInvalid(_) => ReasonCode::TopicAliasInvalid,
            ProtocolError::KeepAliveTimeout => ReasonCode::KeepAliveTimeout,
            ProtocolError::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            ProtocolError::QoSNotSupported(_) => ReasonCode::QoSNotSupported,
            ProtocolError::TopicNameTooLong => ReasonCode::TopicNameInvalid,
            ProtocolError::RetainNotSupported => ReasonCode::RetainNotSupported,
            ProtocolError::PayloadFormatInvalid => ReasonCode::PayloadFormatInvalid,
            ProtocolError::SubscriptionIdentifiersNotSupported => {
                ReasonCode::SubscriptionIdentifiersNotSupported
            }
            ProtocolError::SessionExpiryAfterZero | ProtocolError::UnexpectedAuth => {
                ReasonCode::ProtocolError
            }
        }
    }
}
