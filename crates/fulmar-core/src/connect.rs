//! CONNECT rules that need no shared broker state: client identifier checks and assignment.

use fulmar_proto::{Connect, ProtocolVersion, ReasonCode};

/// Outcome of checking a CONNECT packet's client identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectDecision {
    /// Accept the client under `client_id`.
    Accept {
        /// The identifier the session is known by.
        client_id: String,
        /// The server made the identifier up (MQTT 5 sends it back as Assigned Client Identifier).
        assigned: bool,
    },
    /// Refuse with this CONNACK reason (mapped to a 3.1.1 return code by the encoder).
    Reject(ReasonCode),
}

/// Checks the client identifier rules of CONNECT.
///
/// - [MQTT-3.1.3-6] / [MQTT-3.1.3-7] (3.1.1): an empty identifier is accepted only with clean
///   session set, and the server assigns a unique one; otherwise CONNACK 0x02 [MQTT-3.1.3-9].
/// - MQTT 3.1 requires 1 to 23 characters; longer identifiers are accepted (as common brokers
///   do) up to `max_client_id_len`, an empty one is refused with 0x02.
/// - MQTT 5: an empty identifier is always accepted and assigned [MQTT-3.1.3-6].
pub fn validate_connect(
    connect: &Connect,
    max_client_id_len: usize,
    nonce: u64,
) -> ConnectDecision {
    if connect.client_id.len() > max_client_id_len {
        return ConnectDecision::Reject(ReasonCode::ClientIdentifierNotValid);
    }
    if !connect.client_id.is_empty() {
        return ConnectDecision::Accept {
            client_id: connect.client_id.clone(),
            assigned: false,
        };
    }
    let may_assign = match connect.protocol {
        ProtocolVersion::V3_1 => false,
        ProtocolVersion::V3_1_1 => connect.clean_start,
        ProtocolVersion::V5 => true,
    };
    if may_assign {
        ConnectDecision::Accept {
            client_id: assign_client_id(nonce),
            assigned: true,
        }
    } else {
        ConnectDecision::Reject(ReasonCode::ClientIdentifierNotValid)
    }
}

/// A server-assigned client identifier, unique for a unique `nonce`. It uses only the
/// characters that [MQTT-3.1.3-5] says every server must accept.
pub fn assign_client_id(nonce: u64) -> String {
    format!("fulmar{nonce:016x}")
}

#[cfg(test)]
mod tests {
    use fulmar_proto::Properties;

    use super::*;

    fn connect(protocol: ProtocolVersion, client_id: &str, clean_start: bool) -> Connect {
        Connect {
            protocol,
            clean_start,
            keep_alive: 60,
            client_id: client_id.to_string(),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        }
    }

    #[test]
    fn empty_id_with_clean_session_is_assigned() {
        let decision = validate_connect(&connect(ProtocolVersion::V3_1_1, "", true), 65535, 7);
        assert_eq!(
            decision,
            ConnectDecision::Accept {
                client_id: assign_client_id(7),
                assigned: true
            }
        );
    }

    #[test]
    fn empty_id_without_clean_session_is_rejected_with_0x02() {
        let decision = validate_connect(&connect(ProtocolVersion::V3_1_1, "", false), 65535, 7);
        assert_eq!(
            decision,
            ConnectDecision::Reject(ReasonCode::ClientIdentifierNotValid)
        );
    }

    #[test]
    fn mqtt31_requires_an_id() {
        let decision = validate_connect(&connect(ProtocolVersion::V3_1, "", true), 65535, 7);
        assert_eq!(
            decision,
            ConnectDecision::Reject(ReasonCode::ClientIdentifierNotValid)
        );
    }

    #[test]
    fn mqtt5_empty_id_is_assigned_even_without_clean_start() {
        let decision = validate_connect(&connect(ProtocolVersion::V5, "", false), 65535, 1);
        assert!(matches!(
            decision,
            ConnectDecision::Accept { assigned: true, .. }
        ));
    }

    #[test]
    fn too_long_id_is_rejected() {
        let decision = validate_connect(&connect(ProtocolVersion::V3_1_1, "abcdef", true), 5, 1);
        assert_eq!(
            decision,
            ConnectDecision::Reject(ReasonCode::ClientIdentifierNotValid)
        );
    }
}
