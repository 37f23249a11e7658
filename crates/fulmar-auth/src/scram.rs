//! A sans-IO SCRAM-SHA-256 server (RFC 5802, RFC 7677) for MQTT 5 enhanced authentication.
//!
//! MQTT 5 carries the SASL messages in the Authentication Data property, with Authentication
//! Method `SCRAM-SHA-256` (§4.12):
//!
//! ```text
//! client                                   server
//!   CONNECT  (client-first-message)  ──►   ScramServer::start  → credentials looked up
//!            (server-first-message)  ◄──   AUTH 0x18 Continue authentication
//!   AUTH 0x18 (client-final-message) ──►   ScramServer::finish → proof checked
//!            (server-final-message)  ◄──   CONNACK 0x00 (or 0x86 / 0x87 on failure)
//! ```
//!
//! Scope and choices:
//! - No channel binding: the gs2 header must be `n,,` or `y,,`; `p=...` is refused
//!   ([`ScramError::ChannelBindingNotSupported`]), as is an authorization identity (`a=`).
//! - SASLprep (RFC 4013) is not applied: ASCII usernames and passwords, the common case, are
//!   unchanged by it; other UTF-8 is used byte for byte, so client and password file must use the
//!   same normalisation. Usernames are unescaped (`=2C` → `,`, `=3D` → `=`).
//! - An unknown user goes through the same exchange as a known one with a wrong password: a salt
//!   derived from the username with a per-process secret key (stable across attempts, so
//!   repeating the first step reveals nothing), the default iteration count, and the same proof
//!   computation, failing with [`ScramError::InvalidProof`].
//! - The proof is compared in constant time.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::hash::{hmac_sha256, ScramCredentials, DEFAULT_SCRAM_ITERATIONS};

/// The MQTT 5 Authentication Method name of this mechanism.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// Why a SCRAM exchange failed. Every variant ends the exchange; the server then refuses the
/// connection (CONNACK 0x87 Not authorized for [`ScramError::InvalidProof`], 0x84/0x87 otherwise,
/// at the caller's choice).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message does not follow the RFC 5802 §7 grammar; the text says where.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for channel binding (`p=`), which this server does not offer.
    #[error("SCRAM channel binding is not supported")]
    ChannelBindingNotSupported,
    /// The client gave an authorization identity (`a=`), which this server does not support.
    #[error("SCRAM authorization identity is not supported")]
    AuthzidNotSupported,
    /// The client used a mandatory extension (`m=`), which this server does not support.
    #[error("SCRAM mandatory extensions are not supported")]
    ExtensionNotSupported,
    /// The client-final `c=` does not repeat the gs2 header of client-first.
    #[error("SCRAM channel binding data does not match")]
    ChannelBindingMismatch,
    /// The client-final nonce is not the nonce of server-first.
    #[error("SCRAM nonce does not match")]
    NonceMismatch,
    /// The server nonce given to [`ScramServer::start`] is empty or not printable ASCII without `,`.
    #[error("invalid SCRAM server nonce")]
    InvalidServerNonce,
    /// Wrong password, or unknown user (indistinguishable on purpose).
    #[error("SCRAM authentication failed")]
    InvalidProof,
}

/// A SCRAM-SHA-256 exchange after the client's first message, waiting for its final message.
///
/// # Invariants
///
/// - `nonce` starts with the client's nonce and ends with the server's.
/// - `known` is false exactly when `creds` are the fake credentials of an unknown user;
///   [`ScramServer::finish`] then fails whatever the proof.
pub struct ScramServer {
    /// The unescaped username from client-first-message.
    username: String,
    /// The user's credential, or a fake one for an unknown user.
    creds: ScramCredentials,
    /// Whether `creds` belong to a real user.
    known: bool,
    /// The gs2 header (e.g. `n,,`), which client-final must echo base64-encoded in `c=`.
    gs2_header: String,
    /// client-first-message-bare, the first part of AuthMessage.
    client_first_bare: String,
    /// server-first-message, the second part of AuthMessage.
    server_first: String,
    /// client nonce + server nonce, which client-final must repeat.
    nonce: String,
}

