//! [`ClientError`]: everything that can go wrong between a client and its broker.

use std::io;

use fulmar_proto::{DecodeError, EncodeError, ReasonCode};

/// Why a connection attempt, a request or a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The broker's host name did not resolve to an address.
    #[error("cannot resolve host {host}: {source}")]
    Resolve {
        /// The host as given.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// Nothing listens on the broker's address (TCP RST).
    #[error("connection refused by {addr}")]
    ConnectionRefused {
        /// `host:port` as given.
        addr: String,
    },
    /// Any other failure to open the connection (unreachable network, ...).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port` as given.
        addr: String,
        /// The socket error.
        source: io::Error,
    },
    /// No CONNACK (or no TCP connection) within the connect timeout.
    #[error("timed out connecting to {addr}")]
    ConnectTimeout {
        /// `host:port` as given.
        addr: String,
    },
    /// The broker answered CONNECT with a failure reason.
    #[error("the broker refused the connection: {}", describe_reason(*.0))]
    Refused(ReasonCode),
    /// Reading or writing the established connection failed.
    #[error("connection lost: {0}")]
    Io(#[from] io::Error),
    /// The broker closed the connection without DISCONNECT.
    #[error("connection closed by the broker")]
    ClosedByPeer,
    /// The broker sent DISCONNECT (MQTT 5.0).
    #[error("the broker disconnected: {}{}", describe_reason(*reason), text.as_deref().map(|t| format!(" ({t})")).unwrap_or_default())]
    ServerDisconnect {
        /// The DISCONNECT reason code.
        reason: ReasonCode,
        /// The Reason String property, if any.
        text: Option<String>,
    },
    /// No PINGRESP arrived within the keep-alive interval after a PINGREQ.
    #[error("keep-alive timeout: the broker did not answer PINGREQ")]
    KeepAliveTimeout,
    /// The broker sent bytes that are not a valid MQTT packet.
    #[error("invalid packet from the broker: {0}")]
    Decode(#[from] DecodeError),
    /// A packet could not be encoded (e.g. a field too long).
    #[error("cannot encode packet: {0}")]
    Encode(#[from] EncodeError),
    /// The broker broke a protocol rule; the text names it.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// The request needs a connection and there is none (QoS 0 while reconnecting).
    #[error("not connected")]
    NotConnected,
    /// The in-flight window is full; retry after an acknowledgement.
    #[error("too many messages in flight")]
    InflightFull,
    /// The client's send queue is full (e.g. while reconnecting); the message was not queued.
    #[error("the send queue is full")]
    QueueFull,
    /// The client was disconnected or its connection task ended.
    #[error("the client is closed")]
    Closed,
    /// A transport option that is not implemented yet (TLS).
    #[error("{0}")]
    Unsupported(&'static str),
}

/// A human phrase for a CONNACK / DISCONNECT / SUBACK reason, for error messages.
pub fn describe_reason(reason: ReasonCode) -> String {
    let text = match reason {
        ReasonCode::NotAuthorized => "not authorised",
        ReasonCode::BadUserNameOrPassword => "bad user name or password",
        ReasonCode::ClientIdentifierNotValid => "client identifier rejected",
        ReasonCode::UnsupportedProtocolVersion => "unsupported protocol version",
        ReasonCode::ServerUnavailable => "server unavailable",
        ReasonCode::ServerBusy => "server busy",
        ReasonCode::Banned => "banned",
        ReasonCode::ServerShuttingDown => "server shutting down",
        ReasonCode::SessionTakenOver => "session taken over by another client with the same id",
        ReasonCode::KeepAliveTimeout => "keep-alive timeout",
        ReasonCode::TopicFilterInvalid => "invalid topic filter",
        ReasonCode::TopicNameInvalid => "invalid topic name",
        ReasonCode::QuotaExceeded => "quota exceeded",
        ReasonCode::PacketTooLarge => "packet too large",
        ReasonCode::QoSNotSupported => "QoS not supported",
        ReasonCode::RetainNotSupported => "retain not supported",
        ReasonCode::ProtocolError => "protocol error",
        ReasonCode::MalformedPacket => "malformed packet",
        ReasonCode::UnspecifiedError => "unspecified error",
        other => return other.to_string(),
    };
    format!("{text} (0x{:02X})", reason.value())
}
