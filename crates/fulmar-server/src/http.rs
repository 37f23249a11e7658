//! The HTTP side of a WebSocket listener: one HTTP/1.1 connection per accepted socket, which
//! either serves the embedded chat page or upgrades to MQTT over WebSocket at [`PATH`].
//!
//! ```text
//!  accept ─► hyper http1 (keep-alive, header timeout) ─┬─ GET /, /chat.js, … ─► embedded asset
//!                                                      ├─ GET /mqtt + Upgrade ─► 101 ─► websocket::serve
//!                                                      └─ anything else ─► 404 / 405 / 400 / 426
//! ```
//! The decision is the plain function [`route`], tested without a socket; the connection
//! task carries it out. The upgraded connection runs in the same task as its HTTP prelude,
//! so the server's shutdown waits for it like for a TCP connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::assets::{self, Asset};
use crate::broker::Broker;
use crate::websocket::{self, PATH, SUBPROTOCOLS};

/// What to answer to one request.
#[derive(Debug)]
pub enum Route {
    /// Serve an embedded file.
    Asset(&'static Asset),
    /// Switch to MQTT over WebSocket.
    Upgrade {
        /// `Sec-WebSocket-Accept` (RFC 6455 §4.2.2).
        accept: String,
        /// The subprotocol chosen from the client's offer; `None` when it offered none.
        protocol: Option<&'static str>,
    },
    /// Refuse with this status and a one-line explanation.
    Reject(StatusCode, &'static str),
}

/// Decides what to answer to a request, from its method, path and headers.
pub fn route<B>(request: &Request<B>) -> Route {
    let path = request.uri().path();
    let readable = matches!(*request.method(), Method::GET | Method::HEAD);
    if path != PATH {
        return match assets::find(path) {
            Some(asset) if readable => Route::Asset(asset),
            Some(_) => Route::Reject(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD"),
            None => Route::Reject(StatusCode::NOT_FOUND, "not found"),
        };
    }
    let headers = request.headers();
    // RFC 6455 §4.2.1: a GET with `Upgrade: websocket` and `Connection: Upgrade`.
    if request.method() != Method::GET
        || !has_token(headers, header::UPGRADE, "websocket")
        || !has_token(headers, header::CONNECTION, "upgrade")
    {
        return Route::Reject(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks MQTT over WebSocket",
        );
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION) != Some(&HeaderValue::from_static("13")) {
        return Route::Reject(StatusCode::BAD_REQUEST, "Sec-WebSocket-Version must be 13");
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Route::Reject(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing");
    };
    let offered: Vec<&str> = tokens(headers, header::SEC_WEBSOCKET_PROTOCOL).collect();
    // [MQTT-6.0.0-4] the server selects `mqtt`; `mqttv3.1` for clients that only offer it.
    // A client that offers nothing is let in (simple tools); one that offers only other
    // protocols would fail the handshake on its side anyway, so it gets a clear 400.
    let protocol = SUBPROTOCOLS
        .into_iter()
        .find(|p| offered.iter().any(|o| o.eq_ignore_ascii_case(p)));
    if protocol.is_none() && !offered.is_empty() {
        return Route::Reject(
            StatusCode::BAD_REQUEST,
            "unsupported WebSocket subprotocol (offer mqtt)",
        );
    }
    Route::Upgrade {
        accept: derive_accept_key(key.as_bytes()),
        protocol,
    }
}

/// The comma-separated tokens of every `name` header, trimmed.
fn tokens(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// The response that carries out `route`.
pub fn respond(route: Route) -> Response<Full<Bytes>> {
    let mut response = Response::builder();
    let body = match route {
        Route::Asset(asset) => {
            response = response
                .header(header::CONTENT_TYPE, asset.content_type)
                .header(header::CACHE_CONTROL, "no-cache")
                .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
                .header(
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:",
                );
            Bytes::from_static(asset.body)
        }
        Route::Upgrade { accept, protocol } => {
            response = response
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header(header::CONNECTION, "Upgrade")
                .header(header::UPGRADE, "websocket")
                .header(header::SEC_WEBSOCKET_ACCEPT, accept);
            if let Some(protocol) = protocol {
                response = response.header(header::SEC_WEBSOCKET_PROTOCOL, protocol);
            }
            Bytes::new()
        }
        Route::Reject(status, why) => {
            response = response
                .status(status)
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
            if status == StatusCode::UPGRADE_REQUIRED {
                response = response.header(header::UPGRADE, "websocket");
            }
            Bytes::from(format!("{} {why}\n", status.as_u16()))
        }
    };
    // Every header above is a valid static or derived value, so building cannot fail;
    // should it ever, an empty 500 is the answer rather than a panic.
    response.body(Full::new(body)).unwrap_or_else(|_| {
        let mut fallback = Response::new(Full::new(Bytes::new()));
        *fallback.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        fallback
    })
}

/// Serves one accepted socket of a WebSocket listener until it closes.
pub(crate) async fn serve_http<S>(
    origin: crate::security::Origin,
    broker: Arc<Broker>,
    stream: S,
    peer: SocketAddr,
    connection_id: u64,
    mut shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Set by the service when it answers 101; taken once the HTTP connection hands over.
    let pending: Arc<parking_lot::Mutex<Option<OnUpgrade>>> = Arc::default();
    let slot = Arc::clone(&pending);
    let service = service_fn(move |mut request: Request<Incoming>| {
        let route = route(&request);
        tracing::debug!(%peer, method = %request.method(), path = request.uri().path(), ?route, "http request");
        if matches!(route, Route::Upgrade { .. }) {
            *slot.lock() = Some(hyper::upgrade::on(&mut request));
        }
        std::future::ready(Ok::<_, Infallible>(respond(route)))
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(broker.config().connect_timeout())
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        _ = shutdown.changed() => {
            // Finish the request in progress, if any; the server bounds how long.
            connection.as_mut().graceful_shutdown();
            let _ = connection.as_mut().await;
            return;
        }
    };
    if let Err(error) = served {
        tracing::debug!(%peer, %error, "http connection failed");
        return;
    }
    let upgrade = pending.lock().take();
    let Some(upgrade) = upgrade else { return };
    match upgrade.await {
        Ok(upgraded) => {
            websocket::serve(
                origin,
                broker,
                TokioIo::new(upgraded),
                peer,
                connection_id,
                shutdown,
            )
            .await;
        }
        Err(error) => tracing::debug!(%peer, %error, "websocket upgrade failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::get(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    fn upgrade(protocols: Option<&str>) -> Route {
        let mut headers = vec![
            ("Upgrade", "websocket"),
            ("Connection", "keep-alive, Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        if let Some(p) = protocols {
            headers.push(("Sec-WebSocket-Protocol", p));
        }
        route(&request(PATH, &headers))
    }

    #[test]
    fn accept_key_is_the_rfc_6455_example() {
        // RFC 6455 §1.3: this key gives this accept value.
        let Route::Upgrade { accept, .. } = upgrade(Some("mqtt")) else {
            panic!("not an upgrade")
        };
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn mqtt_is_preferred_then_mqttv31_and_none_is_allowed() {
        let chosen = |offer| match upgrade(offer) {
            Route::Upgrade { protocol, .. } => protocol,
            other => panic!("{other:?}"),
        };
        assert_eq!(chosen(Some("mqtt")), Some("mqtt"));
        assert_eq!(chosen(Some("mqttv3.1")), Some("mqttv3.1"));
        assert_eq!(chosen(Some("mqttv3.1, mqtt")), Some("mqtt"));
        assert_eq!(chosen(Some("chat, MQTT")), Some("mqtt"));
        assert_eq!(chosen(None), None);
    }

    #[test]
    fn only_foreign_subprotocols_are_refused() {
        assert!(matches!(
            upgrade(Some("chat, superchat")),
            Route::Reject(StatusCode::BAD_REQUEST, _)
        ));
    }

    #[test]
    fn plain_get_of_the_endpoint_asks_for_an_upgrade() {
        assert!(matches!(
            route(&request(PATH, &[])),
            Route::Reject(StatusCode::UPGRADE_REQUIRED, _)
        ));
    }

    #[test]
    fn pages_are_served_and_other_paths_are_404() {
        assert!(matches!(route(&request("/", &[])), Route::Asset(a) if a.path == "/"));
        assert!(matches!(route(&request("/chat.js", &[])), Route::Asset(_)));
        assert!(matches!(
            route(&request("/nope", &[])),
            Route::Reject(StatusCode::NOT_FOUND, _)
        ));
        let post = Request::post("/").body(()).unwrap();
        assert!(matches!(
            route(&post),
            Route::Reject(StatusCode::METHOD_NOT_ALLOWED, _)
        ));
    }

    #[test]
    fn upgrade_response_echoes_the_protocol() {
        let response = respond(upgrade(Some("mqttv3.1")));
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(
            response.headers()[header::SEC_WEBSOCKET_PROTOCOL],
            "mqttv3.1"
        );
    }
}
