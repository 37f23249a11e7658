//! Shared by the interop tests: the real `fulmar` binary on a free loopback port.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

/// Bound for one awaited event; a passing run never waits this long.
pub const WAIT: Duration = Duration::from_secs(10);

/// The broker process under test; killed (and its log shown, if the test failed) on drop.
pub struct Broker {
    /// The broker's address (127.0.0.1 and a free port).
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl Broker {
    /// Starts `fulmar serve --no-persistence --listen 127.0.0.1:<free port>` and waits until it
    /// accepts connections.
    pub async fn start() -> Broker {
        // Bind port 0, read the port the kernel chose, release it for the broker.
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("no free loopback port");
        let log = std::env::temp_dir().join(format!(
            "fulmar-interop-{}-{}.log",
            std::process::id(),
            addr.port()
        ));
        let log_file = File::create(&log).expect("cannot create broker log file");
        let child = Command::new(env!("CARGO_BIN_EXE_fulmar"))
            .args(["serve", "--no-persistence", "--listen", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("cannot start the fulmar binary");
        let mut broker = Broker { child, addr, log };
        broker.wait_ready().await;
        broker
    }

    /// Poll a TCP connect until it succeeds; fail fast if the process exits.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "fulmar exited with {status} before listening on {}",
                    self.addr
                );
            }
            if let Ok(Ok(_)) = timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(self.addr),
            )
            .await
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "fulmar not accepting on {} within {WAIT:?}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(20)).await; // readiness poll interval
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("---- fulmar output ({}) ----\n{log}", self.addr);
        }
        let _ = std::fs::remove_file(&self.log);
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
