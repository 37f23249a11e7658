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
use crate::persist::Persistence;
use crate::security::{Security, SecurityError};
use crate::tls::{ReloadableTls, TlsError};
use crate::transport::{self, ListenerContext};
use fulmar_store::{Snapshot, StoreLimits};

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
    /// The store could not be opened or read (corrupt, locked by another broker, written by
    /// an unknown format version, unreadable): the broker does not start without it.
    #[error("cannot open the store in {dir}: {source} (move the directory away to start empty, or run with --no-persistence)")]
    Store {
        /// The data directory.
        dir: String,
        /// What went wrong.
        source: fulmar_store::StoreError,
    },
    /// The epoll set for dormant connections could not be created (out of file descriptors).
    #[error("cannot create the epoll set for dormant connections: {0}")]
    Dormant(std::io::Error),
}

/// Opens the store when persistence is on, with the limits of `[limits]`.
fn open_store(config: &Config) -> Result<(Option<Persistence>, Option<Snapshot>), StartError> {
    let settings = &config.persistence;
    if !settings.enabled {
        return Ok((None, None));
    }
    let limits = StoreLimits {
        max_queued_messages: config.limits.max_queued_messages as u64,
        max_queued_bytes: config.limits.max_queued_bytes as u64,
        max_store_bytes: settings.max_store_bytes,
    };
    let (persistence, snapshot) =
        Persistence::open(settings, limits).map_err(|source| StartError::Store {
            dir: settings.data_dir.display().to_string(),
            source,
        })?;
    tracing::info!(dir = %settings.data_dir.display(), fsync = ?settings.fsync, "persistence on");
    Ok((Some(persistence), Some(snapshot)))
}

/// A listener's authentication and TLS context; its TLS material joins `tls_configs` (for
/// SIGHUP reloads).
fn listener_context(
    listener_config: &crate::config::ListenerConfig,
    tls_configs: &mut Vec<Arc<ReloadableTls>>,
) -> Result<Arc<ListenerContext>, TlsError> {
    let tls = match &listener_config.tls {
        Some(settings) => Some(Arc::new(ReloadableTls::new(settings.clone())?)),
        None => None,
    };
    tls_configs.extend(tls.clone());
    Ok(Arc::new(ListenerContext {
        allow_anonymous: listener_config.allow_anonymous,
        tls,
    }))
}

/// Rebuilds the stored state before anything is accepted, and logs what was found.
async fn recover_logged(broker: &Arc<Broker>, snapshot: Snapshot) {
    let found = broker.recover(snapshot).await;
    tracing::info!(
        retained = found.retained,
        sessions = found.sessions,
        expired = found.expired,
        queued = found.queued,
        inflight = found.inflight,
        "store recovered"
    );
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
    /// The dormant set's task (see [`crate::dormant`]).
    dormant_watch: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Loads the auth files and TLS material, binds every configured listener (all or
    /// none) and starts accepting.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        let security = Security::load(config.auth.clone())?;
        let (persistence, snapshot) = open_store(&config)?;
        let mut listeners = Vec::new();
        let mut tls_configs = Vec::new();
        for listener_config in &config.listeners {
            let context = listener_context(listener_config, &mut tls_configs)?;
            listeners.push((context, listener::bind(listener_config.bind).await?));
        }
        let mut ws_listeners = Vec::new();
        for listener_config in &config.websocket_listeners {
            let context = listener_context(listener_config, &mut tls_configs)?;
            let bind = listener_config.bind;
            ws_listeners.push((bind, context, listener::bind(bind).await?));
        }
        let broker = Arc::new(Broker::with_parts(config, security, persistence));
        if let Some(snapshot) = snapshot {
            recover_logged(&broker, snapshot).await;
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let connections = Arc::new(parking_lot::Mutex::new(JoinSet::new()));
        let dormant_watch = broker
            .dormant
            .start(Arc::clone(&connections))
            .map_err(StartError::Dormant)?;
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
            dormant_watch,
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
        let drained = tokio::time::timeout(grace, async {
            // Connections past their handshake listen to their mailbox, not to `shutdown`;
            // a dormant one wakes for the signal, as a new task in `connections`.
            self.broker.registry.shut_down().await;
            loop {
                let mut connections = std::mem::take(&mut *self.connections.lock());
                if connections.is_empty() && self.broker.dormant.is_empty() {
                    break;
                }
                while connections.join_next().await.is_some() {}
                tokio::task::yield_now().await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("some connections did not close within {grace:?}; aborting them");
            self.connections.lock().abort_all();
        }
        self.dormant_watch.abort();
        // What is still dormant (a connection that did not take the signal) closes here.
        self.broker.dormant.close();
        if let Some(persistence) = self.broker.persistence() {
            persistence.close().await;
        }
        tracing::info!("broker stopped");
    }
}
