//! Taking a connection's socket out of tokio while the connection is dormant (see
//! [`crate::dormant`]), and giving it back when it wakes.

use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf, ReuniteError};
use tokio::net::TcpStream;

use super::Io;

/// A transport whose connections may go dormant: plain TCP. TLS and WebSocket keep state
/// in their streams (and their connections stay awake).
pub trait Detach: Sized {
    /// Whether this transport's connections can go dormant.
    const CAN_SLEEP: bool = false;

    /// The socket, deregistered from tokio; called only with both buffers empty.
    fn detach(self) -> Detached<Self> {
        Detached::Kept(self)
    }

    /// The transport again over a socket [`Detach::detach`] gave.
    fn attach(_socket: std::net::TcpStream) -> std::io::Result<Self> {
        Err(std::io::Error::other("this transport is never detached"))
    }
}

/// What [`Detach::detach`] gave.
pub enum Detached<T> {
    /// The socket, ready for the dormant set's epoll.
    Socket(std::net::TcpStream),
    /// The transport as it was: it cannot be detached.
    Kept(T),
    /// Deregistering failed and the socket is closed.
    Lost(std::io::Error),
}

impl Detach for Io<OwnedReadHalf, OwnedWriteHalf> {
    const CAN_SLEEP: bool = true;

    fn detach(self) -> Detached<Self> {
        debug_assert!(self.rbuf.is_empty() && self.wbuf.is_empty());
        match self.reader.reunite(self.writer) {
            Ok(stream) => match stream.into_std() {
                Ok(socket) => Detached::Socket(socket),
                Err(error) => Detached::Lost(error),
            },
            Err(ReuniteError(reader, writer)) => Detached::Kept(Io::new(reader, writer)),
        }
    }

    fn attach(socket: std::net::TcpStream) -> std::io::Result<Self> {
        attach(socket)
    }
}

/// TLS over TCP.
impl<S> Detach for Io<ReadHalf<S>, WriteHalf<S>> {}

/// MQTT over WebSocket.
impl<R, W> Detach for Io<&mut R, &mut W> {}

/// A dormant connection's socket back in tokio.
pub fn attach(socket: std::net::TcpStream) -> std::io::Result<Io<OwnedReadHalf, OwnedWriteHalf>> {
    let (reader, writer) = TcpStream::from_std(socket)?.into_split();
    Ok(Io::new(reader, writer))
}
