//! The TLS options of the client commands (`pub`, `sub`, `chat`, `bench`), in mosquitto_pub's
//! spellings, and the hints printed next to a TLS failure that one of them can fix.

use std::path::PathBuf;

use clap::Args;
use fulmar_client::{ClientIdentity, TlsConfig, TlsFailure, TlsOptions, TlsVersion};

/// `--cafile`, `--cert`/`--key`, `--insecure`, `--tls-version`: any of them turns TLS on.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// Use TLS and trust the CA certificates in this PEM file [default with TLS: the built-in
    /// Mozilla roots].
    #[arg(long, value_name = "FILE")]
    pub cafile: Option<PathBuf>,
    /// Use TLS and present this PEM client certificate (needs --key).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The PEM private key of --cert.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Use TLS without checking that the broker's certificate names the host (the certificate
    /// must still be signed by a trusted CA).
    #[arg(long)]
    pub insecure: bool,
    /// Use TLS with only this version: tlsv1.2 or tlsv1.3 [default: either].
    #[arg(long = "tls-version", value_name = "VERSION")]
    pub tls_version: Option<TlsVersion>,
}

impl TlsArgs {
    /// The TLS options given, if any: `force` (`mqtts://`, `bench --tls`) or any TLS flag turns
    /// TLS on.
    pub fn options(&self, force: bool) -> Option<TlsOptions> {
        let any_flag = self.cafile.is_some()
            || self.cert.is_some()
            || self.key.is_some()
            || self.insecure
            || self.tls_version.is_some();
        (force || any_flag).then(|| TlsOptions {
            ca_file: self.cafile.clone(),
            identity: self
                .cert
                .clone()
                .zip(self.key.clone())
                .map(|(cert, key)| ClientIdentity { cert, key }),
            insecure: self.insecure,
            version: self.tls_version,
        })
    }

    /// Reads the TLS files once, before connecting; the error is a usage error that names the
    /// flag or the file.
    pub fn config(&self, force: bool) -> Result<Option<TlsConfig>, String> {
        if self.cert.is_some() != self.key.is_some() {
            return Err("--cert and --key go together (the client certificate and its key)".into());
        }
        self.options(force)
            .map(|options| TlsConfig::new(&options))
            .transpose()
            .map_err(|e| e.to_string())
    }
}

/// A hint for the handshake failures that a flag can fix ("" for the others).
pub fn failure_hint(failure: &TlsFailure) -> &'static str {
    match failure {
        TlsFailure::NameMismatch(_) => {
            " (connect by a name the certificate lists, or --insecure to skip the name check)"
        }
        TlsFailure::UnknownCa { .. } => " (--cafile names the CA to trust)",
        _ => "",
    }
}
