//! MQTT 5.0 properties (section 2.2.2.2): one struct for every packet, validated per packet type.
//!
//! `check` holds every per-packet and value rule, so `decode.rs` and `encode.rs` enforce the same ones.

mod decode;
mod encode;

use bytes::Bytes;

use crate::{DecodeError, EncodeError, QoS, TopicName};

/// Property identifiers (MQTT 5.0 table 2-4).
#[allow(missing_docs)] // named as in the specification
pub mod property_id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}
use property_id as id;

/// Largest Subscription Identifier (a Variable Byte Integer) [MQTT-3.8.2.1.2].
const MAX_SUBSCRIPTION_ID: u32 = 268_435_455;

/// The property block of one packet: every MQTT 5.0 property, read and written as fields of
/// [`PropertyValues`] through `Deref`/`DerefMut` (`props.topic_alias = Some(1)`).
///
/// Almost every packet carries no properties (all of 3.x, and most 5.0 traffic), while the
/// values take ~420 bytes: held inline they made every `Packet`, `Publish` and routed message
/// that large, copied on each move and dropped field by field. So an empty block is one null
/// pointer, and the values live in a box allocated on the first write.
///
/// # Invariants
/// Reading never allocates: an empty block reads as [`PropertyValues::EMPTY`]. Writing through
/// `DerefMut` allocates, even to store `None`, so hot paths compare before they write.
#[derive(Clone, Default)]
pub struct Properties(Option<Box<PropertyValues>>);

/// What an empty [`Properties`] reads as.
static NO_VALUES: PropertyValues = PropertyValues::EMPTY;

impl Properties {
    /// True if no property is set.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.as_deref().is_none_or(|values| *values == NO_VALUES)
    }

    /// The values, moved out (empty ones for an empty block).
    pub fn into_values(self) -> PropertyValues {
        self.0
            .map_or_else(PropertyValues::default, |values| *values)
    }
}

impl std::ops::Deref for Properties {
    type Target = PropertyValues;

    fn deref(&self) -> &PropertyValues {
        self.0.as_deref().unwrap_or(&NO_VALUES)
    }
}

impl std::ops::DerefMut for Properties {
    fn deref_mut(&mut self) -> &mut PropertyValues {
        self.0.get_or_insert_with(Box::default)
    }
}

impl From<PropertyValues> for Properties {
    fn from(values: PropertyValues) -> Self {
        if values == NO_VALUES {
            Properties(None)
        } else {
            Properties(Some(Box::new(values)))
        }
    }
}

/// Equal when the values are: an empty box equals no box.
impl PartialEq for Properties {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Properties {}

/// Shown as its values, so that an empty block reads the same boxed or not.
impl std::fmt::Debug for Properties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// Every MQTT 5.0 property. Absent single-valued properties are `None`; for 3.x they are always
/// empty on decode and ignored on encode. Packets hold them as [`Properties`].
#[allow(missing_docs)] // each field is the property of the same name in MQTT 5.0 section 3.x
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropertyValues {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<TopicName>,
    pub correlation_data: Option<Bytes>,
    /// One in SUBSCRIBE; one per matching subscription in a PUBLISH to a client.
    pub subscription_identifiers: Vec<u32>,
    pub session_expiry_interval: Option<u32>,
    pub assigned_client_identifier: Option<String>,
    pub server_keep_alive: Option<u16>,
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Bytes>,
    pub request_problem_information: Option<u8>,
    pub will_delay_interval: Option<u32>,
    pub request_response_information: Option<u8>,
    pub response_information: Option<String>,
    pub server_reference: Option<String>,
    pub reason_string: Option<String>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    /// Only 0 or 1 may be sent; absent means QoS 2.
    pub maximum_qos: Option<QoS>,
    pub retain_available: Option<bool>,
    /// In order; names may repeat (section 3.1.2.11.8).
    pub user_properties: Vec<(String, String)>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifier_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
}

/// Where a property block sits: a packet type, or the will properties of CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub(crate) enum PropertyContext {
    Connect,
    Will,
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl PropertyContext {
    const fn bit(self) -> u16 {
        1 << self as u16
    }

    const fn name(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::Will => "Will",
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
            Self::Disconnect => "DISCONNECT",
            Self::Auth => "AUTH",
        }
    }
}

