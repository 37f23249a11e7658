//! Password hash formats: parsing a stored hash, verifying a password against it, making new ones.
//!
//! | format | written by | shape |
//! |---|---|---|
//! | argon2id (PHC) | `fulmar passwd` (default) | `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>` |
//! | PBKDF2-SHA512 | `mosquitto_passwd` (2.x default) | `$7$<iterations>$<base64 salt>$<base64 hash>` |
//! | salted SHA-512 | `mosquitto_passwd -H sha512` (1.6 and older) | `$6$<base64 salt>$<base64 hash>` |
//! | SCRAM-SHA-256 | `fulmar passwd --scram` | `$scram-sha-256$i=<iterations>,s=<base64 salt>$<base64 StoredKey>:<base64 ServerKey>` |
//!
//! mosquitto's encodings (from its `mosquitto_passwd.c` / `password_mosq.c`): standard base64 with
//! padding; `$7$` is PBKDF2-HMAC-SHA512 of the password with a 12-byte salt, 64 output bytes;
//! `$6$` is SHA-512 over `password || salt`. The SCRAM format stores what RFC 5802 §3 calls the
//! server's credential: `StoredKey = H(HMAC(SaltedPassword, "Client Key"))` and
//! `ServerKey = HMAC(SaltedPassword, "Server Key")`, with `SaltedPassword = PBKDF2-HMAC-SHA256`.
//! It verifies plain passwords too (CONNECT with username and password), and it is the only
//! format that MQTT 5 SCRAM enhanced authentication can use.
//!
//! Every comparison of derived bytes is constant-time ([`subtle`]).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Iterations for new SCRAM credentials: RFC 7677 §4 asks for at least 4096.
pub const DEFAULT_SCRAM_ITERATIONS: u32 = 4096;
/// Salt length for new SCRAM credentials, in bytes.
const SCRAM_SALT_LEN: usize = 16;
/// Output length of mosquitto's `$6$` and `$7$` hashes (SHA-512), in bytes.
const MOSQUITTO_HASH_LEN: usize = 64;

/// The server side of a SCRAM-SHA-256 credential (RFC 5802 §3, RFC 7677).
///
/// Knowing it lets the server check a client's proof, but not impersonate the client.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    /// The salt given to the client in server-first-message.
    pub salt: Vec<u8>,
    /// The PBKDF2 iteration count given to the client in server-first-message.
    pub iterations: u32,
    /// `H(ClientKey)`: what the client's proof is checked against.
    pub stored_key: [u8; 32],
    /// `HMAC(SaltedPassword, "Server Key")`: signs server-final-message.
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramCredentials {
    /// Shows the parameters, not the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .finish_non_exhaustive()
    }
}

impl ScramCredentials {
    /// Derives the credential for `password` (ASCII or already-prepared UTF-8 bytes).
    #[must_use]
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let salted = salted_password(password, salt, iterations);
        let client_key = hmac_sha256(&salted, b"Client Key");
        Self {
            salt: salt.to_vec(),
            iterations,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    /// `true` if `password` yields this credential's StoredKey (constant-time comparison).
    #[must_use]
    pub fn verify(&self, password: &[u8]) -> bool {
        let candidate = Self::derive(password, &self.salt, self.iterations);
        bool::from(candidate.stored_key.ct_eq(&self.stored_key))
    }

    /// The password file form: `$scram-sha-256$i=<n>,s=<salt>$<StoredKey>:<ServerKey>`.
    #[must_use]
    pub fn to_phc(&self) -> String {
        format!(
            "$scram-sha-256$i={},s={}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

/// `SaltedPassword := Hi(Normalize(password), salt, i)` (RFC 5802 §3), Hi being PBKDF2-HMAC-SHA256.
pub(crate) fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations.max(1), &mut out);
    out
}

/// HMAC-SHA256(key, data).
pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// One stored password hash, parsed and validated at load time.
#[derive(Clone)]
pub(crate) enum StoredHash {
    /// An argon2id PHC string, kept as text (validated by parsing once at load).
    Argon2id(String),
    /// mosquitto `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2Sha512 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    /// mosquitto `$6$`: SHA-512(password || salt).
    Sha512 { salt: Vec<u8>, hash: Vec<u8> },
    /// `$scram-sha-256$`: a SCRAM credential.
    Scram(ScramCredentials),
}

impl StoredHash {
    /// Parses a stored hash; the error says what is wrong without quoting the hash.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("$argon2id$") {
            let phc =
                PasswordHash::new(text).map_err(|e| format!("malformed argon2id hash ({e})"))?;
            argon2::Params::try_from(&phc).map_err(|e| format!("bad argon2id parameters ({e})"))?;
            if phc.hash.is_none() {
                return Err("argon2id hash has no hash value".into());
            }
            Ok(Self::Argon2id(text.to_owned()))
        } else if text.starts_with("$argon2") {
            Err("only argon2id hashes are accepted, not argon2i or argon2d".into())
        } else if let Some(rest) = text.strip_prefix("$7$") {
            parse_pbkdf2(rest)
        } else if let Some(rest) = text.strip_prefix("$6$") {
            let (salt, hash) = rest
                .split_once('$')
                .ok_or("`$6$` hash needs `$<salt>$<hash>`")?;
            let salt = decode(salt, "salt")?;
            let hash = decode_len(hash, "hash", MOSQUITTO_HASH_LEN)?;
            Ok(Self::Sha512 { salt, hash })
        } else if let Some(rest) = text.strip_prefix("$scram-sha-256$") {
            parse_scram(rest).map(Self::Scram)
        } else if text.is_empty() {
            Err("empty password hash".into())
        } else {
            Err(
                "unknown password hash format (expected $argon2id$, $7$, $6$ or $scram-sha-256$; \
                 plain-text passwords are not accepted)"
                    .into(),
            )
        }
    }

