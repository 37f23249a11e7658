//! Opening the byte stream to the broker: TCP, then the TLS handshake when a [`TlsConfig`] is
//! given. Other transports (WebSocket) plug in here as other [`Stream`] implementations without
//! touching the driver.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::{ClientError, TlsConfig};

/// A connected byte stream to a broker.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// `host:port`, with brackets around an IPv6 address.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Opens a TCP connection with Nagle off (MQTT packets are small and latency matters more
    /// than segment count) and, with `tls`, runs the handshake with the host as server name;
    /// both within `timeout`.
    pub(crate) async fn open(
        &self,
        tls: Option<&TlsConfig>,
        timeout: Duration,
    ) -> Result<Box<dyn Stream>, ClientError> {
        let addr = self.address();
        let deadline = tokio::time::Instant::now() + timeout;
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        let stream = match tokio::time::timeout_at(deadline, connect).await {
            Err(_) => return Err(ClientError::ConnectTimeout { addr }),
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(classify(&self.host, addr, e)),
        };
        stream.set_nodelay(true)?;
        let Some(tls) = tls else {
            return Ok(Box::new(stream));
        };
        match tokio::time::timeout_at(deadline, tls.handshake(&self.host, stream)).await {
            Err(_) => Err(ClientError::ConnectTimeout { addr }),
            Ok(Ok(stream)) => Ok(Box::new(stream)),
            Ok(Err(failure)) => Err(ClientError::TlsHandshake { addr, failure }),
        }
    }
}

fn classify(host: &str, addr: String, error: io::Error) -> ClientError {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => ClientError::ConnectionRefused { addr },
        // tokio reports a failed name lookup as an `Other`/`Uncategorized` error whose message
        // names the resolver ("failed to lookup address information").
        _ if error.to_string().contains("lookup") => ClientError::Resolve {
            host: host.to_owned(),
            source: error,
        },
        _ => ClientError::Connect {
            addr,
            source: error,
        },
    }
}
