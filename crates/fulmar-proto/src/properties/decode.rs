//! Reading a property block.

use super::{property_id as id, PropertyContext};
use crate::codec::read::Reader;
use crate::{DecodeError, Properties, QoS, TopicName};

fn set<T>(slot: &mut Option<T>, value: T, id: u8) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty(id)); // section 2.2.2.2: at most once
    }
    *slot = Some(value);
    Ok(())
}

fn bool_byte(byte: u8, id: u8) -> Result<bool, DecodeError> {
    match byte {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::InvalidPropertyValue(id)),
    }
}

impl Properties {
    /// Reads a property block (length + properties) valid for `ctx`.
    pub(crate) fn decode(r: &mut Reader, ctx: PropertyContext) -> Result<Self, DecodeError> {
        let len = r.varint()?;
        let len = usize::try_from(len).map_err(|_| DecodeError::UnexpectedEof)?;
        let mut block = r.sub(len)?;
        let mut props = Self::default();
        // Every rule of `check` is about a property that is present: an empty block (most
        // PUBLISHes and acks) passes them all.
        if block.is_empty() {
            return Ok(props);
        }
        while !block.is_empty() {
            props.decode_one(&mut block)?;
        }
        props.check(ctx).map_err(|p| p.into_decode(ctx))?;
        Ok(props)
    }

    fn decode_one(&mut self, r: &mut Reader) -> Result<(), DecodeError> {
        let raw = r.varint()?;
        let id = u8::try_from(raw).map_err(|_| DecodeError::UnknownProperty(raw))?;
        match id {
            id::PAYLOAD_FORMAT_INDICATOR => set(&mut self.payload_format_indicator, r.u8()?, id),
            id::MESSAGE_EXPIRY_INTERVAL => set(&mut self.message_expiry_interval, r.u32()?, id),
            id::CONTENT_TYPE => set(&mut self.content_type, r.string()?, id),
            id::RESPONSE_TOPIC => {
                // [MQTT-3.3.2-14] a Topic Name: no wildcards
                let topic = TopicName::from_bytes(r.utf8()?)
                    .map_err(|_| DecodeError::InvalidPropertyValue(id))?;
                set(&mut self.response_topic, topic, id)
            }
            id::CORRELATION_DATA => set(&mut self.correlation_data, r.binary()?, id),
            id::SUBSCRIPTION_IDENTIFIER => {
                self.subscription_identifiers.push(r.varint()?);
                Ok(())
            }
            id::SESSION_EXPIRY_INTERVAL => set(&mut self.session_expiry_interval, r.u32()?, id),
            id::ASSIGNED_CLIENT_IDENTIFIER => {
                set(&mut self.assigned_client_identifier, r.string()?, id)
            }
            id::SERVER_KEEP_ALIVE => set(&mut self.server_keep_alive, r.u16()?, id),
            id::AUTHENTICATION_METHOD => set(&mut self.authentication_method, r.string()?, id),
            id::AUTHENTICATION_DATA => set(&mut self.authentication_data, r.binary()?, id),
            id::REQUEST_PROBLEM_INFORMATION => {
                set(&mut self.request_problem_information, r.u8()?, id)
            }
            id::WILL_DELAY_INTERVAL => set(&mut self.will_delay_interval, r.u32()?, id),
            id::REQUEST_RESPONSE_INFORMATION => {
                set(&mut self.request_response_information, r.u8()?, id)
            }
            id::RESPONSE_INFORMATION => set(&mut self.response_information, r.string()?, id),
            id::SERVER_REFERENCE => set(&mut self.server_reference, r.string()?, id),
            id::REASON_STRING => set(&mut self.reason_string, r.string()?, id),
            id::RECEIVE_MAXIMUM => set(&mut self.receive_maximum, r.u16()?, id),
            id::TOPIC_ALIAS_MAXIMUM => set(&mut self.topic_alias_maximum, r.u16()?, id),
            id::TOPIC_ALIAS => set(&mut self.topic_alias, r.u16()?, id),
            id::MAXIMUM_QOS => {
                let qos = match r.u8()? {
                    0 => QoS::AtMostOnce,
                    1 => QoS::AtLeastOnce,
                    _ => return Err(DecodeError::InvalidPropertyValue(id)),
                };
                set(&mut self.maximum_qos, qos, id)
            }
            id::RETAIN_AVAILABLE => set(&mut self.retain_available, bool_byte(r.u8()?, id)?, id),
            id::USER_PROPERTY => {
                let pair = (r.string()?, r.string()?);
                self.user_properties.push(pair);
                Ok(())
            }
            id::MAXIMUM_PACKET_SIZE => set(&mut self.maximum_packet_size, r.u32()?, id),
            id::WILDCARD_SUBSCRIPTION_AVAILABLE => {
                let v = bool_byte(r.u8()?, id)?;
                set(&mut self.wildcard_subscription_available, v, id)
            }
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                let v = bool_byte(r.u8()?, id)?;
                set(&mut self.subscription_identifier_available, v, id)
            }
            id::SHARED_SUBSCRIPTION_AVAILABLE => {
                let v = bool_byte(r.u8()?, id)?;
                set(&mut self.shared_subscription_available, v, id)
            }
            _ => Err(DecodeError::UnknownProperty(raw)),
        }
    }
}
