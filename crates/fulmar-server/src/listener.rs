//! Listeners: bind, accept, and spawn one task per connection (TCP here; WebSocket in
//! [`http`](crate::http) reuses the accept loop).

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
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

/// Binds a TCP listener and registers it with the runtime, ready for [`accept_with`].
pub async fn bind(addr: SocketAddr) -> Result<Acceptor, BindError> {
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
        Acceptor::new(socket.listen(ACCEPT_BACKLOG)?)
    };
    listen().map_err(|source| BindError { addr, source })
}

/// The accept loop shared by every kind of listener: `serve` runs each accepted stream.
pub(crate) async fn accept_with<F, Fut>(
    mut acceptor: Acceptor,
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
            accepted = acceptor.accept() => accepted,
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

/// Accepts connections from a listening socket, asking the kernel whether one is queued
/// before accepting again after a success, instead of finding out from a failed accept.
///
/// Linux's `accept4` allocates the new socket and its file before it looks at the queue,
/// and frees both when the queue is empty (`do_accept` in `net/socket.c`). Accepting until
/// `EAGAIN`, as a readiness loop does, made a third of the accepts of a connect storm such
/// failures (28,682 calls for 19,000 connections); a `poll` of the listening socket costs a
/// fraction of one.
pub struct Acceptor {
    listener: AsyncFd<mio::net::TcpListener>,
    /// The last call accepted a connection: the queue may be empty now.
    accepted_last: bool,
}

impl Acceptor {
    fn new(listener: TcpListener) -> std::io::Result<Self> {
        let listener = mio::net::TcpListener::from_std(listener.into_std()?);
        // SAFETY: a listener owns its descriptor for its whole life and always returns that
        // one from `as_raw_fd`.
        let listener = unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) }
            .map_err(|refused| refused.into_parts().1)?;
        Ok(Self {
            listener,
            accepted_last: false,
        })
    }

    /// The address the listener is bound to (its port, when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.get_ref().local_addr()
    }

    async fn accept(&mut self) -> std::io::Result<(TcpStream, SocketAddr)> {
        loop {
            let mut ready = self.listener.readable().await?;
            if std::mem::take(&mut self.accepted_last) && !connection_queued(ready.get_inner()) {
                // Clears only the readiness this guard saw: a connection queued since is a
                // new edge (the kernel signals each one) and stays set.
                ready.clear_ready();
                continue;
            }
            match ready.try_io(|listener| listener.get_ref().accept()) {
                Ok(Ok((stream, peer))) => {
                    self.accepted_last = true;
                    return Ok((TcpStream::from_std(stream.into())?, peer));
                }
                Ok(Err(error)) => return Err(error),
                Err(_would_block) => continue, // `try_io` cleared the readiness
            }
        }
    }
}

/// Whether `listener` has a connection waiting to be accepted (or an error to report).
fn connection_queued(listener: &mio::net::TcpListener) -> bool {
    let mut pollfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one initialised `pollfd` for a descriptor `listener` keeps open, count 1;
    // a zero timeout never blocks.
    let ready = unsafe { libc::poll(&mut pollfd, 1, 0) };
    // A failed poll says "queued": the accept that follows meets and reports the error.
    ready != 0
}

/// Joins the finished tasks in a broker's set of connection tasks, so that the set stays as
/// large as the live connections: a finished task's memory stays in it until it is joined.
pub(crate) fn reap_finished(tasks: &mut JoinSet<()>) {
    while tasks.try_join_next().is_some() {}
}
