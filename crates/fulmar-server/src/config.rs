//! The broker's configuration: TOML file, defaults, and validation.
//!
//! Every key is documented in docs/configuration.md. Unknown keys are errors (a typo must
//! never silently fall back to a default), and every error names the key or value at fault.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use fulmar_core::{QueueLimits, SessionLimits};
use serde::Deserialize;

pub use crate::mqtt_settings::MqttSettings;
pub use crate::persist::settings::{FsyncSetting, PersistenceSettings};
pub use crate::security::AuthSettings;
pub use crate::tls::TlsSettings;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key or a value of the wrong type (the message names it).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, with line and key.
        message: String,
    },
    /// A value of the right type but outside its allowed range.
    #[error("invalid value {value} for `{key}`: {reason}")]
    Value {
        /// Dotted key, e.g. `limits.max_inflight_messages`.
        key: &'static str,
        /// The rejected value as written.
        value: String,
        /// What is allowed.
        reason: &'static str,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// TCP listeners. Default: one on 127.0.0.1:1883.
    #[serde(default = "default_listeners")]
    pub listeners: Vec<ListenerConfig>,
    /// MQTT-over-WebSocket listeners (path `/mqtt`; they also serve the chat page at `/`).
    /// Default: none (`fulmar serve` without a config file adds one on 127.0.0.1:8083).
    #[serde(default)]
    pub websocket_listeners: Vec<ListenerConfig>,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// Protocol features offered (and advertised to MQTT 5 clients).
    #[serde(default)]
    pub mqtt: MqttSettings,
    /// Authentication and authorisation files.
    #[serde(default)]
    pub auth: AuthSettings,
    /// Durable storage (sessions, queues, retained messages, delayed wills).
    #[serde(default)]
    pub persistence: PersistenceSettings,
}

/// One listener (TCP, or WebSocket in `websocket_listeners`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address and port to listen on, e.g. `127.0.0.1:1883` or `[::]:1883`.
    pub bind: SocketAddr,
    /// TLS on this listener (MQTT over TLS, or WSS for a WebSocket listener).
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// Anonymous clients allowed on this listener; overrides `auth.allow_anonymous`.
    #[serde(default)]
    pub allow_anonymous: Option<bool>,
}

impl ListenerConfig {
    /// A plain listener on `bind` with the `[auth]` defaults.
    pub fn new(bind: SocketAddr) -> Self {
        ListenerConfig {
            bind,
            tls: None,
            allow_anonymous: None,
        }
    }
}

