//! Shared broker state: the subscription tree, the retained index, the session registry
//! and the counters. Connections hold an `Arc<Broker>`; nothing here awaits while a lock
//! is held.

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fulmar_core::{Message, SessionKey, SessionLimits};
use fulmar_proto::SubscriptionOptions;
use fulmar_router::{RetainedIndex, TopicTree};
use parking_lot::RwLock;

use crate::admission::Admission;
use crate::config::Config;
use crate::dormant::DormantSet;
use crate::mailbox::Mailbox;
use crate::metrics::Metrics;
use crate::persist::Persistence;
use crate::registry::Registry;
use crate::security::Security;

/// A subscription as the router stores it: where to deliver, and how.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// The subscribing session's outbox.
    pub mailbox: Arc<Mailbox>,
    /// Options from SUBSCRIBE (granted QoS, No Local, Retain As Published, …).
    pub options: SubscriptionOptions,
    /// MQTT 5 subscription identifier, if the client set one.
    pub subscription_id: Option<u32>,
    /// The whole `$share/{group}/{filter}` string for a shared subscription.
    pub shared_filter: Option<Arc<str>>,
    /// Who subscribed (with the mailbox's client id), for the ACL's read check of each
    /// delivered topic.
    pub username: Username,
}

/// The authenticated username of a connection, shared with the subscriptions it makes (for
/// the ACL's read checks); `None` for an anonymous client, which then allocates nothing.
/// Thin (8 bytes): every subscription holds one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Username(Option<Arc<String>>);

impl Username {
    /// The username a client authenticated with, if any.
    pub fn new(username: Option<String>) -> Self {
        Username(username.map(Arc::new))
    }

    /// The username; `None` for an anonymous client.
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref().map(String::as_str)
    }

    /// The identity the ACL checks take: this username with the client's id.
    pub fn with_client_id<'a>(&'a self, client_id: &'a str) -> fulmar_auth::ClientIdentity<'a> {
        fulmar_auth::ClientIdentity {
            username: self.as_deref(),
            client_id,
        }
    }
}

/// The state all connections share.
pub struct Broker {
    /// Swapped whole on SIGHUP; readers take snapshots (`Arc`s) and never hold the lock.
    settings: RwLock<Settings>,
    pub(crate) subscriptions: RwLock<TopicTree<SessionKey, Subscriber>>,
    pub(crate) retained: RwLock<RetainedIndex<Arc<Message>>>,
    pub(crate) registry: Registry,
    pub(crate) admission: Arc<Admission>,
    /// Idle connections without a task; enabled by the server that runs the broker.
    pub(crate) dormant: Arc<DormantSet>,
    pub(crate) security: Security,
    metrics: Metrics,
    /// The durable store; `None` with persistence disabled.
    pub(crate) persistence: Option<Persistence>,
    next_session_key: AtomicU64,
    client_id_nonce: AtomicU64,
}

/// A configuration and what every connection derives from it, built once per configuration
/// rather than once per connection, and swapped together.
struct Settings {
    config: Arc<Config>,
    /// `config.session_limits()`, shared by every session started under `config`.
    session_limits: Arc<SessionLimits>,
}

impl Settings {
    fn new(config: Config) -> Self {
        Settings {
            session_limits: Arc::new(config.session_limits()),
            config: Arc::new(config),
        }
    }
}

impl Broker {
    /// A broker with no sessions, subscriptions or retained messages, and no authentication.
    pub fn new(config: Config) -> Self {
        Broker::with_security(config, Security::open())
    }

    /// A broker whose authentication and ACL files are already loaded.
    pub fn with_security(config: Config, security: Security) -> Self {
        Broker::with_parts(config, security, None)
    }

    /// A broker with its security loaded and its store (if persistence is on) opened.
    pub fn with_parts(
        config: Config,
        security: Security,
        persistence: Option<Persistence>,
    ) -> Self {
        Broker {
            persistence,
            security,
            settings: RwLock::new(Settings::new(config)),
            subscriptions: RwLock::new(TopicTree::new()),
            retained: RwLock::new(RetainedIndex::new()),
            registry: Registry::default(),
            admission: Arc::new(Admission::default()),
            dormant: Arc::default(),
            metrics: Metrics::default(),
            next_session_key: AtomicU64::new(1),
            client_id_nonce: AtomicU64::new(rand::random::<u32>().into()),
        }
    }

    /// The configuration the broker runs with (a snapshot: a reload does not change it).
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.settings.read().config)
    }

    /// The session limits of the configuration the broker runs with, for a session that
    /// starts or resumes now (a reload applies to the sessions that start after it).
    pub fn session_limits(&self) -> Arc<SessionLimits> {
        Arc::clone(&self.settings.read().session_limits)
    }

    /// Applies a reloaded configuration: limits and `[mqtt]` settings take effect for new
    /// connections and sessions. Listeners and auth file paths need a restart; a change to
    /// them is reported and otherwise ignored.
    pub fn replace_config(&self, mut fresh: Config) -> Vec<String> {
        let mut ignored = Vec::new();
        let current = self.config();
        if fresh.listeners != current.listeners
            || fresh.websocket_listeners != current.websocket_listeners
        {
            ignored.push("listener changes need a restart; listeners kept as they are".to_string());
            fresh.listeners = current.listeners.clone();
            fresh.websocket_listeners = current.websocket_listeners.clone();
        }
        if fresh.auth != current.auth {
            ignored.push(
                "[auth] path changes need a restart; the files themselves were reloaded"
                    .to_string(),
            );
            fresh.auth = current.auth.clone();
        }
        if fresh.persistence != current.persistence {
            ignored.push("[persistence] changes need a restart; kept as they are".to_string());
            fresh.persistence = current.persistence.clone();
        }
        *self.settings.write() = Settings::new(fresh);
        ignored
    }

    /// Authentication and authorisation.
    pub fn security(&self) -> &Security {
        &self.security
    }

    /// The durable store, when persistence is on.
    pub fn persistence(&self) -> Option<&Persistence> {
        self.persistence.as_ref()
    }

    /// The broker's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A key for a new session incarnation, never handed out before.
    pub fn new_session_key(&self) -> SessionKey {
        let key = self.next_session_key.fetch_add(1, Ordering::Relaxed);
        // The counter starts at 1 and a u64 does not wrap in the broker's lifetime.
        SessionKey(NonZeroU64::new(key).expect("session keys start at 1"))
    }

    /// A nonce for a server-assigned client identifier.
    pub fn client_id_nonce(&self) -> u64 {
        self.client_id_nonce.fetch_add(1, Ordering::Relaxed)
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }

    /// Number of (filter, session) subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.read().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `SessionLimits` per configuration, not per session; a reload gives the sessions
    /// that start after it the new limits and leaves the running ones theirs.
    #[test]
    fn sessions_share_their_configurations_limits_until_a_reload() {
        let broker = Broker::new(Config::default());
        let before = broker.session_limits();
        assert!(Arc::ptr_eq(&before, &broker.session_limits()));
        let mut fresh = Config::default();
        fresh.limits.max_inflight_messages = 7;
        assert!(broker.replace_config(fresh).is_empty());
        let after = broker.session_limits();
        assert_eq!(after.max_inflight, 7);
        assert_eq!(
            before.max_inflight, 32,
            "a running session keeps its limits"
        );
        assert_eq!(*after, broker.config().session_limits());
    }
}
