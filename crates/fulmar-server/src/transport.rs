//! What a TCP listener runs on each accepted socket: plain MQTT, or a TLS handshake first
//! (within the CONNECT timeout), and the authentication context of the listener.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::Either;
use tokio::net::TcpStream;
use tokio::sync::watch;

use tokio_rustls::server::TlsStream;

use crate::broker::Broker;
use crate::connection::serve;
use crate::http::serve_http;
use crate::metrics::bump;
use crate::security::Origin;
use crate::tls::{certificate_identity, ReloadableTls};

/// A listener's transport and authentication settings.
#[derive(Debug, Clone)]
pub struct ListenerContext {
    /// The listener's `allow_anonymous`, if set.
    pub allow_anonymous: Option<bool>,
    /// TLS, when the listener has it.
    pub tls: Option<Arc<ReloadableTls>>,
}

/// Serves one accepted TCP socket of an MQTT listener with `context`.
///
/// Not an `async fn`, so that a plain TCP connection's task is [`serve`]'s future alone
/// (an async fn would keep its own copy of the arguments beside it); a TLS connection's
/// task holds its whole future boxed, handshake included.
pub fn serve_tcp(
    context: Arc<ListenerContext>,
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    connection_id: u64,
    shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send {
    let _ = stream.set_nodelay(true);
    if context.tls.is_none() {
        let halves = stream.into_split();
        let origin = context.origin();
        return Either::Left(serve(origin, broker, halves, peer, connection_id, shutdown));
    }
    Either::Right(Box::pin(async move {
        let Some((stream, origin)) = accept_tls(&context, &broker, stream, peer).await else {
            return;
        };
        let halves = tokio::io::split(stream);
        serve(origin, broker, halves, peer, connection_id, shutdown).await;
    }))
}

/// Serves one accepted TCP socket of a WebSocket listener (WSS when it has TLS).
pub async fn serve_websocket(
    context: Arc<ListenerContext>,
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    connection_id: u64,
    shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    if context.tls.is_none() {
        let origin = context.origin();
        serve_http(origin, broker, stream, peer, connection_id, shutdown).await;
        return;
    }
    let Some((stream, origin)) = Box::pin(accept_tls(&context, &broker, stream, peer)).await else {
        return;
    };
    serve_http(origin, broker, stream, peer, connection_id, shutdown).await;
}

impl ListenerContext {
    /// The authentication context of a plain (non-TLS) connection.
    fn origin(&self) -> Origin {
        Origin {
            allow_anonymous: self.allow_anonymous,
            certificate_username: None,
        }
    }
}

/// The TLS handshake of a listener with TLS, bounded by the CONNECT timeout (it is part of
/// connecting: slowloris). Returns the stream and the origin with the certificate identity.
async fn accept_tls(
    context: &ListenerContext,
    broker: &Broker,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<(TlsStream<TcpStream>, Origin)> {
    let tls = context.tls.as_ref()?;
    let handshake = tls.acceptor().accept(stream);
    let stream = match tokio::time::timeout(broker.config().connect_timeout(), handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            bump(&broker.metrics().tls_handshake_failures);
            tracing::info!(%peer, %error, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            bump(&broker.metrics().connect_timeouts);
            tracing::info!(%peer, "TLS handshake not finished within connect_timeout_secs");
            return None;
        }
    };
    let mut origin = context.origin();
    if let Some(source) = tls.identity_source() {
        let (_, connection) = stream.get_ref();
        origin.certificate_username = connection
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|cert| certificate_identity(cert, source));
    }
    Some((stream, origin))
}
