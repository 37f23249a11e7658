//! CONNECT to CONNACK: identify the client, take its session over from a previous
//! connection or a parked state, and answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fulmar_core::{validate_connect, ClientCapabilities, ConnectDecision, Session};
use fulmar_proto::{
    Auth, ConnAck, Connect, Packet, Properties, PropertyValues, ProtocolVersion, ReasonCode,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use super::hold;
use super::io::Io;
use super::Connection;
use crate::broker::{Broker, Username};
use crate::mailbox::Mailbox;
use crate::mailbox::Signal;
use crate::persist::StoreSlot;
use crate::registry::{DetachedSession, Kick, SlotState};
use crate::security::Origin;
use fulmar_store::{Mutation, SessionRecord};

/// How long a new connection waits for the previous owner of its client id to hand over.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers a CONNECT. Returns the established connection, or `None` after a refusal
/// (the CONNACK with the reason is already written).
pub async fn accept<R, W>(
    broker: &Arc<Broker>,
    io: &mut Io<R, W>,
    connect: Connect,
    connection_id: u64,
    origin: &Origin,
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
    let (username, auth_reply) = match authenticate(broker, io, &connect, origin).await {
        Ok(outcome) => outcome,
        Err(reason) => {
            refuse(io, version, reason).await;
            return None;
        }
    };
    let client_id: Arc<str> = client_id.into();
    let username = Username::new(username);

    let config = broker.config();
    let settings = &config.mqtt;
    let requested_expiry = session_expiry_requested(&connect);
    let expiry_secs = requested_expiry.min(settings.max_session_expiry_secs);
    let (slot, mut state) = broker.registry.lock(&client_id).await;
    let previous = take_previous(&mut state).await;
    let (detached, session_present) =
        resume_or_create(broker, previous, &connect, &client_id, expiry_secs);
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
    mailbox.listen(connection_id);
    state.owner = Some(Arc::clone(&mailbox));
    drop(state);
    let mailbox = super::Listening {
        mailbox,
        connection_id,
    };
    // The session record is committed before CONNACK: what the client is told about its
    // session (present, expiry) holds across a crash from then on.
    let stored = (expiry_secs, version, username.as_deref().map(str::to_owned));
    if let Err(e) = store_connected(broker, &mailbox, stored).await {
        tracing::error!(%client_id, error = %e, "cannot store the session; refusing CONNECT");
        refuse(io, version, ReasonCode::ServerUnavailable).await;
        return None;
    }

    let granted = Granted {
        client_id: &client_id,
        assigned,
        server_keep_alive,
        expiry_secs,
        requested_expiry,
    };
    let properties = connack_properties(broker, &connect, &granted, auth_reply);
    let connack = ConnAck {
        session_present,
        reason: ReasonCode::Success,
        properties,
    };
    io.queue(&Packet::ConnAck(connack), version);
    tracing::debug!(%client_id, ?version, session_present, "client connected");

    Some(Connection {
        broker: Arc::clone(broker),
        key,
        session,
        mailbox,
        expiry_secs,
        will: connect.will.map(Box::new),
        username,
        slot,
        hold: hold::PublisherHold::default(),
        write_gate: None,
        admitted: None,
    })
}

/// The previous session resumed (`true`: session present), or a new one; a previous session
/// that is not resumed ends here [MQTT-3.1.2-6].
fn resume_or_create(
    broker: &Broker,
    previous: Option<DetachedSession>,
    connect: &Connect,
    client_id: &Arc<str>,
    expiry_secs: u32,
) -> (DetachedSession, bool) {
    let limits = broker.session_limits();
    let now = Instant::now();
    let version = connect.protocol;
    match previous {
        // [MQTT-3.2.2-2] resume: session present; a pending delayed will is cancelled
        // [MQTT-3.1.3-9].
        Some(mut prev) if !connect.clean_start && prev.is_persistent() => {
            prev.session
                .attach(version, connect.keep_alive, limits, now);
            prev.pending_will = None;
            prev.expiry_secs = expiry_secs;
            (prev, true)
        }
        other => {
            if let Some(prev) = other {
                broker.end_session(prev);
            }
            let mut session = Session::new(version, connect.keep_alive, limits, now);
            let queue_limits = broker.config().queue_limits();
            // A persistent session is stored (when persistence is on); it logs its changes.
            let store = (expiry_secs > 0 && broker.persistence().is_some())
                .then(|| StoreSlot::new(Arc::clone(client_id), 0));
            session.set_recording(store.is_some());
            let mailbox = Arc::new(Mailbox::with_store(
                Arc::clone(client_id),
                queue_limits,
                store,
            ));
            let key = broker.new_session_key();
            let fresh = DetachedSession {
                key,
                session,
                mailbox,
                expiry_secs,
                pending_will: None,
                username: None,
            };
            (fresh, false)
        }
    }
}

/// Stores a connected persistent session (no disconnect time) and drops a stored delayed
/// will, which a resume cancels [MQTT-3.1.3-9].
async fn store_connected(
    broker: &Broker,
    mailbox: &Mailbox,
    (expiry_secs, version, username): (u32, ProtocolVersion, Option<String>),
) -> Result<(), fulmar_store::StoreError> {
    let (Some(slot), Some(persistence)) = (mailbox.store(), broker.persistence()) else {
        return Ok(());
    };
    let client_id = Arc::clone(&slot.client_id);
    let batch = vec![
        Mutation::PutSession(SessionRecord {
            client_id: Arc::clone(&client_id),
            expiry_interval_secs: expiry_secs,
            last_disconnect_ms: None,
            protocol_version: version,
            username,
        }),
        Mutation::DeleteWill { client_id },
    ];
    persistence.submit(batch).await
}

/// What the server granted a client, for the CONNACK properties.
struct Granted<'a> {
    client_id: &'a str,
    assigned: bool,
    server_keep_alive: Option<u16>,
    expiry_secs: u32,
    requested_expiry: u32,
}

