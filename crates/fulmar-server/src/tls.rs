//! TLS for listeners (rustls): certificate loading, optional client-certificate
//! verification, the certificate identity as username, and reload without dropping
//! connections (new handshakes use the new configuration; established ones keep theirs).

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;

/// Which part of a verified client certificate becomes the MQTT username.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CertIdentity {
    /// The subject's Common Name.
    Cn,
    /// The first DNS or e-mail Subject Alternative Name.
    San,
}

/// The `tls` table of a listener.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain (leaf first).
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA bundle to verify client certificates against.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Refuse clients without a certificate signed by `ca`.
    #[serde(default)]
    pub require_client_cert: bool,
    /// Use the client certificate's identity as the username.
    #[serde(default)]
    pub identity_as_username: Option<CertIdentity>,
}

/// Loading TLS material failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the expected kind.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: String,
        /// What was missing or wrong.
        what: &'static str,
    },
    /// rustls refused the certificate/key pair or the CA.
    #[error("invalid TLS configuration: {0}")]
    Rustls(String),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut BufReader::new(&bytes[..])).collect();
    let certs = certs.map_err(|_| TlsError::Pem {
        path: path.display().to_string(),
        what: "malformed PEM certificate",
    })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.display().to_string(),
            what: "no certificate found",
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    rustls_pemfile::private_key(&mut BufReader::new(&bytes[..]))
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::Pem {
            path: path.display().to_string(),
            what: "no private key found",
        })
}

/// Builds a rustls server configuration (TLS 1.2 and 1.3) from the settings.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match &settings.ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::Rustls(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if settings.require_client_cert {
                verifier.build()
            } else {
                verifier.allow_unauthenticated().build()
            };
            builder
                .with_client_cert_verifier(verifier.map_err(|e| TlsError::Rustls(e.to_string()))?)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs(&settings.cert)?, private_key(&settings.key)?)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    Ok(Arc::new(config))
}

/// A listener's current TLS configuration, swapped on reload.
#[derive(Debug)]
pub struct ReloadableTls {
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
}

impl ReloadableTls {
    /// Loads the configuration once; errors name the file.
    pub fn new(settings: TlsSettings) -> Result<Self, TlsError> {
        let current = RwLock::new(server_config(&settings)?);
        Ok(ReloadableTls { settings, current })
    }

    /// The configuration for the next handshake.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::clone(&self.current.read()))
    }

    /// Re-reads the certificate, key and CA; on error the old configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = server_config(&self.settings)?;
        *self.current.write() = fresh;
        Ok(())
    }

    /// Which certificate identity becomes the username, if any.
    pub fn identity_source(&self) -> Option<CertIdentity> {
        self.settings.identity_as_username
    }
}

/// The identity of a verified client certificate, per `source`.
pub fn certificate_identity(cert: &CertificateDer<'_>, source: CertIdentity) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    match source {
        CertIdentity::Cn => parsed
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string),
        CertIdentity::San => {
            let san = parsed.subject_alternative_name().ok().flatten()?;
            san.value.general_names.iter().find_map(|name| match name {
                x509_parser::extensions::GeneralName::DNSName(s)
                | x509_parser::extensions::GeneralName::RFC822Name(s) => Some(s.to_string()),
                _ => None,
            })
        }
    }
}
