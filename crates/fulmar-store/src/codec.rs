//! The byte layout of keys and values. Keys sort the way the store reads them back.
//!
//! - Per-session tables are keyed `u16 BE length ‖ client id ‖ suffix`, so one session's
//!   entries are one contiguous key range (a prefix scan cannot mix `ab` into `a`).
//! - Sequences, message ids and packet ids are big-endian, so key order is numeric order.
//! - Values are fixed little-endian fields followed by length-prefixed byte strings. A value
//!   that does not decode is [`StoreError::Decode`], never a default.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fulmar_proto::{Packet, PacketId, Properties, ProtocolVersion, Publish, QoS, RetainHandling};
use fulmar_proto::{SubscriptionOptions, TopicFilter, TopicName};

use crate::record::{InflightState, MessageBody, MessageId, SessionRecord, SubscriptionRecord};
use crate::StoreError;

/// Key prefix of everything a session owns in the per-session tables.
pub(crate) fn session_prefix(client_id: &str) -> Vec<u8> {
    let len = u16::try_from(client_id.len()).unwrap_or(u16::MAX);
    let mut key = Vec::with_capacity(2 + client_id.len() + 8);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(&client_id.as_bytes()[..usize::from(len)]);
    key
}

/// `prefix ‖ suffix`.
pub(crate) fn session_key(client_id: &str, suffix: &[u8]) -> Vec<u8> {
    let mut key = session_prefix(client_id);
    key.extend_from_slice(suffix);
    key
}

/// Splits a per-session key into client id and suffix.
pub(crate) fn split_session_key(key: &[u8]) -> Result<(&str, &[u8]), StoreError> {
    let mut r = Reader(key);
    let len = usize::from(u16::from_be_bytes(r.array()?));
    let id = r.take(len)?;
    let id = std::str::from_utf8(id).map_err(|_| decode_err("client id is not UTF-8"))?;
    Ok((id, r.0))
}

/// The smallest key greater than every key starting with `prefix`; `None` if unbounded.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

pub(crate) fn decode_err(what: &str) -> StoreError {
    StoreError::Decode(what.to_string())
}

/// Bounds-checked reader over a stored value.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(decode_err("value is truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn opt_u64(&mut self) -> Result<Option<u64>, StoreError> {
        let present = self.u8()? != 0;
        let value = self.u64()?;
        Ok(present.then_some(value))
    }

    fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    pub(crate) fn finish(&self) -> Result<(), StoreError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(decode_err("trailing bytes in value"))
        }
    }
}

fn put_opt_u64(out: &mut Vec<u8>, value: Option<u64>) {
    out.push(u8::from(value.is_some()));
    out.extend_from_slice(&value.unwrap_or(0).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&bytes[..len as usize]);
}

pub(crate) fn qos(byte: u8) -> Result<QoS, StoreError> {
    QoS::try_from(byte).map_err(|_| decode_err("invalid QoS"))
}

pub(crate) fn packet_id(raw: u16) -> Result<PacketId, StoreError> {
    PacketId::new(raw).ok_or_else(|| decode_err("packet id 0"))
}

pub(crate) fn encode_session(record: &SessionRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(14);
    out.push(record.protocol_version.level());
    out.extend_from_slice(&record.expiry_interval_secs.to_le_bytes());
    put_opt_u64(&mut out, record.last_disconnect_ms);
    // Since format version 2; a version 1 record ends before it (no username).
    if let Some(username) = &record.username {
        let len = u16::try_from(username.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&username.as_bytes()[..usize::from(len)]);
    }
    out
}