impl std::fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramServer")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl ScramServer {
    /// Handles client-first-message: looks the user up with `lookup` and returns the exchange
    /// state and server-first-message. `nonce` is the server's part of the nonce (printable ASCII
    /// without `,`, e.g. from [`generate_nonce`]).
    ///
    /// # Errors
    ///
    /// A [`ScramError`] for a malformed message or an unsupported feature. An unknown user is
    /// not an error here (see the module documentation).
    pub fn start(
        client_first: &[u8],
        lookup: impl Fn(&str) -> Option<ScramCredentials>,
        nonce: &[u8],
    ) -> Result<(Self, Vec<u8>), ScramError> {
        let text =
            std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (flag, rest) = text
            .split_once(',')
            .ok_or(ScramError::Malformed("no gs2 header"))?;
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no gs2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBindingNotSupported),
            _ => return Err(ScramError::Malformed("gs2 flag must be n, y or p=")),
        }
        if !authzid.is_empty() {
            return Err(ScramError::AuthzidNotSupported);
        }
        let gs2_header = text[..text.len() - bare.len()].to_owned();
        let mut attributes = bare.split(',');
        let user = match attributes.next() {
            Some(m) if m.starts_with("m=") => return Err(ScramError::ExtensionNotSupported),
            Some(n) => n
                .strip_prefix("n=")
                .ok_or(ScramError::Malformed("expected n=username"))?,
            None => return Err(ScramError::Malformed("expected n=username")),
        };
        let username = unescape_username(user)?;
        let client_nonce = attributes
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .ok_or(ScramError::Malformed("expected r=nonce"))?;
        if !is_printable_nonce(client_nonce.as_bytes()) {
            return Err(ScramError::Malformed(
                "client nonce must be printable ASCII without ','",
            ));
        }
        if !is_printable_nonce(nonce) {
            return Err(ScramError::InvalidServerNonce);
        }
        // Checked above: printable ASCII, hence UTF-8.
        let server_nonce =
            std::str::from_utf8(nonce).map_err(|_| ScramError::InvalidServerNonce)?;
        let (creds, known) = match lookup(&username) {
            Some(creds) => (creds, true),
            None => (fake_credentials(&username), false),
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&creds.salt),
            creds.iterations
        );
        let reply = server_first.clone().into_bytes();
        let server = Self {
            username,
            creds,
            known,
            gs2_header,
            client_first_bare: bare.to_owned(),
            server_first,
            nonce,
        };
        Ok((server, reply))
    }

    /// The username the client claims (not yet authenticated).
    #[must_use]
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Handles client-final-message: checks the channel binding echo, the nonce and the proof,
    /// and returns the authenticated username and server-final-message (`v=ServerSignature`).
    ///
    /// # Errors
    ///
    /// [`ScramError::InvalidProof`] for a wrong password or an unknown user; other variants for
    /// a malformed message.
    pub fn finish(self, client_final: &[u8]) -> Result<(String, Vec<u8>), ScramError> {
        let text =
            std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // RFC 5802 §7: the proof is the last attribute; AuthMessage uses everything before it.
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("expected p=proof"))?;
        let mut attributes = without_proof.split(',');
        let binding = attributes
            .next()
            .and_then(|c| c.strip_prefix("c="))
            .ok_or(ScramError::Malformed("expected c=channel-binding"))?;
        if B64.decode(binding).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(ScramError::ChannelBindingMismatch);
        }
        let nonce = attributes
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .ok_or(ScramError::Malformed("expected r=nonce"))?;
        if nonce != self.nonce {
            return Err(ScramError::NonceMismatch);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let proof: [u8; 32] = proof
            .try_into()
            .map_err(|_| ScramError::Malformed("proof must be 32 bytes"))?;

        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let client_signature = hmac_sha256(&self.creds.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for (key, (p, s)) in client_key
            .iter_mut()
            .zip(proof.iter().zip(client_signature))
        {
            *key = p ^ s;
        }
        let candidate: [u8; 32] = Sha256::digest(client_key).into();
        let matches =
            candidate.ct_eq(&self.creds.stored_key) & subtle::Choice::from(u8::from(self.known));
        if !bool::from(matches) {
            return Err(ScramError::InvalidProof);
        }
        let signature = hmac_sha256(&self.creds.server_key, auth_message.as_bytes());
        Ok((
            self.username,
            format!("v={}", B64.encode(signature)).into_bytes(),
        ))
    }
}

/// A fresh server nonce: 18 random bytes, base64-encoded (24 printable characters).
#[must_use]
pub fn generate_nonce() -> Vec<u8> {
    let mut bytes = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    B64.encode(bytes).into_bytes()
}

/// RFC 5802 §5.1: `=2C` and `=3D` stand for `,` and `=`; any other `=` is an error.
fn unescape_username(escaped: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad '=' escape in username")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.is_empty() || out.chars().any(char::is_control) {
        return Err(ScramError::Malformed(
            "username is empty or has control characters",
        ));
    }
    Ok(out)
}

/// RFC 5802 §7 `printable`: `%x21-2B / %x2D-7E` (ASCII without `,`), at least one character.
fn is_printable_nonce(nonce: &[u8]) -> bool {
    !nonce.is_empty()
        && nonce
            .iter()
            .all(|&b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Credentials for an unknown user: stable per username within this process, unguessable from
/// outside (keyed by a random per-process secret), and never matching any proof.
fn fake_credentials(username: &str) -> ScramCredentials {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        key
    });
    let derive = |label: &str| hmac_sha256(key, format!("{label}\0{username}").as_bytes());
    ScramCredentials {
        salt: derive("salt")[..16].to_vec(),
        iterations: DEFAULT_SCRAM_ITERATIONS,
        stored_key: derive("stored"),
        server_key: derive("server"),
    }
}

#[cfg(test)]
#[path = "scram_tests.rs"]
mod tests;