/// Which contexts may carry property `id` (MQTT 5.0 table 2-4).
const fn allowed_mask(id: u8) -> u16 {
    use PropertyContext as C;
    const PUBLISH_WILL: u16 = C::Publish.bit() | C::Will.bit();
    const CONNECT_CONNACK: u16 = C::Connect.bit() | C::ConnAck.bit();
    const AUTH: u16 = C::Connect.bit() | C::ConnAck.bit() | C::Auth.bit();
    const REASON: u16 = C::ConnAck.bit()
        | C::PubAck.bit()
        | C::PubRec.bit()
        | C::PubRel.bit()
        | C::PubComp.bit()
        | C::SubAck.bit()
        | C::UnsubAck.bit()
        | C::Disconnect.bit()
        | C::Auth.bit();
    match id {
        id::PAYLOAD_FORMAT_INDICATOR
        | id::MESSAGE_EXPIRY_INTERVAL
        | id::CONTENT_TYPE
        | id::RESPONSE_TOPIC
        | id::CORRELATION_DATA => PUBLISH_WILL,
        id::SUBSCRIPTION_IDENTIFIER => C::Publish.bit() | C::Subscribe.bit(),
        id::SESSION_EXPIRY_INTERVAL => CONNECT_CONNACK | C::Disconnect.bit(),
        id::AUTHENTICATION_METHOD | id::AUTHENTICATION_DATA => AUTH,
        id::REQUEST_PROBLEM_INFORMATION | id::REQUEST_RESPONSE_INFORMATION => C::Connect.bit(),
        id::WILL_DELAY_INTERVAL => C::Will.bit(),
        id::SERVER_REFERENCE => C::ConnAck.bit() | C::Disconnect.bit(),
        id::REASON_STRING => REASON,
        id::RECEIVE_MAXIMUM | id::TOPIC_ALIAS_MAXIMUM | id::MAXIMUM_PACKET_SIZE => CONNECT_CONNACK,
        id::TOPIC_ALIAS => C::Publish.bit(),
        id::USER_PROPERTY => u16::MAX,
        id::ASSIGNED_CLIENT_IDENTIFIER
        | id::SERVER_KEEP_ALIVE
        | id::RESPONSE_INFORMATION
        | id::MAXIMUM_QOS
        | id::RETAIN_AVAILABLE
        | id::WILDCARD_SUBSCRIPTION_AVAILABLE
        | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | id::SHARED_SUBSCRIPTION_AVAILABLE => C::ConnAck.bit(),
        _ => 0,
    }
}

/// A rule a property block breaks; shared by decode and encode so both enforce the same rules.
pub(super) enum Problem {
    NotAllowed(u8),
    Duplicate(u8),
    InvalidValue(u8),
}

impl Problem {
    pub(super) fn into_decode(self, ctx: PropertyContext) -> DecodeError {
        match self {
            Self::NotAllowed(id) => DecodeError::PropertyNotAllowed {
                id,
                packet: ctx.name(),
            },
            Self::Duplicate(id) => DecodeError::DuplicateProperty(id),
            Self::InvalidValue(id) => DecodeError::InvalidPropertyValue(id),
        }
    }

    pub(super) fn into_encode(self) -> EncodeError {
        let (id, reason) = match self {
            Self::NotAllowed(id) => (id, "not allowed in this packet"),
            Self::Duplicate(id) => (id, "may appear only once"),
            Self::InvalidValue(id) => (id, "invalid value"),
        };
        EncodeError::InvalidProperty { id, reason }
    }
}

impl PropertyValues {
    /// No property set (what `Default` gives, usable in constants).
    pub const EMPTY: PropertyValues = PropertyValues {
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        subscription_identifiers: Vec::new(),
        session_expiry_interval: None,
        assigned_client_identifier: None,
        server_keep_alive: None,
        authentication_method: None,
        authentication_data: None,
        request_problem_information: None,
        will_delay_interval: None,
        request_response_information: None,
        response_information: None,
        server_reference: None,
        reason_string: None,
        receive_maximum: None,
        topic_alias_maximum: None,
        topic_alias: None,
        maximum_qos: None,
        retain_available: None,
        user_properties: Vec::new(),
        maximum_packet_size: None,
        wildcard_subscription_available: None,
        subscription_identifier_available: None,
        shared_subscription_available: None,
    };

