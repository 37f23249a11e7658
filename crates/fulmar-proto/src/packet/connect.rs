//! CONNECT (MQTT 5.0 section 3.1, 3.1.1 section 3.1, 3.1 `MQIsdp`).

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::read::Reader;
use crate::codec::write::{bin_len, put_bin, str_len};
use crate::properties::PropertyContext;
use crate::{DecodeError, EncodeError, Properties, ProtocolVersion, QoS, TopicName};

/// The first packet from a client: protocol version, session flags, credentials and will.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Version requested by the client; the connection speaks it from now on.
    pub protocol: ProtocolVersion,
    /// Clean Session (3.x) / Clean Start (5.0): discard any existing session.
    pub clean_start: bool,
    /// Keep alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// Client identifier; may be empty (the server may then assign one).
    pub client_id: String,
    /// Message to publish if the connection ends without DISCONNECT.
    pub will: Option<Will>,
    /// User name, if the User Name flag is set.
    pub username: Option<String>,
    /// Password (binary), if the Password flag is set.
    pub password: Option<Bytes>,
    /// CONNECT properties (5.0 only).
    pub properties: Properties,
}

/// The will message carried by CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Topic the will is published to (no wildcards).
    pub topic: TopicName,
    /// Will payload.
    pub payload: Bytes,
    /// QoS of the will publication.
    pub qos: QoS,
    /// Whether the will is retained.
    pub retain: bool,
    /// Will properties (5.0 only): delay, expiry, content type, ...
    pub properties: Properties,
}

const CLEAN_START: u8 = 0x02;
const WILL: u8 = 0x04;
const WILL_RETAIN: u8 = 0x20;
const PASSWORD: u8 = 0x40;
const USERNAME: u8 = 0x80;

/// The protocol from name and level [MQTT-3.1.2-1] [MQTT-3.1.2-2].
fn protocol(name: &[u8], level: u8) -> Result<ProtocolVersion, DecodeError> {
    match (name, level) {
        (b"MQTT", 4) => Ok(ProtocolVersion::V3_1_1),
        (b"MQTT", 5) => Ok(ProtocolVersion::V5),
        (b"MQIsdp", 3) => Ok(ProtocolVersion::V3_1),
        (b"MQTT" | b"MQIsdp", level) => Err(DecodeError::UnsupportedProtocolVersion(level)),
        _ => Err(DecodeError::InvalidProtocolName),
    }
}

impl Connect {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let name = r.binary()?;
        let protocol = protocol(&name, r.u8()?)?;
        let v5 = protocol.is_v5();
        let flags = r.u8()?;
        if flags & 0x01 != 0 {
            return Err(DecodeError::Malformed("reserved CONNECT flag set")); // [MQTT-3.1.2-3]
        }
        let will_flag = flags & WILL != 0;
        let will_qos = (flags >> 3) & 0b11;
        let will_retain = flags & WILL_RETAIN != 0;
        if !will_flag && (will_qos != 0 || will_retain) {
            // [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-15]
            return Err(DecodeError::Malformed(
                "will QoS or retain set without will flag",
            ));
        }
        let will_qos = QoS::try_from(will_qos).map_err(|e| DecodeError::InvalidQoS(e.0))?; // [MQTT-3.1.2-14]
        let (has_username, has_password) = (flags & USERNAME != 0, flags & PASSWORD != 0);
        if !v5 && has_password && !has_username {
            // [MQTT-3.1.2-22]; 5.0 allows a password without a user name.
            return Err(DecodeError::ProtocolError(
                "password flag without user name flag",
            ));
        }
        let keep_alive = r.u16()?;
        let properties = if v5 {
            Properties::decode(r, PropertyContext::Connect)?
        } else {
            Properties::default()
        };
        // [MQTT-3.1.3-4] a UTF-8 string. Length and emptiness rules (3.1: 1..=23 characters,
        // [MQTT-3.1.3-8]) are the session's: it answers with CONNACK "identifier rejected".
        let client_id = r.string()?;
        let will = if will_flag {
            let properties = if v5 {
                Properties::decode(r, PropertyContext::Will)?
            } else {
                Properties::default()
            };
            Some(Will {
                topic: r.topic_name()?, // [MQTT-3.1.3-10]
                payload: r.binary()?,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = has_username.then(|| r.string()).transpose()?; // [MQTT-3.1.3-11]
        let password = has_password.then(|| r.binary()).transpose()?;
        Ok(Self {
            protocol,
            clean_start: flags & CLEAN_START != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.clean_start {
            flags |= CLEAN_START;
        }
        if let Some(will) = &self.will {
            flags |= WILL | will.qos.as_u8() << 3;
            if will.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= USERNAME;
        }
        if self.password.is_some() {
            flags |= PASSWORD;
        }
        flags
    }

    /// The body size; encodes for `self.protocol`, whatever the connection's version.
    pub(crate) fn body_len(&self) -> Result<usize, EncodeError> {
        let v5 = self.protocol.is_v5();
        if !v5 && self.password.is_some() && self.username.is_none() {
            return Err(EncodeError::InvalidPacket("3.x password without user name"));
        }
        let mut len = 2 + self.protocol.protocol_name().len() + 1 + 1 + 2;
        if v5 {
            len += self.properties.encoded_len(PropertyContext::Connect)?;
        }
        len += str_len(&self.client_id)?;
        if let Some(will) = &self.will {
            if will.topic.is_empty() {
                return Err(EncodeError::InvalidPacket("empty will topic"));
            }
            if v5 {
                len += will.properties.encoded_len(PropertyContext::Will)?;
            }
            len += 2 + will.topic.len() + bin_len(&will.payload)?;
        }
        if let Some(username) = &self.username {
            len += str_len(username)?;
        }
        if let Some(password) = &self.password {
            len += bin_len(password)?;
        }
        Ok(len)
    }

    pub(crate) fn write_body(&self, out: &mut BytesMut) {
        let v5 = self.protocol.is_v5();
        put_bin(out, self.protocol.protocol_name().as_bytes());
        out.put_u8(self.protocol.level());
        out.put_u8(self.flags());
        out.put_u16(self.keep_alive);
        if v5 {
            self.properties.write(out);
        }
        put_bin(out, self.client_id.as_bytes());
        if let Some(will) = &self.will {
            if v5 {
                will.properties.write(out);
            }
            put_bin(out, will.topic.as_str().as_bytes());
            put_bin(out, &will.payload);
        }
        if let Some(username) = &self.username {
            put_bin(out, username.as_bytes());
        }
        if let Some(password) = &self.password {
            put_bin(out, password);
        }
    }
}
