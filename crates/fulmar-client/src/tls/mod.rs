//! TLS to the broker (rustls with the `ring` provider): what the user asks for ([`TlsOptions`]),
//! the configuration built from it once ([`TlsConfig`], shared by every reconnection), and why a
//! handshake failed ([`TlsFailure`]).
//!
//! The broker's certificate is checked against the CA file, or against the Mozilla roots of
//! `webpki-roots` when there is none. The host the client connects to is the TLS server name: it
//! is sent as SNI (rustls sends none for an IP address) and must be in the certificate, unless
//! [`TlsOptions::insecure`] is set, which skips that one check and nothing else (see
//! `verifier.rs`).

mod verifier;

use std::fmt;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A TLS protocol version to insist on (mosquitto's `--tls-version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 only.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl FromStr for TlsVersion {
    type Err = String;

    /// `tlsv1.2` / `tlsv1.3` (mosquitto's spellings), also `1.2` / `1.3`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "tlsv1.2" | "1.2" | "tls1.2" => Ok(Self::Tls12),
            "tlsv1.3" | "1.3" | "tls1.3" => Ok(Self::Tls13),
            _ => Err("expected tlsv1.2 or tlsv1.3".into()),
        }
    }
}

/// A client certificate and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// TLS settings as a user gives them (mosquitto_pub's `--cafile`, `--cert`/`--key`,
/// `--insecure`, `--tls-version`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the CA certificates to trust; `None`: the Mozilla roots (`webpki-roots`).
    pub ca_file: Option<PathBuf>,
    /// A certificate to present when the broker asks for one.
    pub identity: Option<ClientIdentity>,
    /// Accept a certificate that does not name the host. The chain is still verified against
    /// the trusted CAs (expiry, signatures, purpose): only the name check is skipped.
    pub insecure: bool,
    /// Insist on one version; `None`: TLS 1.3 or 1.2, whichever the broker prefers.
    pub version: Option<TlsVersion>,
}

/// Loading or assembling the TLS configuration failed (before any connection).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the {what} {path}: {source}")]
    Read {
        /// Which file: "CA file", "client certificate", "client key".
        what: &'static str,
        /// The path as given.
        path: String,
        /// The IO error.
        source: io::Error,
    },
    /// A file holds no usable PEM item of the expected kind.
    #[error("{path}: {problem}")]
    Pem {
        /// The path as given.
        path: String,
        /// What was missing or wrong.
        problem: &'static str,
    },
    /// The client key is not the key of the client certificate.
    #[error("the client key {key} does not belong to the client certificate {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
    },
    /// rustls refused the configuration.
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Why a TLS session could not be set up or went wrong, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFailure {
    /// The broker's certificate is signed by a trusted CA but does not name the host.
    NameMismatch(String),
    /// The broker's certificate chain does not lead to a trusted CA.
    UnknownCa {
        /// What was trusted: the CA file, or the built-in roots.
        trusted: String,
    },
    /// Another problem with the broker's certificate (expired, wrong purpose, bad signature...).
    Certificate(String),
    /// The broker ended the handshake with a fatal alert (e.g. it wants a client certificate).
    Alert(String),
    /// Anything else rustls reported.
    Other(String),
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NameMismatch(detail) => {
                write!(f, "certificate verify failed: name mismatch ({detail})")
            }
            Self::UnknownCa { trusted } => write!(
                f,
                "certificate verify failed: unknown CA (the broker's certificate is not signed by {trusted})"
            ),
            Self::Certificate(detail) => write!(f, "certificate verify failed: {detail}"),
            Self::Alert(detail) => write!(f, "the broker refused the TLS session: {detail}"),
            Self::Other(detail) => f.write_str(detail),
        }
    }
}