    /// `true` if `password` matches. Comparisons of derived bytes are constant-time.
    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        match self {
            Self::Argon2id(phc) => match PasswordHash::new(phc) {
                // password-hash compares the outputs in constant time.
                Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
                Err(_) => false,
            },
            Self::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => {
                let mut out = [0u8; MOSQUITTO_HASH_LEN];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
                bool::from(out.as_slice().ct_eq(hash))
            }
            Self::Sha512 { salt, hash } => {
                let digest = Sha512::new()
                    .chain_update(password)
                    .chain_update(salt)
                    .finalize();
                bool::from(digest.as_slice().ct_eq(hash))
            }
            Self::Scram(creds) => creds.verify(password),
        }
    }
}

fn parse_pbkdf2(rest: &str) -> Result<StoredHash, String> {
    let mut parts = rest.splitn(3, '$');
    let (Some(iterations), Some(salt), Some(hash)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("`$7$` hash needs `$<iterations>$<salt>$<hash>`".into());
    };
    let iterations: u32 = iterations
        .parse()
        .map_err(|_| "`$7$` iteration count is not a number")?;
    if iterations == 0 {
        return Err("`$7$` iteration count must be at least 1".into());
    }
    let salt = decode(salt, "salt")?;
    let hash = decode_len(hash, "hash", MOSQUITTO_HASH_LEN)?;
    Ok(StoredHash::Pbkdf2Sha512 {
        iterations,
        salt,
        hash,
    })
}

fn parse_scram(rest: &str) -> Result<ScramCredentials, String> {
    let (params, keys) = rest
        .split_once('$')
        .ok_or("SCRAM hash needs `i=..,s=..$<StoredKey>:<ServerKey>`")?;
    let (mut iterations, mut salt) = (None, None);
    for param in params.split(',') {
        match param.split_once('=') {
            Some(("i", v)) => {
                iterations = Some(v.parse::<u32>().map_err(|_| "SCRAM `i=` is not a number")?)
            }
            Some(("s", v)) => salt = Some(decode(v, "SCRAM salt")?),
            _ => return Err("SCRAM parameters must be `i=<iterations>,s=<base64 salt>`".into()),
        }
    }
    let iterations = iterations
        .filter(|i| *i > 0)
        .ok_or("SCRAM hash needs `i=` of at least 1")?;
    let salt = salt.ok_or("SCRAM hash needs `s=<base64 salt>`")?;
    let (stored, server) = keys
        .split_once(':')
        .ok_or("SCRAM hash needs `<StoredKey>:<ServerKey>`")?;
    let key = |text: &str, what: &str| -> Result<[u8; 32], String> {
        let bytes = decode_len(text, what, 32)?;
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| format!("{what} must be 32 bytes"))
    };
    Ok(ScramCredentials {
        salt,
        iterations,
        stored_key: key(stored, "SCRAM StoredKey")?,
        server_key: key(server, "SCRAM ServerKey")?,
    })
}

fn decode(text: &str, what: &str) -> Result<Vec<u8>, String> {
    match B64.decode(text) {
        Ok(bytes) if !bytes.is_empty() => Ok(bytes),
        Ok(_) => Err(format!("{what} is empty")),
        Err(_) => Err(format!("{what} is not valid base64")),
    }
}

fn decode_len(text: &str, what: &str, len: usize) -> Result<Vec<u8>, String> {
    let bytes = decode(text, what)?;
    if bytes.len() == len {
        Ok(bytes)
    } else {
        Err(format!("{what} must be {len} bytes, found {}", bytes.len()))
    }
}

/// Hashes `password` as an argon2id PHC string with a random salt and the `argon2` crate's
/// default parameters (m=19456 KiB, t=2, p=1, OWASP's recommendation).
///
/// # Panics
///
/// Only for a password of 4 GiB or more, which argon2 cannot take.
#[must_use]
pub fn hash_password(password: &[u8]) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password, &salt)
        .expect("argon2id with default parameters hashes any password under 4 GiB")
        .to_string()
}

/// Makes a SCRAM-SHA-256 credential for `password` with a random 16-byte salt, in the password
/// file form `$scram-sha-256$i=<iterations>,s=<salt>$<StoredKey>:<ServerKey>`.
///
/// An `iterations` of 0 is taken as 1; RFC 7677 asks for at least 4096
/// ([`DEFAULT_SCRAM_ITERATIONS`]).
#[must_use]
pub fn hash_scram(password: &[u8], iterations: u32) -> String {
    let mut salt = [0u8; SCRAM_SALT_LEN];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    ScramCredentials::derive(password, &salt, iterations.max(1)).to_phc()
}
