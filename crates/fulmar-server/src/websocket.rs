//! MQTT over WebSocket: a WebSocket connection seen as a plain byte stream, so that
//! [`connection::serve`](crate::connection::serve) runs over it unchanged.
//!
//! MQTT 5.0 §6 / 3.1.1 §6: control packets travel in WebSocket *binary* data frames and a
//! frame boundary means nothing to MQTT. A packet may span several frames and a frame may
//! hold several packets: the adapter concatenates frame payloads on the way in, so the
//! connection's decoder sees exactly the TCP byte stream it already handles.
//!
//! ```text
//!  peer ─frames─► tungstenite ─Binary payloads─► WsByteStream::poll_read ─bytes─► decoder
//!  encoder ─bytes─► WsByteStream::poll_write (≤ OUT_FRAME buffered) ─poll_flush─► one Binary frame
//! ```
//! Pings are answered by tungstenite itself while reading. A text frame ends the
//! connection ([MQTT-6.0.0-1]) with close code 1003; the close frame goes out when the
//! connection shuts its write side down.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::broker::Broker;

/// The HTTP path the WebSocket endpoint answers on.
pub const PATH: &str = "/mqtt";

/// Subprotocols accepted, in order of preference ([MQTT-6.0.0-3]: `mqtt`; `mqttv3.1` is what
/// older clients such as MQTT.js in 3.1 mode and some paho versions offer).
pub const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Largest binary frame the broker writes; bytes written beyond it start a new frame.
const OUT_FRAME: usize = 64 * 1024;

/// Incoming WebSocket messages may exceed the largest MQTT packet by this much, so that a
/// maximal packet and a few small ones can still share one frame.
const IN_SLACK: usize = 64 * 1024;

/// Read buffer of tungstenite per connection (its default of 128 KiB is meant for bulk
/// transfer; MQTT connections are many and mostly idle).
const READ_BUFFER: usize = 16 * 1024;

/// How long the final close frame may take to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);