    /// `(identifier, present)` for every property, in identifier order.
    fn presence(&self) -> [(u8, bool); 27] {
        [
            (
                id::PAYLOAD_FORMAT_INDICATOR,
                self.payload_format_indicator.is_some(),
            ),
            (
                id::MESSAGE_EXPIRY_INTERVAL,
                self.message_expiry_interval.is_some(),
            ),
            (id::CONTENT_TYPE, self.content_type.is_some()),
            (id::RESPONSE_TOPIC, self.response_topic.is_some()),
            (id::CORRELATION_DATA, self.correlation_data.is_some()),
            (
                id::SUBSCRIPTION_IDENTIFIER,
                !self.subscription_identifiers.is_empty(),
            ),
            (
                id::SESSION_EXPIRY_INTERVAL,
                self.session_expiry_interval.is_some(),
            ),
            (
                id::ASSIGNED_CLIENT_IDENTIFIER,
                self.assigned_client_identifier.is_some(),
            ),
            (id::SERVER_KEEP_ALIVE, self.server_keep_alive.is_some()),
            (
                id::AUTHENTICATION_METHOD,
                self.authentication_method.is_some(),
            ),
            (id::AUTHENTICATION_DATA, self.authentication_data.is_some()),
            (
                id::REQUEST_PROBLEM_INFORMATION,
                self.request_problem_information.is_some(),
            ),
            (id::WILL_DELAY_INTERVAL, self.will_delay_interval.is_some()),
            (
                id::REQUEST_RESPONSE_INFORMATION,
                self.request_response_information.is_some(),
            ),
            (
                id::RESPONSE_INFORMATION,
                self.response_information.is_some(),
            ),
            (id::SERVER_REFERENCE, self.server_reference.is_some()),
            (id::REASON_STRING, self.reason_string.is_some()),
            (id::RECEIVE_MAXIMUM, self.receive_maximum.is_some()),
            (id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum.is_some()),
            (id::TOPIC_ALIAS, self.topic_alias.is_some()),
            (id::MAXIMUM_QOS, self.maximum_qos.is_some()),
            (id::RETAIN_AVAILABLE, self.retain_available.is_some()),
            (id::USER_PROPERTY, !self.user_properties.is_empty()),
            (id::MAXIMUM_PACKET_SIZE, self.maximum_packet_size.is_some()),
            (
                id::WILDCARD_SUBSCRIPTION_AVAILABLE,
                self.wildcard_subscription_available.is_some(),
            ),
            (
                id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
                self.subscription_identifier_available.is_some(),
            ),
            (
                id::SHARED_SUBSCRIPTION_AVAILABLE,
                self.shared_subscription_available.is_some(),
            ),
        ]
    }

    /// The per-packet and value rules of MQTT 5.0 section 3.x, for decode and encode alike.
    pub(super) fn check(&self, ctx: PropertyContext) -> Result<(), Problem> {
        for (id, present) in self.presence() {
            if present && allowed_mask(id) & ctx.bit() == 0 {
                return Err(Problem::NotAllowed(id));
            }
        }
        let bad = |id| Err(Problem::InvalidValue(id));
        if self.payload_format_indicator.is_some_and(|v| v > 1) {
            return bad(id::PAYLOAD_FORMAT_INDICATOR); // section 3.3.2.3.2: 0 or 1
        }
        if self
            .subscription_identifiers
            .iter()
            .any(|&v| v == 0 || v > MAX_SUBSCRIPTION_ID)
        {
            return bad(id::SUBSCRIPTION_IDENTIFIER); // [MQTT-3.8.2.1.2] 1..=268435455
        }
        if ctx == PropertyContext::Subscribe && self.subscription_identifiers.len() > 1 {
            return Err(Problem::Duplicate(id::SUBSCRIPTION_IDENTIFIER));
        }
        if self.request_problem_information.is_some_and(|v| v > 1) {
            return bad(id::REQUEST_PROBLEM_INFORMATION); // section 3.1.2.11.7
        }
        if self.request_response_information.is_some_and(|v| v > 1) {
            return bad(id::REQUEST_RESPONSE_INFORMATION); // section 3.1.2.11.6
        }
        if self.receive_maximum == Some(0) {
            return bad(id::RECEIVE_MAXIMUM); // section 3.1.2.11.3
        }
        if self.maximum_packet_size == Some(0) {
            return bad(id::MAXIMUM_PACKET_SIZE); // section 3.1.2.11.4
        }
        if self.topic_alias == Some(0) {
            return bad(id::TOPIC_ALIAS); // [MQTT-3.3.2-8]
        }
        if self.maximum_qos == Some(QoS::ExactlyOnce) {
            return bad(id::MAXIMUM_QOS); // section 3.2.2.3.4: only 0 or 1
        }
        if self
            .response_topic
            .as_ref()
            .is_some_and(TopicName::is_empty)
        {
            return bad(id::RESPONSE_TOPIC);
        }
        if self.authentication_data.is_some() && self.authentication_method.is_none() {
            return bad(id::AUTHENTICATION_DATA); // section 3.1.2.11.10
        }
        Ok(())
    }
}