/// Resource limits; each is counted when hit (see docs/limits.md).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Seconds a new connection has to send CONNECT before it is closed.
    pub connect_timeout_secs: u64,
    /// Largest packet accepted from a client, in bytes (fixed header included).
    pub max_packet_size: u32,
    /// Outbound QoS 1/2 messages sent to one client and not yet acknowledged.
    pub max_inflight_messages: u16,
    /// Inbound QoS 2 messages of one client awaiting PUBREL.
    pub max_awaiting_pubrel: u16,
    /// Messages queued for one session (waiting for the inflight window, or offline).
    pub max_queued_messages: usize,
    /// Bytes queued for one session.
    pub max_queued_bytes: usize,
    /// Longest client identifier accepted, in bytes.
    pub max_client_id_len: usize,
    /// Bytes of encoded output buffered for one connection before it stops taking more from
    /// its queue (the rest waits in the queue, within its limits).
    pub max_write_buffer_bytes: usize,
    /// Open client connections in total (0: unlimited).
    pub max_connections: usize,
    /// Open client connections from one source IP address (0: unlimited).
    pub max_connections_per_ip: usize,
    /// New connections per second from one source IP address (0: unlimited).
    pub connection_rate_per_ip: u32,
    /// Longest topic name or filter, bytes.
    pub max_topic_len: usize,
    /// Most levels (`/`-separated parts) in a topic name or filter.
    pub max_topic_levels: usize,
    /// Subscriptions one session may hold.
    pub max_subscriptions_per_client: usize,
    /// PUBLISH packets per second one client may send before its reads are paused (0: unlimited).
    pub publish_rate_messages: u32,
    /// PUBLISH payload bytes per second one client may send before its reads are paused (0: unlimited).
    pub publish_rate_bytes: u64,
    /// Retained messages the broker stores; a new retained topic beyond it is not stored.
    pub max_retained_messages: usize,
    /// Longest a QoS 1/2 publisher's acknowledgements are held back while a subscriber's
    /// queue is congested, milliseconds (0: never hold; drop at the queue limit instead).
    pub max_publisher_hold_ms: u64,
    /// Milliseconds a plain-TCP connection stays idle before it goes dormant: it keeps no
    /// task, timer or buffer until its socket, its mailbox or its keep-alive deadline
    /// wakes it (0: never).
    pub dormant_after_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect_timeout_secs: 10,
            max_packet_size: 1024 * 1024,
            max_inflight_messages: 32,
            max_awaiting_pubrel: 1024,
            max_queued_messages: 1000,
            max_queued_bytes: 16 * 1024 * 1024,
            max_client_id_len: 256,
            max_write_buffer_bytes: 256 * 1024,
            max_connections: 100_000,
            max_connections_per_ip: 0,
            connection_rate_per_ip: 0,
            max_topic_len: 65_535,
            max_topic_levels: 128,
            max_subscriptions_per_client: 1000,
            publish_rate_messages: 0,
            publish_rate_bytes: 0,
            max_retained_messages: 1_000_000,
            max_publisher_hold_ms: 2000,
            dormant_after_ms: 1000,
        }
    }
}

fn default_listeners() -> Vec<ListenerConfig> {
    vec![ListenerConfig::new(SocketAddr::from((
        [127, 0, 0, 1],
        1883,
    )))]
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listeners: default_listeners(),
            websocket_listeners: Vec::new(),
            limits: Limits::default(),
            mqtt: MqttSettings::default(),
            auth: AuthSettings::default(),
            persistence: PersistenceSettings::default(),
        }
    }
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: display.clone(),
            source,
        })?;
        Config::parse(&text, &display)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Range checks that the types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        check(
            "limits.connect_timeout_secs",
            l.connect_timeout_secs,
            1..=3600,
        )?;
        check(
            "limits.max_packet_size",
            u64::from(l.max_packet_size),
            64..=268_435_460,
        )?;
        check(
            "limits.max_inflight_messages",
            u64::from(l.max_inflight_messages),
            1..=65535,
        )?;
        check(
            "limits.max_awaiting_pubrel",
            u64::from(l.max_awaiting_pubrel),
            1..=65535,
        )?;
        check(
            "limits.max_queued_messages",
            l.max_queued_messages as u64,
            1..=100_000_000,
        )?;
        check(
            "limits.max_queued_bytes",
            l.max_queued_bytes as u64,
            1024..=u64::MAX,
        )?;
        check(
            "limits.max_client_id_len",
            l.max_client_id_len as u64,
            23..=65535,
        )?;
        check(
            "limits.max_write_buffer_bytes",
            l.max_write_buffer_bytes as u64,
            4096..=u64::MAX,
        )?;
        // A day at most: longer is never in practice, and the deadline must stay far from
        // Instant's range.
        check(
            "limits.dormant_after_ms",
            l.dormant_after_ms,
            0..=86_400_000,
        )?;
        let m = &self.mqtt;
        check("mqtt.max_qos", u64::from(m.max_qos), 0..=2)?;
        check("limits.max_topic_len", l.max_topic_len as u64, 1..=65_535)?;
        check(
            "limits.max_topic_levels",
            l.max_topic_levels as u64,
            1..=65_535,
        )?;
        let max_subs = l.max_subscriptions_per_client as u64;
        check(
            "limits.max_subscriptions_per_client",
            max_subs,
            1..=u64::MAX,
        )?;
        Ok(())
    }

    /// The session limits this configuration implies.
    pub fn session_limits(&self) -> SessionLimits {
        SessionLimits {
            max_inflight: self.limits.max_inflight_messages,
            max_inbound_qos2: self.limits.max_awaiting_pubrel,
            topic_alias_maximum: self.mqtt.topic_alias_maximum,
            max_qos: self.mqtt.max_qos(),
            retain_available: self.mqtt.retain_available,
            validate_utf8_payload: self.mqtt.validate_utf8_payloads,
            outbound_topic_aliases: self.mqtt.outbound_topic_aliases,
            // Both are validated to 1..=65,535.
            max_topic_len: u16::try_from(self.limits.max_topic_len).unwrap_or(u16::MAX),
            max_topic_levels: u16::try_from(self.limits.max_topic_levels).unwrap_or(u16::MAX),
            publish_rate_messages: self.limits.publish_rate_messages,
            publish_rate_bytes: self.limits.publish_rate_bytes,
            max_publisher_hold_ms: u32::try_from(self.limits.max_publisher_hold_ms)
                .unwrap_or(u32::MAX),
        }
    }

    /// The per-session queue limits.
    pub fn queue_limits(&self) -> QueueLimits {
        QueueLimits {
            max_messages: self.limits.max_queued_messages,
            max_bytes: self.limits.max_queued_bytes,
        }
    }

    /// The CONNECT timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.connect_timeout_secs)
    }
}