impl TlsFailure {
    /// Classifies a rustls error; `trusted` says what the CAs were, for the unknown-CA text.
    pub(crate) fn from_rustls(error: &rustls::Error, trusted: &str) -> Self {
        use rustls::{AlertDescription as Alert, CertificateError as Cert, Error as E};
        match error {
            E::InvalidCertificate(Cert::NotValidForNameContext {
                expected,
                presented,
            }) => {
                let names: Vec<&str> = presented.iter().map(|name| bare_name(name)).collect();
                Self::NameMismatch(match names.as_slice() {
                    [] => format!("the certificate names no host, not {}", expected.to_str()),
                    names => format!(
                        "the certificate is for {}, not {}",
                        names.join(", "),
                        expected.to_str()
                    ),
                })
            }
            E::InvalidCertificate(cert @ Cert::NotValidForName) => {
                Self::NameMismatch(cert.to_string())
            }
            E::InvalidCertificate(Cert::UnknownIssuer) => Self::UnknownCa {
                trusted: trusted.to_owned(),
            },
            E::InvalidCertificate(cert) => Self::Certificate(cert.to_string()),
            E::AlertReceived(Alert::CertificateRequired) => {
                Self::Alert("it requires a client certificate (alert CertificateRequired)".into())
            }
            E::AlertReceived(
                alert @ (Alert::UnknownCA | Alert::BadCertificate | Alert::AccessDenied),
            ) => Self::Alert(format!(
                "it did not accept our client certificate (alert {alert:?})"
            )),
            E::AlertReceived(alert) => Self::Alert(format!("alert {alert:?}")),
            other => Self::Other(other.to_string()),
        }
    }

    /// The TLS failure inside an IO error from tokio-rustls, if it wraps one.
    pub(crate) fn from_io(error: &io::Error, trusted: &str) -> Option<Self> {
        let inner = error.get_ref()?.downcast_ref::<rustls::Error>()?;
        Some(Self::from_rustls(inner, trusted))
    }
}

/// `other.example` from rustls's `DnsName("other.example")` (its debug form of a presented name).
fn bare_name(presented: &str) -> &str {
    presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .map_or(presented, |inner| inner.trim_matches('"'))
}

/// A ready TLS client configuration, built once from [`TlsOptions`] (files read, keys parsed) and
/// shared by every connection and reconnection.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// The rustls configuration; every handshake shares it (and its session cache, so a
    /// reconnection may resume the previous session).
    config: Arc<ClientConfig>,
    /// What the broker's certificate must chain to, for error messages.
    trusted: String,
}

impl TlsConfig {
    /// Reads the CA file and the client certificate and key, and builds the rustls
    /// configuration (ring provider; TLS 1.3 and 1.2 unless a version is given).
    pub fn new(options: &TlsOptions) -> Result<Self, TlsError> {
        let (roots, trusted) = match &options.ca_file {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(path, "CA file")? {
                    roots.add(cert)?;
                }
                (roots, format!("a CA in {}", path.display()))
            }
            None => (
                RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                },
                "a CA of the built-in Mozilla roots (give a CA file to trust another)".to_owned(),
            ),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&'static rustls::SupportedProtocolVersion] = match options.version {
            None => &[&rustls::version::TLS13, &rustls::version::TLS12],
            Some(TlsVersion::Tls12) => &[&rustls::version::TLS12],
            Some(TlsVersion::Tls13) => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)?;
        let builder = if options.insecure {
            let verifier = verifier::ChainOnlyVerifier::new(roots, provider)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        } else {
            builder.with_root_certificates(roots)
        };
        let config = match &options.identity {
            Some(identity) => {
                let certs = read_certs(&identity.cert, "client certificate")?;
                let key = read_key(&identity.key)?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|error| match error {
                        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                            cert: identity.cert.display().to_string(),
                            key: identity.key.display().to_string(),
                        },
                        other => other.into(),
                    })?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Self {
            config: Arc::new(config),
            trusted,
        })
    }

    /// Runs the handshake over `tcp`, with `host` as the server name (SNI and the name the
    /// certificate must carry). Public for tools that open their own sockets (`fulmar bench`).
    pub async fn handshake(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, TlsFailure> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| TlsFailure::Other(format!("'{host}' is not a valid TLS server name")))?;
        TlsConnector::from(Arc::clone(&self.config))
            .connect(name, tcp)
            .await
            .map_err(|error| match TlsFailure::from_io(&error, &self.trusted) {
                Some(failure) => failure,
                None if matches!(
                    error.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                ) =>
                {
                    TlsFailure::Other(
                        "the broker closed the connection during the handshake (is this a TLS port?)"
                            .into(),
                    )
                }
                None => TlsFailure::Other(error.to_string()),
            })
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path, what)?;
    let pem_error = |problem| TlsError::Pem {
        path: path.display().to_string(),
        problem,
    };
    let certs = rustls_pemfile::certs(&mut BufReader::new(&bytes[..]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| pem_error("malformed PEM certificate"))?;
    if certs.is_empty() {
        return Err(pem_error("no PEM certificate found"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path, "client key")?;
    rustls_pemfile::private_key(&mut BufReader::new(&bytes[..]))
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::Pem {
            path: path.display().to_string(),
            problem: "no PEM private key found",
        })
}

#[cfg(test)]
mod tests;
