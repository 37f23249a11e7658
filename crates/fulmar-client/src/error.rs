//! [`ClientError`]: everything that can go wrong between a client and its broker.

use std::io;

use fulmar_proto::{DecodeError, EncodeError, ReasonCode};

use crate::TlsFailure;

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
    /// The TLS handshake failed, or the broker refused the TLS session before CONNACK (with
    /// TLS 1.3 a refused client certificate shows only then).
    #[error("TLS handshake with {addr} failed: {failure}")]
    TlsHandshake {
        /// `host:port` as given.
        addr: String,
        /// Why.
        failure: TlsFailure,
    },
    /// The broker answered CONNECT with a TLS record: this port wants TLS.
    #[error("{addr} answered with TLS: this port needs a TLS connection")]
    TlsExpected {
        /// `host:port` as given.
        addr: String,
    },
    /// The TLS layer of an established connection failed (e.g. a fatal alert).
    #[error("connection lost: TLS: {0}")]
    Tls(TlsFailure),
    /// Reading or writing the established connection failed.
    #[error("connection lost: {0}")]
    Io(io::Error),
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
}

impl From<io::Error> for ClientError {
    /// tokio-rustls reports TLS errors (alerts, bad records) as IO errors wrapping a
    /// `rustls::Error`; those become [`ClientError::Tls`].
    fn from(error: io::Error) -> Self {
        match TlsFailure::from_io(&error, "a trusted CA") {
            Some(failure) => Self::Tls(failure),
            None => Self::Io(error),
        }
    }
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
