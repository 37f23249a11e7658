//! Interop with a real third-party Rust client: rumqttc (MQTT 3.1.1) against the `fulmar` binary.
//!
//! Each test starts its own broker (`fulmar serve --listen 127.0.0.1:0`), waits until it reports the port it
//! chose, and kills it on drop. Every wait is bounded by `tokio::time::timeout`.

mod serve_child;
mod support;

use std::time::Duration;
use support::Broker;

use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, Incoming, MqttOptions, Outgoing, Publish,
    QoS, SubscribeReasonCode,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

impl Broker {
    fn options(&self, client_id: &str, clean_session: bool) -> MqttOptions {
        let mut opts = MqttOptions::new(client_id, self.addr.ip().to_string(), self.addr.port());
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(clean_session);
        opts
    }
}

/// A connected rumqttc client whose event loop runs in a task and forwards events to a bounded channel.
/// The task stops at the first connection error, so rumqttc never reconnects behind the test's back.
struct Client {
    client: AsyncClient,
    events: mpsc::Receiver<Event>,
    task: JoinHandle<()>,
}

impl Client {
    /// Connect and return the client with the CONNACK's session-present flag.
    async fn connect(opts: MqttOptions) -> (Client, bool) {
        let (client, eventloop) = AsyncClient::new(opts, 64);
        let (tx, events) = mpsc::channel(4096);
        let task = tokio::spawn(drive(eventloop, tx));
        let mut c = Client {
            client,
            events,
            task,
        };
        let session_present = c
            .next_matching("CONNACK", |e| match e {
                Event::Incoming(Incoming::ConnAck(ack)) => {
                    assert_eq!(ack.code, ConnectReturnCode::Success, "connection refused");
                    Some(ack.session_present)
                }
                _ => None,
            })
            .await;
        (c, session_present)
    }

    /// Wait (bounded) for the first event that `pick` accepts; other events are skipped.
    async fn next_matching<T>(&mut self, what: &str, pick: impl FnMut(&Event) -> Option<T>) -> T {
        support::next_matching(&mut self.events, what, pick).await
    }

    async fn subscribe(&mut self, topic: &str, qos: QoS) {
        self.client
            .subscribe(topic, qos)
            .await
            .expect("subscribe request");
        let codes = self
            .next_matching("SUBACK", |e| match e {
                Event::Incoming(Incoming::SubAck(ack)) => Some(ack.return_codes.clone()),
                _ => None,
            })
            .await;
        assert_eq!(codes, vec![SubscribeReasonCode::Success(qos)]);
    }

    /// Publish and wait until the QoS flow completes (the request is written for QoS 0).
    async fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) {
        self.client
            .publish(topic, qos, retain, payload.to_vec())
            .await
            .expect("publish request");
        self.next_matching("publish completion", |e| match (qos, e) {
            (QoS::AtMostOnce, Event::Outgoing(Outgoing::Publish(_))) => Some(()),
            (QoS::AtLeastOnce, Event::Incoming(Incoming::PubAck(_))) => Some(()),
            (QoS::ExactlyOnce, Event::Incoming(Incoming::PubComp(_))) => Some(()),
            _ => None,
        })
        .await;
    }

    async fn next_publish(&mut self) -> Publish {
        self.next_matching("PUBLISH", |e| match e {
            Event::Incoming(Incoming::Publish(p)) => Some(p.clone()),
            _ => None,
        })
        .await
    }

    /// Clean DISCONNECT: wait until it is written, then stop the event loop (which closes the socket).
    async fn disconnect(mut self) {
        self.client.disconnect().await.expect("disconnect request");
        self.next_matching("DISCONNECT sent", |e| {
            matches!(e, Event::Outgoing(Outgoing::Disconnect)).then_some(())
        })
        .await;
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn drive(mut eventloop: EventLoop, tx: mpsc::Sender<Event>) {
    while let Ok(event) = eventloop.poll().await {
        if tx.send(event).await.is_err() {
            return;
        }
    }
}

async fn round_trip(qos: QoS) {
    let broker = Broker::start().await;
    let topic = format!("interop/qos{}", qos as u8);
    let (mut sub, _) = Client::connect(broker.options("rq-sub", true)).await;
    sub.subscribe(&topic, qos).await;
    let (mut publisher, _) = Client::connect(broker.options("rq-pub", true)).await;
    publisher
        .publish(&topic, b"hello rumqttc", qos, false)
        .await;

    let p = sub.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        (topic.as_str(), &b"hello rumqttc"[..])
    );
    assert_eq!(p.qos, qos);
    assert!(!p.retain);
    publisher.disconnect().await;
    sub.disconnect().await;
}

#[tokio::test]
async fn rumqttc_qos0_round_trip() {
    round_trip(QoS::AtMostOnce).await;
}

#[tokio::test]
async fn rumqttc_qos1_round_trip() {
    round_trip(QoS::AtLeastOnce).await;
}

#[tokio::test]
async fn rumqttc_qos2_round_trip() {
    round_trip(QoS::ExactlyOnce).await;
}

#[tokio::test]
async fn rumqttc_receives_retained_message_on_subscribe() {
    let broker = Broker::start().await;
    let (mut publisher, _) = Client::connect(broker.options("rq-ret-pub", true)).await;
    publisher
        .publish("interop/retained", b"kept", QoS::AtLeastOnce, true)
        .await;
    publisher.disconnect().await;

    let (mut sub, _) = Client::connect(broker.options("rq-ret-sub", true)).await;
    sub.subscribe("interop/#", QoS::AtLeastOnce).await;
    let p = sub.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("interop/retained", &b"kept"[..])
    );
    assert!(
        p.retain,
        "retained message delivered on subscribe must carry the retain flag"
    );
    assert_eq!(p.qos, QoS::AtLeastOnce);
    sub.disconnect().await;
}

#[tokio::test]
async fn rumqttc_persistent_session_receives_messages_queued_while_offline() {
    let broker = Broker::start().await;
    let (mut sub, present) = Client::connect(broker.options("rq-persist", false)).await;
    assert!(!present, "no session existed yet");
    sub.subscribe("interop/persist", QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let (mut publisher, _) = Client::connect(broker.options("rq-persist-pub", true)).await;
    for i in 0..3u8 {
        publisher
            .publish(
                "interop/persist",
                &[b'm', b'0' + i],
                QoS::AtLeastOnce,
                false,
            )
            .await;
    }
    publisher.disconnect().await;

    let (mut back, present) = Client::connect(broker.options("rq-persist", false)).await;
    assert!(present, "resumed session must report session present");
    for i in 0..3u8 {
        let p = back.next_publish().await;
        assert_eq!(
            &p.payload[..],
            &[b'm', b'0' + i][..],
            "offline messages out of order"
        );
        assert_eq!(p.qos, QoS::AtLeastOnce);
    }
    back.disconnect().await;
}
