//! A small MQTT 3.1 / 3.1.1 / 5.0 client built on `fulmar-proto`, the codec the broker uses.
//!
//! # Map
//! - [`state`]: [`ClientState`], the sans-IO protocol state machine. It takes packets and
//!   timestamps in and hands back packets to send, events and the next deadline: CONNECT/CONNACK,
//!   packet identifier allocation, the QoS 1 and QoS 2 flows in both directions, keep-alive,
//!   SUBACK/UNSUBACK matching and resending unacknowledged messages after a reconnect. Tested
//!   with plain values and a fake clock.
//! - `options`: [`ConnectOptions`], what goes into CONNECT, and [`OutgoingMessage`].
//! - `error`: [`ClientError`], the one error type of both layers.
//! - `transport`: opening the byte stream to the broker: TCP, then TLS when configured.
//! - `tls`: [`TlsOptions`] (CA file, client certificate, insecure, version) and the
//!   [`TlsConfig`] built from them once; the `--insecure` verifier (chain checked, name not).
//! - `client` and `driver`: the tokio layer. [`Client::connect`] returns a cloneable [`Client`]
//!   handle (publish, subscribe, disconnect) and an [`EventStream`] of incoming messages and
//!   connection changes; one task per connection drives the state machine and, when asked,
//!   reconnects with exponential backoff.
//!
//! Every queue is bounded: the command channel (the client's send queue, also the queue of
//! messages published while reconnecting), the event channel (a slow reader stalls the socket
//! read, never memory), and the in-flight window (the smaller of our limit and the server's
//! Receive Maximum).
#![warn(missing_docs)]

mod client;
mod driver;
mod error;
mod options;
pub mod state;
mod tls;
mod transport;

pub use client::{Backoff, Client, ClientOptions, Event, EventStream, Pending};
pub use error::{describe_reason, ClientError};
pub use options::{ConnectOptions, OutgoingMessage};
pub use state::ClientState;
pub use tls::{ClientIdentity, TlsConfig, TlsError, TlsFailure, TlsOptions, TlsVersion};
pub use transport::Endpoint;

pub use fulmar_proto as proto;
