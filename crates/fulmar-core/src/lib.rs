//! Sans-IO broker core of Fulmar: everything that decides *what* happens to one client's
//! traffic, with no sockets, no async runtime and no clock of its own (time comes in as
//! `Instant` arguments).
//!
//! Module map:
//! - [`message`]: the routed application message ([`Message`]) and one recipient's copy of it
//!   ([`Delivery`]); payloads are shared `Bytes`, never copied per subscriber.
//! - [`spare_messages`]: finished messages' allocations, kept per thread for the next ones.
//! - [`outbox`]: the bounded per-session queue that fan-out pushes into ([`Outbox`]).
//! - [`connect`]: the CONNECT handshake rules that need no shared state (client id, versions).
//! - [`session`]: one client's protocol state machine ([`Session`]): keep-alive, packet ids,
//!   QoS 1/2 flows in both directions, redelivery on resume.
//! - [`error`]: [`ProtocolError`], every way a client can violate the protocol, mapped to the
//!   reason code the spec demands in one place.

pub mod connect;
pub mod error;
pub mod message;
pub mod outbox;
pub mod session;
pub mod spare_messages;

pub use connect::{assign_client_id, validate_connect, ConnectDecision};
pub use error::ProtocolError;
pub use message::{Delivery, Message, SessionKey, StoredRef};
pub use outbox::{Outbox, PushOutcome, QueueLimits, SpilledRef};
pub use session::{
    ClientCapabilities, Event, InflightEntry, Outbound, OutboundState, Persist, RestoredState,
    Session, SessionLimits,
};
