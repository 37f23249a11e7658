//! How a benchmark connection reaches the broker once its TCP socket is connected: as is, through
//! TLS, through a WebSocket (path `/mqtt`, subprotocol `mqtt`), or a WebSocket over TLS (WSS).
//!
//! ```text
//!  TCP ─► [TLS handshake, --tls] ─► [WebSocket upgrade, --ws] ─► Stream
//! ```
//!
//! Plain TCP stays a bare [`TcpStream`] so that `conn.rs` keeps its fast path: readiness, then
//! `try_read`/`try_write` straight on the socket, no layer in between. TLS and WebSocket buffer
//! and frame bytes, so they are driven through `AsyncRead`/`AsyncWrite` and must be flushed; one
//! boxed type covers both (a virtual call is nothing next to encrypting or masking the bytes).
//! The WebSocket side reuses the broker's own byte-stream adapter: MQTT bytes may span frames,
//! and a frame may carry several packets, in both directions.

use std::fmt;

use anyhow::Context as _;
use fulmar_client::TlsConfig;
use fulmar_server::websocket::{self, WsByteStream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Error as WsError;

/// Largest WebSocket message accepted from the broker. It writes frames of at most 64 KiB, so
/// this only has to exceed the largest packet a run can receive (`--size` plus a header).
const WS_MAX_MESSAGE: usize = 16 << 20;
/// tungstenite's socket read size: the broker's frame size, so one read can take a whole frame
/// (the adapter's default of 16 KiB suits the broker's many idle connections, not a load test).
const WS_READ_BUFFER: usize = 64 * 1024;

/// Anything a layered connection can be: TLS, WebSocket, or WebSocket over TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connected byte stream to the broker.
pub enum Stream {
    /// Plain TCP, driven by readiness and non-blocking reads and writes.
    Tcp(TcpStream),
    /// TLS and/or WebSocket: bytes written are buffered in the layer until a flush.
    Layered(Box<dyn Io>),
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(tcp) => f.debug_tuple("Tcp").field(tcp).finish(),
            Self::Layered(_) => f.write_str("Layered"),
        }
    }
}

impl Stream {
    /// The stream as a plain `AsyncRead + AsyncWrite`, for the setup round trips.
    pub fn io(&mut self) -> &mut dyn Io {
        match self {
            Self::Tcp(tcp) => tcp,
            Self::Layered(io) => io.as_mut(),
        }
    }
}

/// The layers every connection of a run goes through.
#[derive(Debug, Clone)]
pub struct Transport {
    /// The TLS configuration (files read once, before any connection); `None`: no TLS.
    pub tls: Option<TlsConfig>,
    /// Upgrade to a WebSocket on [`websocket::PATH`].
    pub ws: bool,
    /// The host as the user gave it: the TLS server name and the WebSocket `Host`.
    pub host: String,
    /// The broker's port, for the WebSocket URL.
    pub port: u16,
}

impl Transport {
    /// `tcp`, `tls`, `ws` or `wss`, for the report.
    pub fn name(&self) -> &'static str {
        match (self.tls.is_some(), self.ws) {
            (false, false) => "tcp",
            (true, false) => "tls",
            (false, true) => "ws",
            (true, true) => "wss",
        }
    }

    /// Runs the TLS and WebSocket handshakes that this transport calls for over `tcp`.
    pub async fn open(&self, tcp: TcpStream) -> anyhow::Result<Stream> {
        match (&self.tls, self.ws) {
            (None, false) => Ok(Stream::Tcp(tcp)),
            (None, true) => Ok(Stream::Layered(Box::new(self.upgrade(tcp).await?))),
            (Some(tls), ws) => {
                let tls = tls.handshake(&self.host, tcp).await.map_err(|failure| {
                    anyhow::anyhow!(
                        "TLS handshake failed: {failure}{}",
                        crate::tls_args::failure_hint(&failure)
                    )
                })?;
                Ok(Stream::Layered(if ws {
                    Box::new(self.upgrade(tls).await?)
                } else {
                    Box::new(tls)
                }))
            }
        }
    }

    /// The WebSocket upgrade; [MQTT-6.0.0-3] the client offers the subprotocol `mqtt`.
    async fn upgrade<S: Io + 'static>(&self, stream: S) -> anyhow::Result<WsByteStream<S>> {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let url = format!("{scheme}://{host}:{}{}", self.port, websocket::PATH);
        let mut request = url
            .as_str()
            .into_client_request()
            .with_context(|| format!("WebSocket URL {url}"))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(websocket::SUBPROTOCOLS[0]),
        );
        let config = websocket::config(WS_MAX_MESSAGE).read_buffer_size(WS_READ_BUFFER);
        match tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await {
            Ok((ws, _response)) => Ok(WsByteStream::new(ws)),
            // What an MQTT-over-TCP listener does with an HTTP request: close without a reply.
            Err(WsError::Protocol(ProtocolError::HandshakeIncomplete)) => Err(anyhow::anyhow!(
                "WebSocket handshake with {url}: the broker closed the connection without an \
                 HTTP response (is this a WebSocket port?)"
            )),
            Err(error) => Err(anyhow::anyhow!("WebSocket handshake with {url}: {error}")),
        }
    }
}
