//! Opening the byte stream to the broker. TCP today; TLS (and WebSocket) plug in here as other
//! [`Stream`] implementations without touching the driver.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::ClientError;

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

    /// Opens a TCP connection within `timeout`, with Nagle off (MQTT packets are small and
    /// latency matters more than segment count).
    pub(crate) async fn open(&self, timeout: Duration) -> Result<Box<dyn Stream>, ClientError> {
        let addr = self.address();
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        let stream = match tokio::time::timeout(timeout, connect).await {
            Err(_) => return Err(ClientError::ConnectTimeout { addr }),
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(classify(&self.host, addr, e)),
        };
        stream.set_nodelay(true)?;
        Ok(Box::new(stream))
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
