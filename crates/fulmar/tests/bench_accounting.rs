//! `fulmar bench` counts what the broker did to the messages: against a fake broker that drops,
//! duplicates and reorders on purpose, the counts must be exact; against the real broker, the
//! JSON report has its documented shape and no loss.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod bench_child;
mod serve_child;
use bench_child::wait_with_limit;
use serve_child::ServeChild;

use bytes::BytesMut;
use fulmar_proto::{
    Ack, ConnAck, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode, SubAck,
};

const V: ProtocolVersion = ProtocolVersion::V3_1_1;

fn send(stream: &mut TcpStream, packet: &Packet) {
    let mut out = BytesMut::new();
    fulmar_proto::encode(packet, V, &mut out).expect("encode");
    stream.write_all(&out).expect("write");
}

/// What the fake broker does to publisher sequence number `seq` on its way to the subscriber:
/// numbers ending in 3 are dropped, in 5 sent twice, in 7 held back and sent after the next one.
fn mangle(seq: u32, held: &mut Option<Publish>, publish: Publish, out: &mut Vec<Publish>) {
    match seq % 10 {
        3 => {}
        5 => out.extend([publish.clone(), publish]),
        7 => *held = Some(publish),
        _ => {
            out.push(publish);
            out.extend(held.take());
        }
    }
}

/// A broker that speaks just enough MQTT 3.1.1: CONNACK, SUBACK, PUBACK for QoS 1, and
/// forwards every PUBLISH (as QoS 0) to the last subscriber, mangled by [`mangle`].
fn fake_broker() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let subscriber: Arc<Mutex<Option<TcpStream>>> = Arc::default();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let subscriber = subscriber.clone();
            std::thread::spawn(move || serve_fake(stream, &subscriber));
        }
    });
    port
}

fn serve_fake(mut stream: TcpStream, subscriber: &Mutex<Option<TcpStream>>) {
    let mut buf = BytesMut::new();
    let mut held = None;
    let mut chunk = [0u8; 4096];
    loop {
        let packet = match fulmar_proto::decode(&mut buf, V, 1 << 20) {
            Ok(Some(packet)) => packet,
            Ok(None) => match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    continue;
                }
            },
            Err(e) => panic!("fake broker: {e}"),
        };
        match packet {
            Packet::Connect(_) => send(
                &mut stream,
                &Packet::ConnAck(ConnAck {
                    session_present: false,
                    reason: ReasonCode::Success,
                    properties: Properties::default(),
                }),
            ),
            Packet::Subscribe(s) => {
                send(
                    &mut stream,
                    &Packet::SubAck(SubAck {
                        packet_id: s.packet_id,
                        properties: Properties::default(),
                        reasons: vec![ReasonCode::granted(QoS::AtMostOnce); s.filters.len()],
                    }),
                );
                *subscriber.lock().expect("lock") = Some(stream.try_clone().expect("clone"));
            }
            Packet::Publish(mut p) => {
                if let Some(id) = p.packet_id.take() {
                    send(&mut stream, &Packet::PubAck(Ack::new(id)));
                }
                p.qos = QoS::AtMostOnce;
                let seq = u32::from_be_bytes(p.payload[4..8].try_into().expect("seq"));
                let mut out = Vec::new();
                mangle(seq, &mut held, p, &mut out);
                let mut sub = subscriber.lock().expect("lock");
                let sub = sub.as_mut().expect("a subscriber before any publish");
                for p in out {
                    send(sub, &Packet::Publish(p));
                }
            }
            _ => {}
        }
    }
}

