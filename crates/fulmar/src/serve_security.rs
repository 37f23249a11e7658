//! The security options of `fulmar serve`: password and ACL files, TLS listeners.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use fulmar_server::config::ListenerConfig;
use fulmar_server::tls::{CertIdentity, TlsSettings};
use fulmar_server::Config;

/// Options that set up authentication, authorisation and TLS from the command line.
#[derive(Debug, Args)]
pub struct SecurityArgs {
    /// Password file (`fulmar passwd` or mosquitto_passwd format); anonymous clients are
    /// then refused unless the config allows them.
    #[arg(long = "password-file", value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// ACL file (mosquitto acl_file format); everything it does not allow is denied.
    #[arg(long = "acl-file", value_name = "FILE")]
    acl_file: Option<PathBuf>,
    /// MQTT-over-TLS listener address; repeatable; needs --tls-cert and --tls-key.
    #[arg(long = "listen-tls", value_name = "ADDR:PORT")]
    pub listen_tls: Vec<SocketAddr>,
    /// MQTT over secure WebSocket (WSS) listener address; repeatable; needs --tls-cert and
    /// --tls-key.
    #[arg(long = "listen-wss", value_name = "ADDR:PORT")]
    pub listen_wss: Vec<SocketAddr>,
    /// PEM certificate chain for the TLS listeners.
    #[arg(long = "tls-cert", value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for the TLS listeners.
    #[arg(long = "tls-key", value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// PEM CA bundle to verify client certificates with.
    #[arg(long = "tls-ca", value_name = "PEM")]
    tls_ca: Option<PathBuf>,
    /// Refuse TLS clients without a certificate signed by --tls-ca.
    #[arg(long = "require-client-cert", requires = "tls_ca")]
    require_client_cert: bool,
    /// Use the client certificate's subject CN (or first SAN) as the username.
    #[arg(long = "tls-identity-as-username", value_name = "cn|san", value_parser = parse_identity)]
    identity_as_username: Option<CertIdentity>,
}

fn parse_identity(value: &str) -> Result<CertIdentity, String> {
    match value {
        "cn" => Ok(CertIdentity::Cn),
        "san" => Ok(CertIdentity::San),
        other => Err(format!("expected cn or san, not {other:?}")),
    }
}

impl SecurityArgs {
    /// Applies the options to `config`: files replace the config's, TLS listeners are added.
    pub fn apply(&self, config: &mut Config) -> anyhow::Result<()> {
        if let Some(path) = &self.password_file {
            config.auth.password_file = Some(path.clone());
        }
        if let Some(path) = &self.acl_file {
            config.auth.acl_file = Some(path.clone());
        }
        let tls_options_given =
            self.tls_cert.is_some() || self.tls_key.is_some() || self.tls_ca.is_some();
        if self.listen_tls.is_empty() && self.listen_wss.is_empty() {
            if tls_options_given {
                anyhow::bail!(
                    "--tls-cert/--tls-key/--tls-ca need a TLS listener: add --listen-tls ADDR:PORT"
                );
            }
            return Ok(());
        }
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            anyhow::bail!("--listen-tls/--listen-wss need both --tls-cert PEM and --tls-key PEM");
        };
        let settings = TlsSettings {
            cert: cert.clone(),
            key: key.clone(),
            ca: self.tls_ca.clone(),
            require_client_cert: self.require_client_cert,
            identity_as_username: self.identity_as_username,
        };
        let secure = |bind| ListenerConfig {
            tls: Some(settings.clone()),
            ..ListenerConfig::new(bind)
        };
        config
            .listeners
            .extend(self.listen_tls.iter().map(|&bind| secure(bind)));
        config
            .websocket_listeners
            .extend(self.listen_wss.iter().map(|&bind| secure(bind)));
        Ok(())
    }
}
