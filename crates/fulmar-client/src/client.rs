//! The tokio layer's public face: [`Client`] (requests), [`EventStream`] (what happens) and
//! [`Pending`] (the answer to one request).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use fulmar_proto::{
    Disconnect, Properties, Publish, ReasonCode, SubAck, SubscriptionOptions, TopicFilter, UnsubAck,
};
use tokio::sync::{mpsc, oneshot};

use crate::{ClientError, ConnectOptions, Endpoint, OutgoingMessage, TlsConfig};

/// Exponential backoff between reconnection attempts: `initial`, doubling up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first attempt after a loss.
    pub initial: Duration,
    /// The longest delay between attempts.
    pub max: Duration,
}

/// How to reach the broker and how to behave.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The broker's address.
    pub endpoint: Endpoint,
    /// TLS over the TCP connection (`None`: plain TCP). The endpoint's host is the TLS server
    /// name; every reconnection uses the same configuration.
    pub tls: Option<TlsConfig>,
    /// CONNECT contents and protocol limits.
    pub connect: ConnectOptions,
    /// Reconnect after a lost connection (`None`: the client ends with the connection).
    pub reconnect: Option<Backoff>,
    /// Bound on opening the connection and receiving CONNACK.
    pub connect_timeout: Duration,
    /// Capacity of the request queue (publishes made while reconnecting wait here).
    pub queue_capacity: usize,
    /// Capacity of the event queue; when it is full the client stops reading the socket.
    pub event_capacity: usize,
}

impl ClientOptions {
    /// Plain TCP, no reconnection, 10 s connect timeout, queues of 256 requests and 1024 events.
    pub fn new(endpoint: Endpoint, connect: ConnectOptions) -> Self {
        Self {
            endpoint,
            tls: None,
            connect,
            reconnect: None,
            connect_timeout: Duration::from_secs(10),
            queue_capacity: 256,
            event_capacity: 1024,
        }
    }
}

/// What the connection task reports, in order.
#[derive(Debug)]
pub enum Event {
    /// CONNACK Success: first the initial connection, then after every reconnection.
    Connected {
        /// The broker kept our session: subscriptions are still in place.
        session_present: bool,
        /// CONNACK properties (5.0).
        properties: Properties,
    },
    /// An application message.
    Message(Publish),
    /// The connection failed; the client reconnects by itself (only with [`Backoff`]).
    ConnectionLost(ClientError),
    /// The client ended: `None` after our DISCONNECT, otherwise why. The last event.
    Disconnected(Option<ClientError>),
}

/// The stream of [`Event`]s. Read it steadily: while it is full, the client stops reading from
/// the broker (and so cannot see acknowledgements either).
#[derive(Debug)]
pub struct EventStream {
    pub(crate) rx: mpsc::Receiver<Event>,
}

impl EventStream {
    /// The next event; `None` once the client has ended and every event was read.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

/// The answer to one request, resolved by the connection task. `Err(Closed)` if the client ends
/// first.
#[derive(Debug)]
pub struct Pending<T>(oneshot::Receiver<Result<T, ClientError>>);

impl<T> Future for Pending<T> {
    type Output = Result<T, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(ClientError::Closed)))
    }
}

/// A request to the connection task.
#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        message: OutgoingMessage,
        done: Option<oneshot::Sender<Result<ReasonCode, ClientError>>>,
    },
    Subscribe {
        filters: Vec<(TopicFilter, SubscriptionOptions)>,
        properties: Properties,
        done: oneshot::Sender<Result<SubAck, ClientError>>,
    },
    Unsubscribe {
        filters: Vec<TopicFilter>,
        done: oneshot::Sender<Result<UnsubAck, ClientError>>,
    },
    Disconnect {
        packet: Disconnect,
        done: oneshot::Sender<()>,
    },
}

/// A handle for making requests; clones share one connection. When every clone is dropped the
/// client disconnects.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) tx: mpsc::Sender<Command>,
}

impl Client {
    /// Connects (TCP, CONNECT, CONNACK) and starts the connection task. Fails with the reason
    /// if the first connection cannot be made; later losses are reported as events.
    pub async fn connect(options: ClientOptions) -> Result<(Client, EventStream), ClientError> {
        crate::driver::start(options).await
    }

    async fn send(&self, command: Command) -> Result<(), ClientError> {
        self.tx.send(command).await.map_err(|_| ClientError::Closed)
    }

    /// Queues a message (waiting for queue space). The [`Pending`] resolves with the broker's
    /// reason when its flow completes: at once for QoS 0, on PUBACK / PUBCOMP otherwise.
    pub async fn publish(
        &self,
        message: OutgoingMessage,
    ) -> Result<Pending<ReasonCode>, ClientError> {
        let (done, answer) = oneshot::channel();
        self.send(Command::Publish {
            message,
            done: Some(done),
        })
        .await?;
        Ok(Pending(answer))
    }

    /// Queues a message without waiting: `Err(QueueFull)` if the send queue is full.
    pub fn try_publish(&self, message: OutgoingMessage) -> Result<(), ClientError> {
        let command = Command::Publish {
            message,
            done: None,
        };
        self.tx.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ClientError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => ClientError::Closed,
        })
    }

    /// Sends SUBSCRIBE; the [`Pending`] resolves with the SUBACK (one reason per filter).
    pub async fn subscribe(
        &self,
        filters: Vec<(TopicFilter, SubscriptionOptions)>,
        properties: Properties,
    ) -> Result<Pending<SubAck>, ClientError> {
        let (done, answer) = oneshot::channel();
        self.send(Command::Subscribe {
            filters,
            properties,
            done,
        })
        .await?;
        Ok(Pending(answer))
    }

    /// Sends UNSUBSCRIBE; the [`Pending`] resolves with the UNSUBACK.
    pub async fn unsubscribe(
        &self,
        filters: Vec<TopicFilter>,
    ) -> Result<Pending<UnsubAck>, ClientError> {
        let (done, answer) = oneshot::channel();
        self.send(Command::Unsubscribe { filters, done }).await?;
        Ok(Pending(answer))
    }

    /// Sends DISCONNECT after everything queued before it and waits until the connection is
    /// closed. `packet` carries the 5.0 reason and properties (e.g. Session Expiry Interval 0).
    pub async fn disconnect(&self, packet: Disconnect) -> Result<(), ClientError> {
        let (done, closed) = oneshot::channel();
        self.send(Command::Disconnect { packet, done }).await?;
        // A dropped sender also means the task has ended: disconnected either way.
        let _ = closed.await;
        Ok(())
    }
}
