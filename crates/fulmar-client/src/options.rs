//! What a client asks for: [`ConnectOptions`] (the CONNECT packet and local limits) and
//! [`OutgoingMessage`] (one message to publish).

use bytes::Bytes;
use fulmar_proto::{
    Connect, Properties, ProtocolVersion, QoS, TopicName, Will, MAX_REMAINING_LENGTH,
};

/// Everything that goes into CONNECT, plus the client's own limits.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// MQTT 3.1, 3.1.1 or 5.0; fixed for the life of the client.
    pub version: ProtocolVersion,
    /// Client identifier; 3.1 brokers require 1 to 23 characters.
    pub client_id: String,
    /// Clean Session (3.x) / Clean Start (5.0). Sent on every (re)connect: a client that wants a
    /// persistent session sets it to false and keeps it false.
    pub clean_start: bool,
    /// Keep alive in seconds; 0 disables PINGREQ. A 5.0 Server Keep Alive overrides it.
    pub keep_alive: u16,
    /// User name, if any.
    pub username: Option<String>,
    /// Password, if any (3.x requires a user name with it).
    pub password: Option<Bytes>,
    /// Will message published by the broker if the connection ends without DISCONNECT.
    pub will: Option<Will>,
    /// CONNECT properties (5.0): Session Expiry Interval, Receive Maximum, user properties...
    pub properties: Properties,
    /// Most QoS 1/2 messages in flight at once (also capped by the server's Receive Maximum).
    /// Messages published while disconnected count too: they wait here for the reconnect.
    pub max_inflight: u16,
    /// Largest packet accepted from the broker (fixed header included).
    pub max_packet_size: usize,
}

impl ConnectOptions {
    /// Defaults for `version` and `client_id`: clean session, keep-alive 60 s, 64 in flight.
    pub fn new(version: ProtocolVersion, client_id: impl Into<String>) -> Self {
        Self {
            version,
            client_id: client_id.into(),
            clean_start: true,
            keep_alive: 60,
            username: None,
            password: None,
            will: None,
            properties: Properties::default(),
            max_inflight: 64,
            max_packet_size: MAX_REMAINING_LENGTH + 5,
        }
    }

    /// The CONNECT packet these options describe.
    pub fn connect_packet(&self) -> Connect {
        Connect {
            protocol: self.version,
            clean_start: self.clean_start,
            keep_alive: self.keep_alive,
            client_id: self.client_id.clone(),
            will: self.will.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            properties: if self.version.is_v5() {
                self.properties.clone()
            } else {
                Properties::default()
            },
        }
    }
}

/// One application message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Where it goes (validated: no wildcards).
    pub topic: TopicName,
    /// The payload, shared, never copied.
    pub payload: Bytes,
    /// Delivery guarantee asked for.
    pub qos: QoS,
    /// Ask the broker to keep it as the topic's retained message.
    pub retain: bool,
    /// PUBLISH properties (5.0; ignored for 3.x).
    pub properties: Properties,
}

impl OutgoingMessage {
    /// A message without properties.
    pub fn new(topic: TopicName, payload: impl Into<Bytes>, qos: QoS, retain: bool) -> Self {
        Self {
            topic,
            payload: payload.into(),
            qos,
            retain,
            properties: Properties::default(),
        }
    }
}