/// The tungstenite limits for one MQTT connection. Every buffer in the path is bounded:
/// one incoming message (≤ `max_packet_size + IN_SLACK`), one outgoing frame being built
/// (≤ [`OUT_FRAME`]), and tungstenite's write buffer (≤ 4 × [`OUT_FRAME`]; exceeding it is
/// an error that closes the connection, and cannot happen while writes go through
/// `poll_ready`, which flushes first).
pub fn config(max_packet_size: usize) -> WebSocketConfig {
    let max_message = max_packet_size.saturating_add(IN_SLACK);
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(OUT_FRAME)
        .max_write_buffer_size(4 * OUT_FRAME)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// A WebSocket connection as an `AsyncRead + AsyncWrite` byte stream of binary frames.
///
/// # Invariants
/// - `incoming` holds the unread rest of at most one binary message.
/// - `outgoing.len() <= OUT_FRAME`; its bytes go out as one frame at the next flush (or as
///   soon as it is full), so nothing stays buffered once `poll_flush` returned `Ready(Ok)`.
/// - after `read_done`, reads return end of stream and no more frames are read.
pub struct WsByteStream<S> {
    inner: WebSocketStream<S>,
    incoming: Bytes,
    outgoing: BytesMut,
    read_done: bool,
    /// The code of the close frame to send at shutdown (why we are closing).
    close_code: CloseCode,
    close_sent: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsByteStream<S> {
    /// Wraps an established WebSocket connection (handshake already done).
    pub fn new(inner: WebSocketStream<S>) -> Self {
        WsByteStream {
            inner,
            incoming: Bytes::new(),
            outgoing: BytesMut::new(),
            read_done: false,
            close_code: CloseCode::Normal,
            close_sent: false,
        }
    }

    /// Sends the buffered output as one binary frame (into tungstenite's bounded buffer).
    fn poll_send_frame(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.outgoing.is_empty() {
            return Poll::Ready(Ok(()));
        }
        ready!(Pin::new(&mut self.inner).poll_ready(cx)).map_err(to_io)?;
        let frame = self.outgoing.split().freeze();
        Pin::new(&mut self.inner)
            .start_send(Message::Binary(frame))
            .map_err(to_io)?;
        Poll::Ready(Ok(()))
    }

    /// Ends reading with `code` as the reason to give the peer, and reports `error`.
    fn fail_read(&mut self, code: CloseCode, error: io::Error) -> Poll<io::Result<()>> {
        self.read_done = true;
        self.close_code = code;
        Poll::Ready(Err(error))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsByteStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.incoming.is_empty() {
                let n = this.incoming.len().min(buf.remaining());
                buf.put_slice(&this.incoming[..n]);
                this.incoming.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.read_done {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                // Frame boundaries carry no meaning for MQTT: payloads just concatenate.
                Some(Ok(Message::Binary(payload))) => this.incoming = payload,
                // [MQTT-6.0.0-1] data in any other frame type closes the connection.
                Some(Ok(Message::Text(_))) => {
                    let error = io::Error::new(io::ErrorKind::InvalidData, "text frame");
                    return this.fail_read(CloseCode::Unsupported, error);
                }
                // tungstenite has queued the pong already; it goes out with the next write.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                // The peer's close: tungstenite answers it; for us it is end of stream.
                Some(Ok(Message::Close(_))) | None => {
                    this.read_done = true;
                    return Poll::Ready(Ok(()));
                }
                Some(Err(error)) => {
                    let code = match error {
                        WsError::Capacity(_) => CloseCode::Size,
                        _ => CloseCode::Protocol,
                    };
                    return this.fail_read(code, to_io(error));
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsByteStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.outgoing.len() >= OUT_FRAME {
            ready!(this.poll_send_frame(cx))?;
        }
        let n = buf.len().min(OUT_FRAME - this.outgoing.len());
        this.outgoing.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_send_frame(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx).map_err(to_io)
    }

    /// Flushes, sends one close frame (code: normal, or why reading failed) and flushes it.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.close_sent {
            ready!(this.poll_send_frame(cx))?;
            ready!(Pin::new(&mut this.inner).poll_ready(cx)).map_err(to_io)?;
            this.close_sent = true;
            let frame = CloseFrame {
                code: this.close_code,
                reason: "".into(),
            };
            // The peer may have closed first; then there is nothing left to say.
            if let Err(error) = Pin::new(&mut this.inner).start_send(Message::Close(Some(frame))) {
                return Poll::Ready(closed_is_ok(error));
            }
        }
        Pin::new(&mut this.inner)
            .poll_flush(cx)
            .map(|r| r.or_else(closed_is_ok))
    }
}

fn to_io(error: WsError) -> io::Error {
    match error {
        WsError::Io(error) => error,
        other => io::Error::other(other),
    }
}

fn closed_is_ok(error: WsError) -> io::Result<()> {
    match error {
        WsError::ConnectionClosed | WsError::AlreadyClosed => Ok(()),
        other => Err(to_io(other)),
    }
}

/// Runs MQTT over an upgraded connection until it ends, then closes the WebSocket.
pub(crate) async fn serve<S>(
    origin: crate::security::Origin,
    broker: Arc<Broker>,
    upgraded: S,
    peer: SocketAddr,
    connection_id: u64,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let max_packet = broker.config().limits.max_packet_size as usize;
    let ws =
        WebSocketStream::from_raw_socket(upgraded, Role::Server, Some(config(max_packet))).await;
    let (mut reader, mut writer) = tokio::io::split(WsByteStream::new(ws));
    let halves = (&mut reader, &mut writer);
    crate::connection::serve(origin, broker, halves, peer, connection_id, shutdown).await;
    // The connection may have ended without shutting its writer down (e.g. the peer
    // vanished); closing twice is harmless, the close frame is sent once.
    let mut stream = reader.unsplit(writer);
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, stream.shutdown()).await;
}

#[cfg(test)]
#[path = "websocket_tests.rs"]
mod tests;