/// CONNACK properties for an MQTT 5 client (none for 3.1.1): the server's capabilities and
/// what it changed of the client's request.
fn connack_properties(
    broker: &Broker,
    connect: &Connect,
    granted: &Granted<'_>,
    auth_reply: Option<Properties>,
) -> Properties {
    let mut properties = auth_reply.unwrap_or_default();
    if !connect.protocol.is_v5() {
        return properties;
    }
    let config = broker.config();
    let (settings, limits) = (&config.mqtt, &config.limits);
    settings.advertise(
        &mut properties,
        limits.max_awaiting_pubrel,
        limits.max_packet_size,
    );
    if granted.assigned {
        properties.assigned_client_identifier = Some(granted.client_id.to_string());
    }
    properties.server_keep_alive = granted.server_keep_alive;
    // MQTT 5 §3.2.2.3.2: tell the client when its Session Expiry Interval was lowered.
    if granted.expiry_secs != granted.requested_expiry {
        properties.session_expiry_interval = Some(granted.expiry_secs);
    }
    if connect.properties.request_response_information == Some(1)
        && !settings.response_information.is_empty()
    {
        let information = settings
            .response_information
            .replace("{client_id}", granted.client_id);
        properties.response_information = Some(information);
    }
    properties
}

/// Authenticates the client: a certificate identity, MQTT 5 enhanced authentication (an
/// AUTH exchange on this connection), or username and password. Returns the username and,
/// after enhanced authentication, the CONNACK properties that finish the exchange.
async fn authenticate<R, W>(
    broker: &Broker,
    io: &mut Io<R, W>,
    connect: &Connect,
    origin: &Origin,
) -> Result<(Option<String>, Option<Properties>), ReasonCode>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Some(method) = connect.properties.authentication_method.clone() else {
        return broker
            .security()
            .authenticate(connect, origin)
            .await
            .map(|user| (user, None));
    };
    let client_first = connect
        .properties
        .authentication_data
        .clone()
        .unwrap_or_default();
    let (exchange, challenge) = broker.security().start_enhanced(&method, &client_first)?;
    // MQTT 5 §4.12: AUTH 0x18 with the challenge; the client answers with AUTH 0x18.
    let properties = PropertyValues {
        authentication_method: Some(method.clone()),
        authentication_data: Some(challenge.into()),
        ..PropertyValues::default()
    }
    .into();
    let auth = Auth {
        reason: ReasonCode::ContinueAuthentication,
        properties,
    };
    io.queue(&Packet::Auth(auth), ProtocolVersion::V5);
    io.flush_within(Duration::from_secs(5)).await;
    let max_packet = broker.config().limits.max_packet_size as usize;
    let answer = tokio::time::timeout(
        broker.config().connect_timeout(),
        io.read_packet(ProtocolVersion::V5, max_packet),
    )
    .await;
    let response = match answer {
        Ok(Ok(Packet::Auth(auth)))
            if auth.reason == ReasonCode::ContinueAuthentication
                && auth.properties.authentication_method.as_deref() == Some(method.as_str()) =>
        {
            auth.properties
                .into_values()
                .authentication_data
                .unwrap_or_default()
        }
        _ => return Err(ReasonCode::NotAuthorized),
    };
    let (user, server_final) = exchange.finish(&response)?;
    let done = PropertyValues {
        authentication_method: Some(method),
        authentication_data: Some(server_final.into()),
        ..PropertyValues::default()
    }
    .into();
    Ok((Some(user), Some(done)))
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
        if owner.signal(Signal::Kick(Kick { reply })).is_ok() {
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
    // A Reason String is always allowed on CONNACK [MQTT-3.1.2-29]; 3.1.1 has no place for it.
    let properties = PropertyValues {
        reason_string: Some(explain_refusal(reason).to_string()),
        ..PropertyValues::default()
    }
    .into();
    let connack = ConnAck {
        session_present: false,
        reason,
        properties,
    };
    io.queue(&Packet::ConnAck(connack), version);
    io.flush_within(Duration::from_secs(2)).await;
}

/// The Reason String of a refusing CONNACK.
fn explain_refusal(reason: ReasonCode) -> &'static str {
    match reason {
        ReasonCode::UnsupportedProtocolVersion => "unsupported protocol version",
        ReasonCode::ClientIdentifierNotValid => "client identifier not valid",
        ReasonCode::BadUserNameOrPassword => "bad user name or password",
        ReasonCode::NotAuthorized => "not authorized",
        ReasonCode::BadAuthenticationMethod => "authentication method not supported",
        _ => "connection refused",
    }
}
