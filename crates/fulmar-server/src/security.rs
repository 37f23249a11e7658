//! Who may connect and what they may do: the password file, the ACL file, anonymous
//! access, and MQTT 5 enhanced authentication. Files are reloaded on SIGHUP; a bad file is
//! rejected with its line number and the old one stays in force.

use std::path::PathBuf;
use std::sync::Arc;

use fulmar_auth::{Access, Acl, ClientIdentity, PasswordFile, ScramServer, SCRAM_SHA_256};
use fulmar_proto::{Connect, ReasonCode};
use parking_lot::RwLock;
use serde::Deserialize;

/// The `[auth]` configuration table.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Password file (`user:hash` lines; argon2id, mosquitto PBKDF2-SHA512, SCRAM-SHA-256).
    pub password_file: Option<PathBuf>,
    /// ACL file in mosquitto's `acl_file` format; when set, everything not allowed is denied.
    pub acl_file: Option<PathBuf>,
    /// Anonymous clients (no username) allowed. Default: true when no password file is
    /// set, false when one is. A listener's own `allow_anonymous` overrides it.
    pub allow_anonymous: Option<bool>,
}

/// Loading an auth file failed; the message names the file and line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SecurityError(pub String);

/// The loaded files, swapped as a whole on reload.
#[derive(Debug, Default)]
struct Loaded {
    passwords: Option<Arc<PasswordFile>>,
    acl: Option<Arc<Acl>>,
}

/// Authentication and authorisation state shared by all connections.
#[derive(Debug)]
pub struct Security {
    settings: AuthSettings,
    loaded: RwLock<Loaded>,
}

/// How a connection arrived, as far as authentication cares.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The listener's `allow_anonymous`, overriding the `[auth]` default.
    pub allow_anonymous: Option<bool>,
    /// The username taken from a verified client certificate, if the listener uses one.
    pub certificate_username: Option<String>,
}

impl Security {
    /// No password file, no ACL: anonymous clients allowed, everything permitted.
    pub fn open() -> Security {
        Security {
            settings: AuthSettings::default(),
            loaded: RwLock::new(Loaded::default()),
        }
    }

    /// Loads the configured files.
    pub fn load(settings: AuthSettings) -> Result<Security, SecurityError> {
        let loaded = load_files(&settings)?;
        Ok(Security {
            settings,
            loaded: RwLock::new(loaded),
        })
    }

    /// Re-reads the files; on error the old ones stay in force.
    pub fn reload(&self) -> Result<(), SecurityError> {
        let fresh = load_files(&self.settings)?;
        *self.loaded.write() = fresh;
        Ok(())
    }

    /// The ACL, when one is configured.
    pub fn acl(&self) -> Option<Arc<Acl>> {
        // A reload re-reads the configured paths, never new ones: without an ACL file there
        // is never an ACL, and the publish path (which asks on every message) takes no lock.
        self.settings.acl_file.as_ref()?;
        self.loaded.read().acl.clone()
    }

    fn passwords(&self) -> Option<Arc<PasswordFile>> {
        self.loaded.read().passwords.clone()
    }

    /// Whether clients without credentials may connect through a listener with `origin`.
    fn anonymous_allowed(&self, origin: &Origin) -> bool {
        origin
            .allow_anonymous
            .or(self.settings.allow_anonymous)
            .unwrap_or(self.settings.password_file.is_none())
    }

    /// Checks CONNECT credentials. Returns the authenticated username (`None` for an
    /// anonymous client), or the CONNACK reason: 0x86 (3.1.1: 4) for a wrong password,
    /// 0x87 (3.1.1: 5) for a missing one where anonymous access is off. The password is
    /// never logged.
    pub async fn authenticate(
        &self,
        connect: &Connect,
        origin: &Origin,
    ) -> Result<Option<String>, ReasonCode> {
        if let Some(user) = &origin.certificate_username {
            return Ok(Some(user.clone()));
        }
        match (&connect.username, self.passwords()) {
            (Some(user), Some(passwords)) => {
                let password = connect.password.clone().unwrap_or_default();
                let name = user.clone();
                // Slow hashes (argon2id, PBKDF2) run off the async workers.
                let verified =
                    tokio::task::spawn_blocking(move || passwords.verify(&name, &password))
                        .await
                        .unwrap_or(false);
                if verified {
                    Ok(Some(user.clone()))
                } else {
                    tracing::warn!(user, client_id = %connect.client_id, "authentication failed: bad username or password");
                    Err(ReasonCode::BadUserNameOrPassword)
                }
            }
            (username, _) if self.anonymous_allowed(origin) => Ok(username.clone()),
            (username, _) => {
                tracing::warn!(user = ?username, client_id = %connect.client_id, "authentication failed: credentials required");
                Err(ReasonCode::NotAuthorized)
            }
        }
    }

    /// Starts an MQTT 5 enhanced authentication with `method`. Returns the exchange and the
    /// server's first challenge, or the CONNACK reason (0x8C for an unknown method).
    pub fn start_enhanced(
        &self,
        method: &str,
        client_first: &[u8],
    ) -> Result<(EnhancedAuth, Vec<u8>), ReasonCode> {
        if method != SCRAM_SHA_256 {
            return Err(ReasonCode::BadAuthenticationMethod);
        }
        let passwords = self
            .passwords()
            .ok_or(ReasonCode::BadAuthenticationMethod)?;
        let nonce = fulmar_auth::generate_nonce();
        let (server, challenge) = ScramServer::start(
            client_first,
            |user| passwords.scram_credentials(user),
            &nonce,
        )
        .map_err(|e| {
            tracing::warn!(error = %e, "SCRAM exchange refused");
            ReasonCode::NotAuthorized
        })?;
        Ok((EnhancedAuth::Scram(server), challenge))
    }

    /// Whether `identity` may publish to `topic` (always, without an ACL).
    pub fn may_publish(&self, identity: &ClientIdentity<'_>, topic: &str) -> bool {
        self.acl()
            .is_none_or(|acl| acl.check(identity, Access::Write, topic))
    }

    /// Whether `identity` may subscribe to `filter` (always, without an ACL).
    pub fn may_subscribe(&self, identity: &ClientIdentity<'_>, filter: &str) -> bool {
        self.acl()
            .is_none_or(|acl| acl.check(identity, Access::Subscribe, filter))
    }
}

/// An enhanced authentication exchange in progress (the pluggable seam: one variant per
/// method the broker offers).
#[derive(Debug)]
pub enum EnhancedAuth {
    /// SCRAM-SHA-256 (RFC 5802 / 7677) against the password file's SCRAM credentials.
    Scram(ScramServer),
}

impl EnhancedAuth {
    /// Handles the client's response; returns the username and the server's final data.
    pub fn finish(self, response: &[u8]) -> Result<(String, Vec<u8>), ReasonCode> {
        match self {
            EnhancedAuth::Scram(server) => server.finish(response).map_err(|e| {
                tracing::warn!(error = %e, "SCRAM authentication failed");
                ReasonCode::NotAuthorized
            }),
        }
    }
}

fn load_files(settings: &AuthSettings) -> Result<Loaded, SecurityError> {
    let passwords = match &settings.password_file {
        Some(path) => Some(Arc::new(
            PasswordFile::load(path).map_err(|e| SecurityError(e.to_string()))?,
        )),
        None => None,
    };
    let acl = match &settings.acl_file {
        Some(path) => Some(Arc::new(
            Acl::load(path).map_err(|e| SecurityError(e.to_string()))?,
        )),
        None => None,
    };
    Ok(Loaded { passwords, acl })
}
