//! What `fulmar pub`, `fulmar sub` and `fulmar chat` share: the broker options (mosquitto's
//! spellings), `--url`, the exit codes and how errors are reported.
//!
//! # Exit codes
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | usage or configuration error found by the command: invalid topic, bad `--url`, unreadable or invalid TLS files (`--cafile`, `--cert`, `--key`), unreadable `-f` file, missing `-i` with `-c` |
//! | 2 | command-line syntax error from the argument parser (unknown option, missing value) |
//! | 3 | network: connection refused, unknown host, connect timeout, connection lost, TLS handshake failure (certificate verify failed, refused client certificate) |
//! | 4 | refused by the broker: CONNACK failure (not authorised, bad user name or password, client id rejected), every subscription denied, a message rejected (5.0) |
//! | 5 | timeout: `-W` expired |
//! | 6 | protocol error: the broker sent something invalid |

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use fulmar_client::proto::{ProtocolVersion, QoS};
use fulmar_client::{ClientError, ClientOptions, ConnectOptions, Endpoint, TlsConfig};

use crate::tls_args::{failure_hint, TlsArgs};

/// Exit code: usage or configuration error.
pub const EXIT_USAGE: u8 = 1;
/// Exit code: network failure (connection refused, unreachable, lost).
pub const EXIT_NETWORK: u8 = 3;
/// Exit code: the broker refused (CONNACK, SUBACK, PUBACK failure).
pub const EXIT_REFUSED: u8 = 4;
/// Exit code: `-W` expired.
pub const EXIT_TIMEOUT: u8 = 5;
/// Exit code: the broker broke the protocol.
pub const EXIT_PROTOCOL: u8 = 6;

/// How to reach and log in to the broker (mosquitto_pub / mosquitto_sub spellings).
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// Broker host [default: localhost].
    #[arg(short = 'h', long = "host", value_name = "HOST")]
    pub host: Option<String>,
    /// Broker port [default: 1883, 8883 with TLS].
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    pub port: Option<u16>,
    /// Client identifier [default: fulmar-<command>-<random>].
    #[arg(short = 'i', long = "id", value_name = "ID")]
    pub id: Option<String>,
    /// User name.
    #[arg(short = 'u', long = "username", value_name = "USER")]
    pub username: Option<String>,
    /// Password.
    #[arg(short = 'P', long = "pw", alias = "password", value_name = "PASSWORD")]
    pub password: Option<String>,
    /// MQTT version: 3 (3.1, MQIsdp), 4 (3.1.1), 5 (5.0); also 31, 311, mqttv31, mqttv311, mqttv5.
    #[arg(short = 'V', long = "protocol", visible_alias = "protocol-version", value_name = "VERSION", value_parser = parse_version)]
    pub protocol: Option<ProtocolVersion>,
    /// Keep alive in seconds (0 disables it).
    #[arg(
        short = 'k',
        long = "keepalive",
        value_name = "SECS",
        default_value_t = 60
    )]
    pub keepalive: u16,
    /// mqtt[s]://[user[:password]@]host[:port][/topic] (mqtts: TLS); explicit -h, -p, -u, -P, -t
    /// win.
    #[arg(short = 'L', long = "url", value_name = "URL")]
    pub url: Option<String>,
    /// TLS: `--cafile`, `--cert`/`--key`, `--insecure`, `--tls-version`.
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Session options of `pub` and `sub`.
#[derive(Debug, Clone, Args)]
pub struct SessionArgs {
    /// Keep the session: mosquitto's -c (Clean Session 0; with 5.0 Clean Start 0 and a session
    /// expiry of -x seconds, default never). Needs -i.
    #[arg(
        short = 'c',
        long = "disable-clean-session",
        visible_alias = "no-clean"
    )]
    pub persistent: bool,
    /// Start with a clean session (the default; the opposite of -c).
    #[arg(long = "clean", conflicts_with = "persistent")]
    pub clean: bool,
    /// 5.0 Session Expiry Interval in seconds, with -c.
    #[arg(short = 'x', long = "session-expiry-interval", value_name = "SECS")]
    pub session_expiry: Option<u32>,
}