fn check(
    key: &'static str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(ConfigError::Value {
        key,
        value: value.to_string(),
        reason: if value < *range.start() {
            "too small"
        } else {
            "too large"
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(Config::parse("", "t").unwrap(), Config::default());
    }

    #[test]
    fn listeners_and_limits_are_read() {
        let config = Config::parse(
            "[[listeners]]\nbind = \"127.0.0.1:2000\"\n[limits]\nmax_queued_messages = 5\n",
            "t",
        )
        .unwrap();
        assert_eq!(config.listeners[0].bind.port(), 2000);
        assert_eq!(config.limits.max_queued_messages, 5);
        assert_eq!(config.limits.max_inflight_messages, 32);
    }

    #[test]
    fn websocket_listeners_are_read_and_default_to_none() {
        assert!(Config::default().websocket_listeners.is_empty());
        let config =
            Config::parse("[[websocket_listeners]]\nbind = \"127.0.0.1:8083\"\n", "t").unwrap();
        assert_eq!(config.websocket_listeners[0].bind.port(), 8083);
        assert_eq!(config.listeners, Config::default().listeners);
    }

    #[test]
    fn persistence_is_on_by_default_and_read() {
        let config = Config::default();
        assert!(config.persistence.enabled);
        assert_eq!(config.persistence.fsync, FsyncSetting::Always);
        let config = Config::parse(
            "[persistence]\nenabled = false\ndata_dir = \"/tmp/x\"\nfsync = \"interval\"\n",
            "t",
        )
        .unwrap();
        assert!(!config.persistence.enabled);
        assert_eq!(config.persistence.fsync, FsyncSetting::Interval);
        assert!(Config::parse("[persistence]\nfsync = \"sometimes\"\n", "t").is_err());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[limits]\nmax_bogus = 1\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_bogus"), "{err}");
    }

    #[test]
    fn bad_address_is_named() {
        let err = Config::parse("[[listeners]]\nbind = \"nonsense:99\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nonsense:99") || err.contains("bind"), "{err}");
    }

    #[test]
    fn out_of_range_value_names_key_and_value() {
        let err = Config::parse("[limits]\nmax_inflight_messages = 0\n", "t")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("limits.max_inflight_messages") && err.contains('0'),
            "{err}"
        );
    }
}
