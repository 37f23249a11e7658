//! TCP listeners: bind, accept, and spawn one task per connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::connection;
use crate::metrics::bump;

/// Binding a listener failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    /// The address that could not be bound.
    pub addr: SocketAddr,
    /// The OS error (e.g. address already in use).
    pub source: std::io::Error,
}

/// Binds a TCP listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// Accepts connections until `shutdown` turns true; each runs in a task of `tasks`.
pub async fn accept_loop(
    listener: TcpListener,
    broker: Arc<Broker>,
    connection_ids: Arc<AtomicU64>,
    tasks: Arc<parking_lot::Mutex<JoinSet<()>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let id = connection_ids.fetch_add(1, Ordering::Relaxed);
                let task = serve_tcp(Arc::clone(&broker), stream, peer, id, shutdown.clone());
                let mut tasks = tasks.lock();
                // Reap finished tasks so the set stays as large as the live connections.
                while tasks.try_join_next().is_some() {}
                tasks.spawn(task);
            }
            Err(error) => {
                // Out of file descriptors and the like: back off briefly instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_tcp(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    connection_id: u64,
    shutdown: watch::Receiver<bool>,
) {
    let metrics = broker.metrics();
    bump(&metrics.connections_accepted);
    metrics.connections_current.fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    connection::serve(
        Arc::clone(&broker),
        reader,
        writer,
        peer,
        connection_id,
        shutdown,
    )
    .await;
    broker
        .metrics()
        .connections_current
        .fetch_sub(1, Ordering::Relaxed);
}
