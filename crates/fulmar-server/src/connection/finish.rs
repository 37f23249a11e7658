//! The end of a connection: tell the client why (MQTT 5), publish the will when the spec
//! says so, and hand the session on — to the connection that took it over, to the registry
//! if it is persistent, or to its end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fulmar_core::ProtocolError;
use fulmar_proto::{Disconnect, Packet, PropertyValues, ReasonCode};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Connection, Exit, Io};
use crate::lifecycle;
use crate::metrics::bump;
use crate::registry::DetachedSession;

/// How long a closing connection may spend writing its last bytes.
const CLOSING_FLUSH: Duration = Duration::from_millis(500);

impl Connection {
    /// Closes the connection after the run loop ended with `exit`.
    pub(crate) async fn finish<R, W>(mut self, exit: Exit, io: &mut Io<R, W>, peer: SocketAddr)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        // [MQTT-3.1.2-8] the will is published unless the client said DISCONNECT (MQTT 5:
        // unless with 0x04); not on a broker shutdown either (no one is left to receive it).
        let will_due = match &exit {
            Exit::ClientDisconnect { with_will } => *with_will,
            Exit::Shutdown => false,
            Exit::Closed
            | Exit::Idle
            | Exit::Violation(_)
            | Exit::TakenOver(_)
            | Exit::CannotStore => true,
        };
        let server_reason = self.log_exit(&exit, peer);
        if let Some(reason) = server_reason.filter(|_| self.session.version().is_v5()) {
            // A Reason String is always allowed on DISCONNECT [MQTT-3.1.2-29].
            let properties = PropertyValues {
                reason_string: exit_text(&exit),
                ..PropertyValues::default()
            }
            .into();
            let disconnect = Disconnect { reason, properties };
            io.queue(&Packet::Disconnect(disconnect), self.session.version());
        }
        if !matches!(exit, Exit::Closed | Exit::Idle) {
            io.flush_within(CLOSING_FLUSH).await;
            io.shutdown_within(CLOSING_FLUSH).await;
        }
        self.mailbox.go_offline();
        // Closing: a pending QoS 2 send gate no longer matters.
        let _ = self.flush_persist();
        let will = self.will.take().filter(|_| will_due);
        let mut detached = DetachedSession {
            key: self.key,
            session: self.session,
            mailbox: Arc::clone(&self.mailbox),
            expiry_secs: self.expiry_secs,
            pending_will: None,
            username: self.username.as_deref().map(str::to_owned),
        };
        if let Some(will) = will {
            // MQTT 5 Will Delay: a persistent session keeps the will pending; otherwise it
            // goes out now.
            let delayed = will.properties.will_delay_interval.unwrap_or(0) > 0;
            if delayed && detached.is_persistent() {
                detached.pending_will = Some(*will);
            } else {
                self.broker.publish_will(*will);
            }
        }
        if let Exit::TakenOver(kick) = exit {
            let _ = kick.reply.send(detached);
            return;
        }
        // Park or end the session; a takeover that arrives meanwhile gets it instead.
        tokio::select! {
            kick = self.mailbox.kicked() => {
                let _ = kick.reply.send(detached);
            }
            mut state = Arc::clone(&self.slot).lock_owned() => {
                let mine = state
                    .owner
                    .as_ref()
                    .is_some_and(|owner| Arc::ptr_eq(owner, &*self.mailbox));
                if mine {
                    state.owner = None;
                }
                if mine && detached.is_persistent() {
                    super::store::store_parked(&self.broker, &detached);
                    lifecycle::park(&self.broker, self.mailbox.client_id(), &self.slot, &mut state, detached);
                } else {
                    self.broker.end_session(detached);
                    if state.owner.is_none() && state.detached.is_none() {
                        self.broker.registry.remove(self.mailbox.client_id(), &self.slot, &state);
                    }
                }
            }
        }
    }

    /// Logs why the connection ended; returns the reason to tell an MQTT 5 client, if any.
    fn log_exit(&self, exit: &Exit, peer: SocketAddr) -> Option<ReasonCode> {
        let client_id = self.client_id();
        match exit {
            Exit::ClientDisconnect { .. } => {
                tracing::debug!(client_id, %peer, "client disconnected");
                None
            }
            Exit::Closed | Exit::Idle => {
                tracing::debug!(client_id, %peer, "connection closed by peer");
                None
            }
            Exit::Violation(ProtocolError::KeepAliveTimeout) => {
                tracing::info!(client_id, %peer, "keep-alive expired; closing");
                Some(ReasonCode::KeepAliveTimeout)
            }
            Exit::Violation(error) => {
                bump(&self.broker.metrics().protocol_errors);
                tracing::info!(client_id, %peer, %error, "protocol violation; closing");
                Some(error.reason_code())
            }
            Exit::TakenOver(_) => {
                tracing::info!(client_id, %peer, "session taken over by a new connection");
                Some(ReasonCode::SessionTakenOver)
            }
            Exit::Shutdown => Some(ReasonCode::ServerShuttingDown),
            Exit::CannotStore => {
                tracing::warn!(client_id, %peer, "store full: closing an MQTT 3.1.1 publisher without acknowledging its message (3.1.1 cannot refuse one), so that it sends it again later");
                Some(ReasonCode::QuotaExceeded)
            }
        }
    }
}

/// The Reason String sent with a server DISCONNECT.
fn exit_text(exit: &Exit) -> Option<String> {
    match exit {
        Exit::Violation(error) => Some(error.to_string()),
        Exit::TakenOver(_) => Some("session taken over by another connection".to_string()),
        Exit::Shutdown => Some("broker shutting down".to_string()),
        Exit::CannotStore => Some("store full".to_string()),
        Exit::ClientDisconnect { .. } | Exit::Closed | Exit::Idle => None,
    }
}