/// A command's failure, with its exit code.
#[derive(Debug)]
pub enum CliError {
    /// Usage or configuration error (exit 1).
    Usage(String),
    /// A client error (exit code by kind).
    Client(ClientError),
    /// The broker said no (exit 4).
    Refused(String),
    /// `-W` expired (exit 5).
    Timeout(String),
}

impl From<ClientError> for CliError {
    fn from(error: ClientError) -> Self {
        Self::Client(error)
    }
}

impl CliError {
    /// The documented exit code (see the module docs).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => EXIT_USAGE,
            Self::Refused(_) => EXIT_REFUSED,
            Self::Timeout(_) => EXIT_TIMEOUT,
            Self::Client(error) => match error {
                ClientError::Refused(_) => EXIT_REFUSED,
                ClientError::Decode(_) | ClientError::Protocol(_) => EXIT_PROTOCOL,
                ClientError::Encode(_) => EXIT_USAGE,
                _ => EXIT_NETWORK,
            },
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Usage(text) | Self::Refused(text) | Self::Timeout(text) => f.write_str(text),
            Self::Client(error) => write!(f, "{error}{}", tls_hint(error)),
        }
    }
}

/// Prints the error (if any) as `fulmar COMMAND: error: ...` and gives the exit code.
pub fn report(command: &str, result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fulmar {command}: error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// A single-threaded runtime for a client command.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the async runtime: {e}")))
}

/// Parses `-V`: mosquitto's spellings and plain levels.
pub fn parse_version(text: &str) -> Result<ProtocolVersion, String> {
    match text.to_ascii_lowercase().as_str() {
        "3" | "31" | "3.1" | "mqttv31" => Ok(ProtocolVersion::V3_1),
        "4" | "311" | "3.1.1" | "mqttv311" => Ok(ProtocolVersion::V3_1_1),
        "5" | "5.0" | "mqttv5" => Ok(ProtocolVersion::V5),
        _ => Err("expected 3 (3.1), 4 (3.1.1) or 5 (5.0), or mqttv31, mqttv311, mqttv5".into()),
    }
}

/// Parses `-q`: 0, 1 or 2.
pub fn parse_qos(text: &str) -> Result<QoS, String> {
    text.parse::<u8>()
        .ok()
        .and_then(|q| QoS::try_from(q).ok())
        .ok_or_else(|| "QoS must be 0, 1 or 2".into())
}

/// The parts of `mqtt://[user[:password]@]host[:port][/topic]`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Url {
    /// Host.
    pub host: String,
    /// Port, if given.
    pub port: Option<u16>,
    /// User name, if given.
    pub username: Option<String>,
    /// Password, if given.
    pub password: Option<String>,
    /// Topic (everything after the first `/`), if non-empty.
    pub topic: Option<String>,
    /// `mqtts://`: TLS.
    pub tls: bool,
}

