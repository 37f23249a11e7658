//! CONNECT to CONNACK: identify the client, take its session over from a previous
//! connection or a parked state, and answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fulmar_core::{validate_connect, ConnectDecision, Session};
use fulmar_proto::{ConnAck, Connect, Packet, Properties, ProtocolVersion, ReasonCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use super::io::Io;
use super::Connection;
use crate::broker::Broker;
use crate::mailbox::Mailbox;
use crate::registry::{DetachedSession, Kick, Owner, Slot, SlotState};

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

    let persistent = match version {
        ProtocolVersion::V5 => connect.properties.session_expiry_interval.unwrap_or(0) > 0,
        _ => !connect.clean_start,
    };
    let (slot, mut state) = lock_slot(broker, &client_id).await;
    let previous = take_previous(&mut state).await;
    let limits = broker.config().session_limits();
    let now = Instant::now();
    let (detached, session_present) = match previous {
        // [MQTT-3.2.2-2] resume: session present.
        Some(mut prev) if !connect.clean_start && prev.persistent => {
            prev.session
                .attach(version, connect.keep_alive, limits, now);
            (prev, true)
        }
        other => {
            // [MQTT-3.1.2-6] clean session discards any previous session.
            if let Some(prev) = other {
                broker.discard_session(prev.key, &prev.session, &prev.mailbox);
            }
            let session = Session::new(client_id.clone(), version, connect.keep_alive, limits, now);
            let mailbox = Arc::new(Mailbox::new(
                client_id.clone(),
                broker.config().queue_limits(),
            ));
            let key = broker.new_session_key();
            (
                DetachedSession {
                    key,
                    session,
                    mailbox,
                    persistent,
                },
                false,
            )
        }
    };
    let DetachedSession {
        key,
        mut session,
        mailbox,
        ..
    } = detached;
    if let Some(receive_maximum) = connect.properties.receive_maximum {
        session.set_client_receive_maximum(receive_maximum);
    }
    mailbox.with(|outbox| outbox.set_online(true));
    let (kick_tx, kick_rx) = oneshot::channel();
    state.owner = Some(Owner {
        connection_id,
        kick: kick_tx,
    });
    drop(state);

    let mut properties = Properties::default();
    if assigned && version.is_v5() {
        properties.assigned_client_identifier = Some(client_id.clone());
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
        persistent,
        will: connect.will,
        slot,
        kick_rx: Some(kick_rx),
        batch: Vec::new(),
    })
}

/// Locks the live slot for `client_id` (a slot removed while we waited is looked up again).
async fn lock_slot(
    broker: &Broker,
    client_id: &str,
) -> (Arc<Slot>, tokio::sync::OwnedMutexGuard<SlotState>) {
    loop {
        let slot = broker.registry.slot(client_id);
        let state = Arc::clone(&slot).lock_owned().await;
        if !state.removed {
            return (slot, state);
        }
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
    state.detached.take()
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