/// Runs `fulmar bench ARGS --json --quiet` with a time limit.
fn bench(port: u16, args: &[&str]) -> (Output, serde_json::Value) {
    let child = Command::new(env!("CARGO_BIN_EXE_fulmar"))
        .arg("bench")
        .args(args)
        .args([
            "--json",
            "--quiet",
            "--drain",
            "0.5",
            "--port",
            &port.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fulmar bench");
    let output = wait_with_limit(child, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, json)
}

#[test]
fn bench_counts_drops_duplicates_and_reordering_exactly() {
    let port = fake_broker();
    let (output, json) = bench(port, &["pairs", "-N", "1", "--count", "100"]);
    assert!(
        output.status.success(),
        "QoS 0 loss is reported, not an error: {json}"
    );
    assert_eq!(json["published"], 100);
    // 10 dropped, 10 sent twice, 10 held back one message.
    assert_eq!(json["delivered"], 100, "{json}");
    assert_eq!(json["lost"], 10, "{json}");
    assert_eq!(json["duplicated"], 10, "{json}");
    assert_eq!(json["out_of_order"], 10, "{json}");
    assert_eq!(json["errors"].as_array().map(Vec::len), Some(0));
}

#[test]
fn bench_fails_on_qos1_loss() {
    let port = fake_broker();
    let (output, json) = bench(port, &["pairs", "-N", "1", "--count", "50", "--qos", "1"]);
    assert_eq!(output.status.code(), Some(2), "{json}");
    assert_eq!(json["lost"], 5, "{json}");
    let errors = json["errors"].as_array().expect("errors");
    assert!(errors
        .iter()
        .any(|e| e.as_str().is_some_and(|e| e.contains("lost"))));
}

/// The real broker on a port it chose, killed on drop.
fn real_broker() -> (ServeChild, u16) {
    let serve = ServeChild::start(&["--no-persistence", "--listen", "127.0.0.1:0"], 1);
    let port = serve.addr("mqtt over tcp").port();
    (serve, port)
}

#[test]
fn bench_json_report_has_its_documented_shape() {
    let (broker, port) = real_broker();
    let pid = broker.pid().to_string();
    let args = [
        "pairs",
        "-N",
        "4",
        "--count",
        "2000",
        "--qos",
        "1",
        "--broker-pid",
        &pid,
    ];
    let (output, json) = bench(port, &args);
    assert!(output.status.success(), "{json}");
    for field in [
        "scenario",
        "broker",
        "transport",
        "protocol",
        "qos",
        "payload_bytes",
        "publishers",
        "subscribers",
        "subscriptions",
        "connections",
        "threads",
        "rate_per_publisher",
        "tcp_notsent_lowat",
        "warmup_s",
        "window_s",
        "connect",
        "published",
        "publish_per_sec",
        "expected",
        "delivered",
        "delivered_in_window",
        "msgs_per_sec",
        "bytes_per_sec",
        "latency_us",
        "lost",
        "duplicated",
        "out_of_order",
        "foreign",
        "disconnects",
        "generator",
        "broker_stats",
        "errors",
    ] {
        assert!(json.get(field).is_some(), "missing {field}: {json}");
    }
    assert_eq!(json["scenario"], "pairs");
    assert_eq!(json["tcp_notsent_lowat"], 0, "no unsent limit unless asked");
    assert_eq!(
        (json["publishers"].as_u64(), json["subscribers"].as_u64()),
        (Some(4), Some(4))
    );
    assert_eq!(json["published"], 8000);
    assert_eq!(json["expected"], 8000);
    assert_eq!(json["delivered"], 8000);
    assert_eq!(
        (json["lost"].as_u64(), json["duplicated"].as_u64()),
        (Some(0), Some(0))
    );
    let latency = &json["latency_us"];
    for p in ["p50", "p90", "p99", "p999", "max", "mean"] {
        assert!(
            latency[p].as_f64().is_some_and(|v| v > 0.0),
            "latency {p}: {json}"
        );
    }
    assert_eq!(latency["samples"], 8000);
    assert!(json["generator"]["cpu_pct"].is_number());
    let connect = &json["connect"];
    assert_eq!(connect["clients"], 8, "{json}");
    assert!(connect["generator_cpu_pct"].is_number(), "{json}");
    assert!(connect["generator_saturated"].is_boolean(), "{json}");
    assert!(
        connect["broker_cpu_us_per_client"].is_number(),
        "given --broker-pid: {json}"
    );
    assert_eq!(
        json["broker_stats"]["pid"].as_u64(),
        Some(u64::from(broker.pid()))
    );
    assert!(json["broker_stats"]["rss_end_bytes"]
        .as_u64()
        .is_some_and(|r| r > 0));
}

/// Idle clients sleep between events (no periodic poll): their PINGREQ timer alone must keep
/// them connected past the broker's keep-alive limit (1.5 × 2 s) [MQTT-3.1.2-24].
#[test]
fn idle_bench_clients_keep_their_connections_alive() {
    let (_broker, port) = real_broker();
    let (output, json) = bench(
        port,
        &["conn", "-c", "4", "--keepalive", "2", "--duration", "4"],
    );
    assert!(output.status.success(), "{json}");
    assert_eq!(json["connect"]["clients"], 4, "{json}");
    assert_eq!(json["disconnects"], 0, "{json}");
    assert_eq!(json["errors"].as_array().map(Vec::len), Some(0), "{json}");
}
