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

/// A broker whose listeners are bound and accepting.
pub struct Server {
    broker: Arc<Broker>,
    local_addrs: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    accept_tasks: JoinSet<()>,
    connections: Arc<parking_lot::Mutex<JoinSet<()>>>,
}

impl Server {
    /// Binds every configured listener (all or none) and starts accepting.
    pub async fn start(config: Config) -> Result<Server, BindError> {
        let mut listeners = Vec::new();
        for listener_config in &config.listeners {
            listeners.push(listener::bind(listener_config.bind).await?);
        }
        let broker = Arc::new(Broker::new(config));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let connections = Arc::new(parking_lot::Mutex::new(JoinSet::new()));
        let connection_ids = Arc::new(AtomicU64::new(1));
        let mut accept_tasks = JoinSet::new();
        let mut local_addrs = Vec::new();
        for tcp in listeners {
            let addr = tcp.local_addr().map_err(|source| BindError {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
            tracing::info!("listening on {addr} (mqtt over tcp)");
            local_addrs.push(addr);
            accept_tasks.spawn(listener::accept_loop(
                tcp,
                Arc::clone(&broker),
                Arc::clone(&connection_ids),
                Arc::clone(&connections),
                shutdown_rx.clone(),
            ));
        }
        Ok(Server {
            broker,
            local_addrs,
            shutdown,
            accept_tasks,
            connections,
        })
    }

    /// The addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The shared broker state.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
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
