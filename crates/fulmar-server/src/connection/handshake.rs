//! CONNECT to CONNACK: identify the client, take its session over from a previous
//! connection or a parked state, and answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fulmar_core::{validate_connect, ClientCapabilities, ConnectDecision, Session};
use fulmar_proto::{ConnAck, Connect, Packet, Properties, ProtocolVersion, ReasonCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use super::io::Io;
use super::Connection;
use crate::broker::Broker;
use crate::mailbox::Mailbox;
use crate::registry::{DetachedSession, Kick, Owner, SlotState};

/// How long a new connection waits for the previous owner of its client id to hand over.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers a CONNECT. Returns the established connection, or `None` after a refusal
/// (the CONNACK with the reason is already written).
pub async fn accept<R, W>(
    broker: &Arc<Broker>,
    io: &mut Io<R, W>,
    connect: Connect,
    connection_id: u64,
) -> Option<Connection>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let version = connect.protocol;
    let max_id = broker.config().limits.max_client_id_len;
    let (client_id, assigned) = match validate_connect(&connect, max_id, broker.client_id_nonce()) {
        ConnectDecision::Accept {
            client_id,
            assigned,
        } => (client_id, assigned),
        ConnectDecision::Reject(reason) => {
            tracing::info!(client_id = %connect.client_id, ?reason, "CONNECT refused");
            refuse(io, version, reason).await;
            return None;
        }
    };
    // MQTT 5 §4.12: enhanced authentication with a method the server does not offer: 0x8C.
    if let Some(method) = &connect.properties.authentication_method {
        tracing::info!(%client_id, method, "unsupported authentication method; CONNACK 0x8C");
        refuse(io, version, ReasonCode::BadAuthenticationMethod).await;
        return None;
    }

    let settings = &broker.config().mqtt;
    let requested_expiry = session_expiry_requested(&connect);
    let expiry_secs = requested_expiry.min(settings.max_session_expiry_secs);
    let (slot, mut state) = broker.registry.lock(&client_id).await;
    let previous = take_previous(&mut state).await;
    let limits = broker.config().session_limits();
    let now = Instant::now();
    let (detached, session_present) = match previous {
        // [MQTT-3.2.2-2] resume: session present; a pending delayed will is cancelled
        // [MQTT-3.1.3-9].
        Some(mut prev) if !connect.clean_start && prev.is_persistent() => {
            prev.session
                .attach(version, connect.keep_alive, limits, now);
            prev.pending_will = None;
            (prev, true)
        }
        other => {
            // [MQTT-3.1.2-6] clean start discards any previous session, which ends here.
            if let Some(prev) = other {
                broker.end_session(prev);
            }
            let session = Session::new(client_id.clone(), version, connect.keep_alive, limits, now);
            let mailbox = Arc::new(Mailbox::new(
                client_id.clone(),
                broker.config().queue_limits(),
            ));
            let key = broker.new_session_key();
            let fresh = DetachedSession {
                key,
                session,
                mailbox,
                expiry_secs,
                pending_will: None,
            };
            (fresh, false)
        }
    };
    let DetachedSession {
        key,
        mut session,
        mailbox,
        ..
    } = detached;
    let server_keep_alive = settings.server_keep_alive(connect.keep_alive);
    if let Some(keep_alive) = server_keep_alive {
        session.set_keep_alive(keep_alive);
    }
    if version.is_v5() {
        session.set_client_capabilities(ClientCapabilities::from_connect(&connect.properties));
    }
    mailbox.with(|outbox| outbox.set_online(true));
    let (kick_tx, kick_rx) = oneshot::channel();
    state.owner = Some(Owner {
        connection_id,
        kick: kick_tx,
    });
    drop(state);

    let mut properties = Properties::default();
    if version.is_v5() {
        let limits = &broker.config().limits;
        settings.advertise(
            &mut properties,
            limits.max_awaiting_pubrel,
            limits.max_packet_size,
        );
        if assigned {
            properties.assigned_client_identifier = Some(client_id.clone());
        }
        properties.server_keep_alive = server_keep_alive;
        // MQTT 5 §3.2.2.3.2: tell the client when its Session Expiry Interval was lowered.
        if expiry_secs != requested_expiry {
            properties.session_expiry_interval = Some(expiry_secs);
        }
        if connect.properties.request_response_information == Some(1)
            && !settings.response_information.is_empty()
        {
            properties.response_information = Some(
                settings
                    .response_information
                    .replace("{client_id}", &client_id),
            );
        }
    }
    let connack = ConnAck {
        session_present,
        reason: ReasonCode::Success,
        properties,
    };
    io.queue(&Packet::ConnAck(connack), version);
    tracing::debug!(%client_id, ?version, session_present, "client connected");

    Some(Connection {
        broker: Arc::clone(broker),
        client_id,
        connection_id,
        version,
        key,
        session,
        mailbox,
        expiry_secs,
        will: connect.will,
        slot,
        kick_rx: Some(kick_rx),
        batch: Vec::new(),
    })
}

/// The Session Expiry Interval the client asks for: MQTT 5 from its property (absent: 0);
/// MQTT 3.1.1 clean session 0 means "never expires", clean session 1 means 0.
fn session_expiry_requested(connect: &Connect) -> u32 {
    match connect.protocol {
        ProtocolVersion::V5 => connect.properties.session_expiry_interval.unwrap_or(0),
        _ if connect.clean_start => 0,
        _ => u32::MAX,
    }
}

/// Takes the previous session of this client id: from its connected owner (kicked, and
/// waited for within [`TAKEOVER_TIMEOUT`]) or from where it was parked.
async fn take_previous(state: &mut SlotState) -> Option<DetachedSession> {
    if let Some(owner) = state.owner.take() {
        let (reply, handed_over) = oneshot::channel();
        if owner.kick.send(Kick { reply }).is_ok() {
            match tokio::time::timeout(TAKEOVER_TIMEOUT, handed_over).await {
                Ok(Ok(session)) => return Some(session),
                _ => tracing::warn!("previous connection did not hand its session over in time"),
            }
        }
    }
    state.take_detached()
}

/// Sends a refusing CONNACK and lets the caller close [MQTT-3.2.2-5].
pub async fn refuse<R, W>(io: &mut Io<R, W>, version: ProtocolVersion, reason: ReasonCode)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let connack = ConnAck {
        session_present: false,
        reason,
        properties: Properties::default(),
    };
    io.queue(&Packet::ConnAck(connack), version);
    io.flush_within(Duration::from_secs(2)).await;
}
