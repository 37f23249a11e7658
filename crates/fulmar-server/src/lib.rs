//! The IO side of the Fulmar broker: configuration, listeners, connection tasks, and the
//! shared broker state they route through. Protocol rules live in `fulmar-core` and
//! `fulmar-proto`; this crate carries out what they decide.
//!
//! Module map:
//! - [`config`]: TOML configuration and its validation.
//! - [`server`]: binds listeners, runs them, stops cleanly.
//! - [`listener`]: the accept loop.
//! - [`http`]: a WebSocket listener's HTTP side (chat page, upgrade); [`websocket`] turns
//!   the upgraded connection into a byte stream for [`connection`]; [`assets`] is the page.
//! - [`connection`]: one task per client (CONNECT handshake, run loop, teardown);
//!   [`dormant`]: idle connections without a task.
//! - [`broker`]: state shared by all connections; [`routing`] is its publish/subscribe path.
//! - [`registry`]: sessions by client id and takeover between connections;
//!   [`lifecycle`]: parking, expiry, delayed wills, and the end of a session.
//! - [`mailbox`]: a session's bounded outbox plus its wake-up.
//! - [`metrics`]: the counters.
//! - [`persist`]: durability: the store, the commit queue, recovery at startup.

pub mod admission;
pub mod assets;
pub mod broker;
pub mod config;
pub mod connection;
pub mod dormant;
pub mod http;
pub mod lifecycle;
pub mod listener;
pub mod mailbox;
pub mod metrics;
pub mod mqtt_settings;
pub mod persist;
pub mod registry;
pub mod routing;
pub mod security;
pub mod server;
pub mod tls;
pub mod transport;
pub mod websocket;

pub use broker::Broker;
pub use config::{Config, ConfigError};
pub use server::Server;
