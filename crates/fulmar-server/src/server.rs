//! The running broker: listeners plus their connections, and a clean stop.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::config::Config;
use crate::listener::{self, BindError};
use crate::security::{Security, SecurityError};
use crate::tls::{ReloadableTls, TlsError};
use crate::transport::{self, ListenerContext};

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The password or ACL file is invalid.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// A TLS certificate, key or CA could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A broker whose listeners are bound and accepting.
pub struct Server {
    tls_configs: Vec<Arc<ReloadableTls>>,
    broker: Arc<Broker>,
    local_addrs: Vec<SocketAddr>,
    websocket_addrs: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    accept_tasks: JoinSet<()>,
    connections: Arc<parking_lot::Mutex<JoinSet<()>>>,
}

impl Server {
    /// Loads the auth files and TLS material, binds every configured listener (all or
    /// none) and starts accepting.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        let security = Security::load(config.auth.clone())?;
        let mut listeners = Vec::new();
        let mut tls_configs = Vec::new();
        for listener_config in &config.listeners {
            let tls = match &listener_config.tls {
                Some(settings) => Some(Arc::new(ReloadableTls::new(settings.clone())?)),
                None => None,
            };
            tls_configs.extend(tls.clone());
            let context = ListenerContext {
                allow_anonymous: listener_config.allow_anonymous,
                tls,
            };
            listeners.push((
                Arc::new(context),
                listener::bind(listener_config.bind).await?,
            ));
        }
        let mut ws_listeners = Vec::new();
        for listener_config in &config.websocket_listeners {
            let tls = match &listener_config.tls {
                Some(settings) => Some(Arc::new(ReloadableTls::new(settings.clone())?)),
                None => None,
            };
            tls_configs.extend(tls.clone());
            let context = ListenerContext {
                allow_anonymous: listener_config.allow_anonymous,
                tls,
            };
            let bind = listener_config.bind;
            ws_listeners.push((bind, Arc::new(context), listener::bind(bind).await?));
        }
        let broker = Arc::new(Broker::with_security(config, security));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let connections = Arc::new(parking_lot::Mutex::new(JoinSet::new()));
        let connection_ids = Arc::new(AtomicU64::new(1));
        let mut accept_tasks = JoinSet::new();
        let mut local_addrs = Vec::new();
        for (context, tcp) in listeners {
            let addr = tcp.local_addr().map_err(|source| BindError {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
            let kind = if context.tls.is_some() {
                "mqtt over tls"
            } else {
                "mqtt over tcp"
            };
            tracing::info!("listening on {addr} ({kind})");
            local_addrs.push(addr);
            accept_tasks.spawn(listener::accept_with(
                tcp,
                Arc::clone(&broker),
                Arc::clone(&connection_ids),
                Arc::clone(&connections),
                shutdown_rx.clone(),
                move |broker, stream, peer, id, shutdown| {
                    transport::serve_tcp(Arc::clone(&context), broker, stream, peer, id, shutdown)
                },
            ));
        }
        let mut websocket_addrs = Vec::new();
        for (bind, context, tcp) in ws_listeners {
            let addr = tcp
                .local_addr()
                .map_err(|source| BindError { addr: bind, source })?;
            let kind = if context.tls.is_some() {
                "secure websocket"
            } else {
                "websocket"
            };
            tracing::info!(
                "listening on {addr} (mqtt over {kind}, path {})",
                crate::websocket::PATH
            );
            websocket_addrs.push(addr);
            accept_tasks.spawn(listener::accept_with(
                tcp,
                Arc::clone(&broker),
                Arc::clone(&connection_ids),
                Arc::clone(&connections),
                shutdown_rx.clone(),
                move |broker, stream, peer, id, shutdown| {
                    let context = Arc::clone(&context);
                    transport::serve_websocket(context, broker, stream, peer, id, shutdown)
                },
            ));
        }
        Ok(Server {
            tls_configs,
            broker,
            local_addrs,
            websocket_addrs,
            shutdown,
            accept_tasks,
            connections,
        })
    }

    /// The addresses of the TCP listeners actually bound (useful with port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The addresses of the WebSocket listeners actually bound.
    pub fn websocket_addrs(&self) -> &[SocketAddr] {
        &self.websocket_addrs
    }

    /// The shared broker state.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Re-reads the password file, the ACL file and every listener's TLS certificate and
    /// key (SIGHUP). A file that fails to load is reported with its error and the old one
    /// stays in force; established connections are not affected.
    pub fn reload(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if let Err(e) = self.broker.security().reload() {
            errors.push(e.to_string());
        }
        for tls in &self.tls_configs {
            if let Err(e) = tls.reload() {
                errors.push(e.to_string());
            }
        }
        errors
    }

    /// Stops accepting, closes every connection, and waits for them (bounded by `grace`).
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.shutdown.send(true);
        while self.accept_tasks.join_next().await.is_some() {}
        let mut connections = std::mem::take(&mut *self.connections.lock());
        let drained = tokio::time::timeout(grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("some connections did not close within {grace:?}; aborting them");
            connections.abort_all();
        }
        tracing::info!("broker stopped");
    }
}
