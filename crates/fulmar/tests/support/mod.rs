//! Shared by the interop tests: the real `fulmar` binary on a loopback port it chose.

use std::net::SocketAddr;
use std::time::Duration;

use crate::serve_child::ServeChild;

use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

/// Bound for one awaited event; a passing run never waits this long.
pub const WAIT: Duration = Duration::from_secs(10);

/// The broker process under test; killed (and its log shown, if the test failed) on drop.
pub struct Broker {
    /// The broker's address (127.0.0.1 and the port it chose).
    pub addr: SocketAddr,
    _serve: ServeChild,
}

impl Broker {
    /// Starts `fulmar serve --no-persistence --listen 127.0.0.1:0` and waits until it listens.
    pub async fn start() -> Broker {
        let serve = tokio::task::spawn_blocking(|| {
            ServeChild::start(&["--no-persistence", "--listen", "127.0.0.1:0"], 1)
        })
        .await
        .expect("starting fulmar serve");
        Broker {
            addr: serve.addr("mqtt over tcp"),
            _serve: serve,
        }
    }
}

/// Waits (bounded by [`WAIT`]) for the first event from `events` that `pick` accepts; other
/// events are skipped. Panics, naming `what`, when the channel closes or time runs out.
pub async fn next_matching<E, T>(
    events: &mut mpsc::Receiver<E>,
    what: &str,
    mut pick: impl FnMut(&E) -> Option<T>,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, events.recv()).await {
            Ok(Some(event)) => {
                if let Some(found) = pick(&event) {
                    return found;
                }
            }
            Ok(None) => panic!("connection ended while waiting for {what}"),
            Err(_) => panic!("no {what} within {WAIT:?}"),
        }
    }
}