pub(crate) fn decode_session(client_id: &str, value: &[u8]) -> Result<SessionRecord, StoreError> {
    let mut r = Reader(value);
    let protocol_version = match r.u8()? {
        3 => ProtocolVersion::V3_1,
        4 => ProtocolVersion::V3_1_1,
        5 => ProtocolVersion::V5,
        _ => return Err(decode_err("unknown protocol level")),
    };
    let expiry_interval_secs = r.u32()?;
    let last_disconnect_ms = r.opt_u64()?;
    let username = if r.0.is_empty() {
        None
    } else {
        let len = usize::from(u16::from_le_bytes(r.array()?));
        let name =
            std::str::from_utf8(r.take(len)?).map_err(|_| decode_err("username is not UTF-8"))?;
        Some(name.to_string())
    };
    r.finish()?;
    Ok(SessionRecord {
        client_id: Arc::from(client_id),
        protocol_version,
        expiry_interval_secs,
        last_disconnect_ms,
        username,
    })
}

pub(crate) fn encode_subscription(record: &SubscriptionRecord) -> Vec<u8> {
    let o = &record.options;
    let options = o.qos.as_u8()
        | u8::from(o.no_local) << 2
        | u8::from(o.retain_as_published) << 3
        | (o.retain_handling as u8) << 4;
    let mut out = vec![options];
    put_opt_u64(&mut out, record.subscription_id.map(u64::from));
    out
}

pub(crate) fn decode_subscription(
    filter: &[u8],
    value: &[u8],
) -> Result<SubscriptionRecord, StoreError> {
    let filter = TopicFilter::from_bytes(Bytes::copy_from_slice(filter))
        .map_err(|e| StoreError::Decode(format!("stored filter: {e}")))?;
    let mut r = Reader(value);
    let byte = r.u8()?;
    let retain_handling = match (byte >> 4) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendAtSubscribeIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(decode_err("retain handling 3")),
    };
    let options = SubscriptionOptions {
        qos: qos(byte & 0b11)?,
        no_local: byte & 0b100 != 0,
        retain_as_published: byte & 0b1000 != 0,
        retain_handling,
    };
    let subscription_id = r
        .opt_u64()?
        .map(|id| u32::try_from(id).map_err(|_| decode_err("subscription id")))
        .transpose()?;
    r.finish()?;
    Ok(SubscriptionRecord {
        filter,
        options,
        subscription_id,
    })
}

pub(crate) fn inflight_state(byte: u8) -> Result<InflightState, StoreError> {
    match byte {
        0 => Ok(InflightState::AwaitingPubAck),
        1 => Ok(InflightState::AwaitingPubRec),
        2 => Ok(InflightState::AwaitingPubComp),
        _ => Err(decode_err("unknown inflight state")),
    }
}

pub(crate) fn inflight_state_byte(state: InflightState) -> u8 {
    match state {
        InflightState::AwaitingPubAck => 0,
        InflightState::AwaitingPubRec => 1,
        InflightState::AwaitingPubComp => 2,
    }
}

/// Properties are stored as the header of a QoS 0 MQTT 5 PUBLISH to topic `p` with an empty
/// payload, so the codec that checks them on the wire also checks them on the way back.
fn encode_properties(properties: &Properties) -> Result<Vec<u8>, StoreError> {
    if properties.is_empty() {
        return Ok(Vec::new());
    }
    let publish = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: TopicName::new("p").map_err(|e| StoreError::Decode(e.to_string()))?,
        packet_id: None,
        properties: properties.clone(),
        payload: Bytes::new(),
    };
    let mut out = BytesMut::new();
    fulmar_proto::encode_publish(&publish, ProtocolVersion::V5, &mut out)
        .map_err(|e| StoreError::Decode(format!("message properties do not encode: {e}")))?;
    Ok(out.to_vec())
}

fn decode_properties(bytes: &[u8]) -> Result<Properties, StoreError> {
    if bytes.is_empty() {
        return Ok(Properties::default());
    }
    let mut buf = BytesMut::from(bytes);
    match fulmar_proto::decode(&mut buf, ProtocolVersion::V5, bytes.len()) {
        Ok(Some(Packet::Publish(publish))) if buf.is_empty() => Ok(publish.properties),
        Ok(_) => Err(decode_err("stored properties are not one PUBLISH")),
        Err(e) => Err(StoreError::Decode(format!("stored properties: {e}"))),
    }
}

