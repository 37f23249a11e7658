//! `fulmar bench` reaches the broker over TLS, WebSocket and WebSocket over TLS with the same
//! exact accounting as over TCP, and a certificate it cannot trust stops the run before any load
//! with a message that says why (exit code 1).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

mod bench_child;
mod serve_child;
use bench_child::wait_with_limit;
use serve_child::ServeChild;

/// A test certificate or key (see `testdata/README.md`).
fn testdata(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata")
        .join(name)
        .display()
        .to_string()
}

/// `fulmar serve` with a TLS, a WebSocket and a WSS listener; killed on drop.
struct Broker {
    _serve: ServeChild,
    tls: u16,
    ws: u16,
    wss: u16,
}

impl Broker {
    fn start() -> Self {
        let (cert, key) = (testdata("server.pem"), testdata("server.key"));
        let serve = ServeChild::start(
            &[
                "--no-persistence",
                "--listen-tls",
                "127.0.0.1:0",
                "--listen-ws",
                "127.0.0.1:0",
                "--listen-wss",
                "127.0.0.1:0",
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
            ],
            3,
        );
        Self {
            tls: serve.addr("mqtt over tls").port(),
            ws: serve.addr("mqtt over websocket").port(),
            wss: serve.addr("mqtt over secure websocket").port(),
            _serve: serve,
        }
    }
}

/// Runs `fulmar bench pairs -N 2 -q 1 -n 200 --json --quiet` plus `args`, within a minute.
fn bench(port: u16, args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_fulmar"))
        .args(["bench", "pairs", "-N", "2", "-q", "1", "-n", "200"])
        .args(["--json", "--quiet", "--drain", "0.5"])
        .args(["--port", &port.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fulmar bench");
    wait_with_limit(child, Duration::from_secs(60))
}

/// The run succeeded over `transport` and every one of the 400 messages arrived once.
fn assert_all_delivered(output: &Output, transport: &str) {
    let text = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}\nstderr: {stderr}");
    let json: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {text}\nstderr: {stderr}"));
    assert_eq!(json["transport"], transport, "{json}");
    assert_eq!(json["published"], 400, "{json}");
    assert_eq!(json["delivered"], 400, "{json}");
    assert_eq!(
        (json["lost"].as_u64(), json["duplicated"].as_u64()),
        (Some(0), Some(0)),
        "{json}"
    );
    assert_eq!(json["errors"].as_array().map(Vec::len), Some(0), "{json}");
}

#[test]
fn bench_over_tls_delivers_every_message() {
    let broker = Broker::start();
    let ca = testdata("ca.pem");
    let output = bench(broker.tls, &["--tls", "--cafile", &ca]);
    assert_all_delivered(&output, "tls");
}

#[test]
fn bench_over_websocket_delivers_every_message() {
    let broker = Broker::start();
    let output = bench(broker.ws, &["--ws"]);
    assert_all_delivered(&output, "ws");
}

#[test]
fn bench_over_secure_websocket_delivers_every_message() {
    let broker = Broker::start();
    let ca = testdata("ca.pem");
    let output = bench(broker.wss, &["--ws", "--cafile", &ca]);
    assert_all_delivered(&output, "wss");
}

#[test]
fn bench_refuses_a_broker_certificate_from_another_ca() {
    let broker = Broker::start();
    let other = testdata("other-ca.pem");
    let output = bench(broker.tls, &["--tls", "--cafile", &other]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "no report after a setup failure");
    assert!(
        stderr.contains("certificate verify failed: unknown CA") && stderr.contains(&other),
        "{stderr}"
    );
}

#[test]
fn bench_with_websocket_on_a_tls_port_says_what_failed() {
    let broker = Broker::start();
    let output = bench(broker.tls, &["--ws"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("WebSocket handshake with ws://"),
        "{stderr}"
    );
}
