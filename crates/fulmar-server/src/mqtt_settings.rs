//! The `[mqtt]` configuration table: protocol features the server offers and advertises to
//! MQTT 5 clients in CONNACK (and enforces for every client).

use fulmar_proto::{Properties, QoS};
use serde::Deserialize;

/// Protocol features and server policy.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSettings {
    /// Highest QoS accepted in PUBLISH and granted in SUBACK (0, 1 or 2).
    pub max_qos: u8,
    /// Whether retained messages are accepted.
    pub retain_available: bool,
    /// Whether filters with `+` / `#` are accepted.
    pub wildcard_subscriptions: bool,
    /// Whether MQTT 5 subscription identifiers are accepted.
    pub subscription_identifiers: bool,
    /// Whether `$share/{group}/{filter}` subscriptions are accepted.
    pub shared_subscriptions: bool,
    /// Topic aliases an MQTT 5 client may use towards the broker (0: none).
    pub topic_alias_maximum: u16,
    /// Use topic aliases towards MQTT 5 clients that accept them.
    pub outbound_topic_aliases: bool,
    /// Upper bound on keep-alive, seconds; a client asking for more (or for 0) is told the
    /// bound in Server Keep Alive (MQTT 5). 0: accept what the client asks.
    pub max_keep_alive_secs: u16,
    /// Upper bound on an MQTT 5 Session Expiry Interval, seconds.
    pub max_session_expiry_secs: u32,
    /// Refuse payloads marked UTF-8 (Payload Format Indicator 1) that are not (0x99).
    pub validate_utf8_payloads: bool,
    /// Response Information sent to MQTT 5 clients that request it: a topic prefix for
    /// responses, `{client_id}` is replaced. Empty: none sent.
    pub response_information: String,
}

impl Default for MqttSettings {
    fn default() -> Self {
        MqttSettings {
            max_qos: 2,
            retain_available: true,
            wildcard_subscriptions: true,
            subscription_identifiers: true,
            shared_subscriptions: true,
            topic_alias_maximum: 16,
            outbound_topic_aliases: true,
            max_keep_alive_secs: 0,
            max_session_expiry_secs: u32::MAX,
            validate_utf8_payloads: false,
            response_information: String::new(),
        }
    }
}

impl MqttSettings {
    /// The configured maximum QoS (validated to 0..=2 at load).
    pub fn max_qos(&self) -> QoS {
        QoS::try_from(self.max_qos).unwrap_or(QoS::ExactlyOnce)
    }

    /// The keep-alive the server imposes for a client that asked for `requested`, if it
    /// differs (MQTT 5 Server Keep Alive [MQTT-3.2.2-21]).
    pub fn server_keep_alive(&self, requested: u16) -> Option<u16> {
        let max = self.max_keep_alive_secs;
        (max > 0 && (requested == 0 || requested > max)).then_some(max)
    }

    /// CONNACK properties advertising what differs from the MQTT 5 defaults.
    pub fn advertise(&self, properties: &mut Properties, receive_maximum: u16, max_packet: u32) {
        if self.max_qos < 2 {
            properties.maximum_qos = Some(self.max_qos());
        }
        if !self.retain_available {
            properties.retain_available = Some(false);
        }
        if !self.wildcard_subscriptions {
            properties.wildcard_subscription_available = Some(false);
        }
        if !self.subscription_identifiers {
            properties.subscription_identifier_available = Some(false);
        }
        if !self.shared_subscriptions {
            properties.shared_subscription_available = Some(false);
        }
        if self.topic_alias_maximum > 0 {
            properties.topic_alias_maximum = Some(self.topic_alias_maximum);
        }
        if receive_maximum < u16::MAX {
            properties.receive_maximum = Some(receive_maximum);
        }
        properties.maximum_packet_size = Some(max_packet);
    }
}