pub(crate) fn encode_message(body: &MessageBody) -> Result<Vec<u8>, StoreError> {
    let properties = encode_properties(&body.properties)?;
    let topic = body.topic.as_str().as_bytes();
    let mut out = Vec::with_capacity(32 + topic.len() + properties.len() + body.payload.len());
    out.push(body.qos.as_u8());
    out.push(u8::from(body.retain));
    put_opt_u64(&mut out, body.expires_at_ms);
    put_bytes(&mut out, topic);
    put_bytes(&mut out, &properties);
    out.extend_from_slice(&body.payload);
    Ok(out)
}

pub(crate) fn decode_message(id: MessageId, value: &[u8]) -> Result<MessageBody, StoreError> {
    let mut r = Reader(value);
    let qos = qos(r.u8()?)?;
    let retain = r.u8()? != 0;
    let expires_at_ms = r.opt_u64()?;
    let topic = TopicName::from_bytes(Bytes::copy_from_slice(r.bytes()?))
        .map_err(|e| StoreError::Decode(format!("stored topic: {e}")))?;
    let properties = decode_properties(r.bytes()?)?;
    Ok(MessageBody {
        id,
        topic,
        payload: Bytes::copy_from_slice(r.0),
        qos,
        retain,
        properties,
        expires_at_ms,
    })
}

/// A reference to a body from a queue entry or an inflight exchange: the per-recipient part
/// of a delivery. `size` is the body's `queued_size`, kept so that limits can be tracked
/// without reading the body back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeliveryRef {
    pub(crate) message: MessageId,
    pub(crate) size: u64,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    pub(crate) subscription_ids: Vec<u32>,
}

pub(crate) fn put_delivery_ref(out: &mut Vec<u8>, d: &DeliveryRef) {
    out.extend_from_slice(&d.message.0.to_le_bytes());
    out.extend_from_slice(&d.size.to_le_bytes());
    out.push(d.qos.as_u8());
    out.push(u8::from(d.retain));
    // At most 255 subscription ids per delivery are kept (one per matching subscription
    // of one client; more is not a realistic session).
    let n = u8::try_from(d.subscription_ids.len()).unwrap_or(u8::MAX);
    out.push(n);
    for id in &d.subscription_ids[..usize::from(n)] {
        out.extend_from_slice(&id.to_le_bytes());
    }
}

pub(crate) fn read_delivery_ref(r: &mut Reader<'_>) -> Result<DeliveryRef, StoreError> {
    let message = MessageId(r.u64()?);
    let size = r.u64()?;
    let qos = qos(r.u8()?)?;
    let retain = r.u8()? != 0;
    let n = r.u8()?;
    let subscription_ids = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
    Ok(DeliveryRef {
        message,
        size,
        qos,
        retain,
        subscription_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(username: Option<&str>) -> SessionRecord {
        SessionRecord {
            client_id: Arc::from("c"),
            expiry_interval_secs: 60,
            last_disconnect_ms: Some(7),
            protocol_version: ProtocolVersion::V5,
            username: username.map(str::to_string),
        }
    }

    #[test]
    fn session_records_round_trip_with_and_without_username() {
        for username in [None, Some(""), Some("ünïcode user")] {
            let bytes = encode_session(&record(username));
            assert_eq!(decode_session("c", &bytes).unwrap(), record(username));
        }
    }

    #[test]
    fn a_version_1_session_record_has_no_username() {
        // Level 5, expiry 60 LE, Some(7) as a tagged u64: the whole version 1 layout.
        let mut v1 = vec![5, 60, 0, 0, 0];
        put_opt_u64(&mut v1, Some(7));
        assert_eq!(decode_session("c", &v1).unwrap(), record(None));
    }

    #[test]
    fn a_truncated_username_is_a_decode_error() {
        let mut bytes = encode_session(&record(Some("alice")));
        bytes.pop();
        assert!(matches!(
            decode_session("c", &bytes),
            Err(StoreError::Decode(_))
        ));
    }
}