/// Parses `--url` (percent-escapes in user and password are decoded).
pub fn parse_url(text: &str) -> Result<Url, CliError> {
    let bad = |why: &str| CliError::Usage(format!("invalid --url '{text}': {why}"));
    let (rest, tls) = if let Some(rest) = text.strip_prefix("mqtt://") {
        (rest, false)
    } else if let Some(rest) = text.strip_prefix("mqtts://") {
        (rest, true)
    } else {
        return Err(bad(
            "expected mqtt[s]://[user[:password]@]host[:port][/topic]",
        ));
    };
    let (authority, topic) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    let mut url = Url {
        tls,
        ..Url::default()
    };
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        url.username = Some(percent_decode(user).ok_or_else(|| bad("bad %-escape"))?);
        url.password = password
            .map(|p| percent_decode(p).ok_or_else(|| bad("bad %-escape")))
            .transpose()?;
    }
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| bad("the port is not a number"))
    };
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(parse_port(port)?)),
            None if after.is_empty() => (host, None),
            None => return Err(bad("unexpected text after ']'")),
        }
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(parse_port(port)?)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    url.host = host.to_owned();
    url.port = port;
    url.topic = (!topic.is_empty()).then(|| topic.to_owned());
    Ok(url)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A random 64-bit value (std's per-process random hash keys; no extra dependency).
pub fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// The broker options resolved: where to connect, and CONNECT's contents.
#[derive(Debug)]
pub struct Resolved {
    /// Client options (no reconnection; the caller may change that).
    pub options: ClientOptions,
    /// The topic given in `--url`, if any.
    pub url_topic: Option<String>,
}

impl BrokerArgs {
    /// Combines the flags and `--url` into client options; `command` names the default id.
    pub fn resolve(
        &self,
        command: &str,
        default_version: ProtocolVersion,
    ) -> Result<Resolved, CliError> {
        let url = self
            .url
            .as_deref()
            .map(parse_url)
            .transpose()?
            .unwrap_or_default();
        let tls = self.tls(url.tls)?;
        let host = self.host.clone().unwrap_or(if url.host.is_empty() {
            "localhost".to_owned()
        } else {
            url.host
        });
        // mosquitto's habit: TLS without a port means 8883.
        let default_port = if tls.is_some() { 8883 } else { 1883 };
        let port = self.port.or(url.port).unwrap_or(default_port);
        let version = self.protocol.unwrap_or(default_version);
        let id = self
            .id
            .clone()
            .unwrap_or_else(|| format!("fulmar-{command}-{:08x}", random_u64() as u32));
        let mut connect = ConnectOptions::new(version, id);
        connect.keep_alive = self.keepalive;
        connect.username = self.username.clone().or(url.username);
        connect.password = self.password.clone().or(url.password).map(Into::into);
        if connect.password.is_some() && connect.username.is_none() && !version.is_v5() {
            return Err(CliError::Usage(
                "a password (-P) needs a user name (-u) before MQTT 5".into(),
            ));
        }
        let mut options = ClientOptions::new(Endpoint { host, port }, connect);
        options.tls = tls;
        options.connect_timeout = Duration::from_secs(10);
        Ok(Resolved {
            options,
            url_topic: url.topic,
        })
    }
}

impl BrokerArgs {
    /// Reads the TLS files once, before connecting: a bad file is a usage error (exit 1).
    fn tls(&self, url_tls: bool) -> Result<Option<TlsConfig>, CliError> {
        self.tls.config(url_tls).map_err(CliError::Usage)
    }
}

/// A hint for the TLS failures that a flag can fix.
fn tls_hint(error: &ClientError) -> &'static str {
    match error {
        ClientError::TlsHandshake { failure, .. } => failure_hint(failure),
        ClientError::TlsExpected { .. } => " (use mqtts:// or a TLS option such as --cafile)",
        _ => "",
    }
}

impl SessionArgs {
    /// Applies -c / -x to the CONNECT options (mosquitto: -c needs an explicit -i).
    pub fn apply(&self, broker: &BrokerArgs, connect: &mut ConnectOptions) -> Result<(), CliError> {
        if !self.persistent {
            if self.session_expiry.is_some() && connect.version.is_v5() {
                connect.properties.session_expiry_interval = self.session_expiry;
            }
            return Ok(());
        }
        if broker.id.is_none() {
            return Err(CliError::Usage(
                "-c (keep the session) needs a client id (-i), as in mosquitto".into(),
            ));
        }
        connect.clean_start = false;
        if connect.version.is_v5() {
            connect.properties.session_expiry_interval =
                Some(self.session_expiry.unwrap_or(u32::MAX));
        }
        Ok(())
    }
}

