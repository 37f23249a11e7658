//! Listeners: bind, accept, and spawn one task per connection (TCP here; WebSocket in
//! [`http`](crate::http) reuses the accept loop).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::broker::Broker;

/// Binding a listener failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}")]
pub struct BindError {
    /// The address that could not be bound.
    pub addr: SocketAddr,
    /// The OS error (e.g. address already in use).
    pub source: std::io::Error,
}

/// Connections the kernel may hold completed but not yet accepted (clamped by
/// `net.core.somaxconn`). When this queue is full the kernel drops the client's handshake and
/// the client retries its SYN only after a second, so a burst of connects larger than the
/// queue costs its stragglers a whole second; std's and mio's default of 128 was smaller than
/// the 157 concurrent connects of `fulmar bench conn -c 5000`.
const ACCEPT_BACKLOG: u32 = 4096;

/// Binds a TCP listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    let listen = || {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // As std does for listeners: a restarted broker can bind while old sockets linger
        // in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(ACCEPT_BACKLOG)
    };
    listen().map_err(|source| BindError { addr, source })
}

/// The accept loop shared by every kind of listener: `serve` runs each accepted stream.
pub(crate) async fn accept_with<F, Fut>(
    listener: TcpListener,
    broker: Arc<Broker>,
    connection_ids: Arc<AtomicU64>,
    tasks: Arc<parking_lot::Mutex<JoinSet<()>>>,
    mut shutdown: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(Arc<Broker>, TcpStream, SocketAddr, u64, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let id = connection_ids.fetch_add(1, Ordering::Relaxed);
                let task = serve(Arc::clone(&broker), stream, peer, id, shutdown.clone());
                {
                    let mut tasks = tasks.lock();
                    reap_finished(&mut tasks);
                    tasks.spawn(task);
                }
                // Let the new connection run (its CONNECT has usually arrived with it) before
                // accepting the next: accepting a whole backlog first leaves hundreds of
                // handshakes in flight through a burst of connects, and their freed tasks as
                // holes in the heap among the connections that stay.
                tokio::task::yield_now().await;
            }
            Err(error) => {
                // Out of file descriptors and the like: back off briefly instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Joins the finished tasks in a broker's set of connection tasks, so that the set stays as
/// large as the live connections: a finished task's memory stays in it until it is joined.
pub(crate) fn reap_finished(tasks: &mut JoinSet<()>) {
    while tasks.try_join_next().is_some() {}
}
