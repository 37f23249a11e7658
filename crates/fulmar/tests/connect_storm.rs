//! Bursts of connections arriving together must each be accepted and answered. The accept
//! loop asks the kernel whether another connection is queued rather than accepting until one
//! fails (listener.rs); a wrong answer there leaves the last connections of a burst queued,
//! waiting for a wake-up that only a later connection would bring.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};

mod serve_child;
use serve_child::ServeChild;

/// Connections opened at once per burst (well under the test process's 1,024 descriptors).
const BURST: usize = 300;
/// Bound for a whole burst to be answered; a passing run takes a fraction of a second.
const BURST_LIMIT: Duration = Duration::from_secs(20);

/// An MQTT 3.1.1 CONNECT with a clean session, keep-alive 60 s and `client_id`.
fn connect_packet(client_id: &str) -> Vec<u8> {
    let id = client_id.as_bytes();
    let mut variable = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    variable.extend_from_slice(&u16::try_from(id.len()).unwrap().to_be_bytes());
    variable.extend_from_slice(id);
    let mut packet = vec![0x10, u8::try_from(variable.len()).unwrap()];
    packet.extend_from_slice(&variable);
    packet
}

/// Connects, sends CONNECT and returns the open stream once CONNACK accepted it.
async fn connect(addr: SocketAddr, client_id: String) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("TCP connect");
    stream
        .write_all(&connect_packet(&client_id))
        .await
        .expect("send CONNECT");
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).await.expect("read CONNACK");
    assert_eq!(
        connack,
        [0x20, 0x02, 0x00, 0x00],
        "{client_id}: CONNACK accepted"
    );
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_of_a_burst_is_answered_and_so_is_one_after_a_lull() {
    let serve = ServeChild::start(&["--no-persistence", "--listen", "127.0.0.1:0"], 1);
    let addr = serve.addr("mqtt over tcp");
    for burst in 0..3 {
        let deadline = Instant::now() + BURST_LIMIT;
        let clients: Vec<_> = (0..BURST)
            .map(|i| tokio::spawn(connect(addr, format!("storm-{burst}-{i}"))))
            .collect();
        let mut open = Vec::with_capacity(BURST);
        for (i, client) in clients.into_iter().enumerate() {
            let stream = timeout_at(deadline, client)
                .await
                .unwrap_or_else(|_| panic!("burst {burst}: client {i} not answered in time"))
                .expect("client task");
            open.push(stream);
        }
        assert_eq!(open.len(), BURST);
    }
    // Alone, after the bursts: the accept loop must be waiting for the next connection.
    let lone = timeout(
        Duration::from_secs(5),
        connect(addr, "after-the-lull".into()),
    )
    .await;
    assert!(
        lone.is_ok(),
        "a lone connection after the bursts was not answered"
    );
}
