//! The real `fulmar serve` for the Rust integration tests, on ports the kernel chose.
//!
//! Every listener is given port 0 and the test learns the real port from the broker's
//! `listening on <addr> (<kind>...)` log lines. A port picked by the test and released before the
//! broker binds it can be taken meanwhile by any parallel test's outgoing connection; a port the
//! broker already holds cannot.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Bound for the broker to start listening; a passing run never waits this long.
const START_LIMIT: Duration = Duration::from_secs(10);

/// One listener the broker reported: its address and what it speaks ("mqtt over tcp",
/// "mqtt over websocket", ...).
pub struct Listener {
    pub addr: SocketAddr,
    pub kind: String,
}

/// A running `fulmar serve`; killed on drop, and its log printed if the test is failing.
pub struct ServeChild {
    child: Child,
    listeners: Vec<Listener>,
    log: Arc<Mutex<String>>,
}

impl ServeChild {
    /// Starts `fulmar serve` with `args` (whose listeners bind port 0) and returns once it has
    /// reported `listeners` listening addresses. Fails the test if it exits first or takes longer
    /// than [`START_LIMIT`].
    pub fn start(args: &[&str], listeners: usize) -> ServeChild {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fulmar"))
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start the fulmar binary");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (found_tx, found_rx) = mpsc::sync_channel(8); // drained while starting, dropped after
        let log_writer = Arc::clone(&log);
        // Reads to the end so the broker never blocks on a full pipe; the sender drops (and the
        // wait below ends) when the broker exits.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(listener) = parse_listening(&line) {
                    let _ = found_tx.send(listener);
                }
                let mut log = log_writer.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut serve = ServeChild {
            child,
            listeners: Vec::new(),
            log,
        };
        let deadline = Instant::now() + START_LIMIT;
        while serve.listeners.len() < listeners {
            let left = deadline.saturating_duration_since(Instant::now());
            match found_rx.recv_timeout(left) {
                Ok(listener) => serve.listeners.push(listener),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = serve.child.wait().expect("wait");
                    panic!("fulmar serve exited with {status} before listening");
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("fulmar serve not listening within {START_LIMIT:?}")
                }
            }
        }
        serve
    }

    /// The address of the listener whose kind is exactly `kind`, e.g. "mqtt over tls".
    pub fn addr(&self, kind: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|l| l.kind == kind)
            .map(|l| l.addr)
            .unwrap_or_else(|| panic!("fulmar serve reported no {kind} listener"))
    }

    /// The broker's process id (for tests that read its resource use).
    #[allow(dead_code)] // not every test crate that shares this module asks
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// `... INFO listening on 127.0.0.1:38789 (mqtt over tls)` or
/// `... listening on 127.0.0.1:32981 (mqtt over websocket, path /mqtt)`.
fn parse_listening(line: &str) -> Option<Listener> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let (addr, kind) = rest.split_once(" (")?;
    let kind = kind.split([',', ')']).next()?;
    Some(Listener {
        addr: addr.parse().ok()?,
        kind: kind.to_string(),
    })
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!("---- fulmar serve output ----\n{log}");
        }
    }
}