/// A `-W SECS` deadline as a duration (`None`: no limit).
pub fn timeout_of(seconds: Option<u64>) -> Option<Duration> {
    seconds.map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_everything() {
        let url = parse_url("mqtt://al%40x:p%3Aw@example.org:1884/a/b/#").expect("url");
        assert_eq!(url.host, "example.org");
        assert_eq!(url.port, Some(1884));
        assert_eq!(url.username.as_deref(), Some("al@x"));
        assert_eq!(url.password.as_deref(), Some("p:w"));
        assert_eq!(url.topic.as_deref(), Some("a/b/#"));
    }

    #[test]
    fn url_host_only_and_errors() {
        let url = parse_url("mqtt://[::1]").expect("url");
        assert_eq!(
            (url.host.as_str(), url.port, url.topic),
            ("::1", None, None)
        );
        assert!(matches!(parse_url("http://x"), Err(CliError::Usage(_))));
        assert!(matches!(
            parse_url("mqtt://x:port"),
            Err(CliError::Usage(_))
        ));
        let tls = parse_url("mqtts://broker.example/t").expect("mqtts url");
        assert!(tls.tls);
        assert_eq!((tls.host.as_str(), tls.port), ("broker.example", None));
        assert!(!parse_url("mqtt://x").expect("url").tls);
    }

    /// The broker options as `fulmar pub` would parse them.
    #[derive(clap::Parser)]
    #[command(disable_help_flag = true)]
    struct Parsed {
        #[command(flatten)]
        broker: BrokerArgs,
    }

    fn resolve(args: &[&str]) -> Result<Resolved, CliError> {
        use clap::Parser;
        let parsed = Parsed::try_parse_from(std::iter::once("pub").chain(args.iter().copied()))
            .expect("arguments parse");
        parsed.broker.resolve("pub", ProtocolVersion::V3_1_1)
    }

    fn ca_file() -> String {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        root.join("../fulmar-client/src/tls/testdata/ca.pem")
            .display()
            .to_string()
    }

    #[test]
    fn tls_turns_on_with_mqtts_or_a_tls_flag_and_defaults_to_8883() {
        let plain = resolve(&["-h", "b"]).expect("plain");
        assert!(plain.options.tls.is_none());
        assert_eq!(plain.options.endpoint.port, 1883);

        let url = resolve(&["-L", "mqtts://b/t"]).expect("mqtts");
        assert!(url.options.tls.is_some());
        assert_eq!(url.options.endpoint.port, 8883);

        let ca = ca_file();
        let flag = resolve(&["-h", "b", "--cafile", &ca]).expect("cafile");
        assert!(flag.options.tls.is_some());
        assert_eq!(flag.options.endpoint.port, 8883);

        let explicit = resolve(&["-L", "mqtts://b:9999", "--insecure"]).expect("port");
        assert_eq!(explicit.options.endpoint.port, 9999);
        let flag_port = resolve(&["--tls-version", "tlsv1.3", "-p", "1"]).expect("-p");
        assert_eq!(flag_port.options.endpoint.port, 1);
    }

    #[test]
    fn bad_tls_files_are_usage_errors_that_name_the_file() {
        let missing = resolve(&["--cafile", "/nonexistent/ca.pem"]).expect_err("missing");
        assert_eq!(missing.exit_code(), EXIT_USAGE);
        assert!(
            missing.to_string().contains("/nonexistent/ca.pem"),
            "{missing}"
        );

        let ca = ca_file();
        let half = resolve(&["--cafile", &ca, "--cert", &ca]).expect_err("no key");
        assert_eq!(half.exit_code(), EXIT_USAGE);
        assert!(half.to_string().contains("--cert and --key"), "{half}");
    }

    #[test]
    fn versions_accept_mosquitto_spellings() {
        assert_eq!(parse_version("mqttv31"), Ok(ProtocolVersion::V3_1));
        assert_eq!(parse_version("311"), Ok(ProtocolVersion::V3_1_1));
        assert_eq!(parse_version("5"), Ok(ProtocolVersion::V5));
        assert!(parse_version("6").is_err());
    }
}
