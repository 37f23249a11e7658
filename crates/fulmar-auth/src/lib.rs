//! Authentication and authorisation for the Fulmar MQTT broker, as plain data and functions.
//!
//! Nothing here touches a socket or the runtime; the only IO is reading a file in the `load`
//! functions. The server decides when to call what: [`PasswordFile::verify`] on CONNECT (slow
//! by design, so off the async runtime), [`ScramServer`] for MQTT 5 enhanced authentication,
//! [`Acl::check`] on SUBSCRIBE, PUBLISH and every delivery.
//!
//! # Module map
//!
//! - [`password_file`]: [`PasswordFile`], the `username:hash` file (mosquitto's
//!   `password_file`); kept line by line so `fulmar passwd` can rewrite it.
//! - [`hash`]: the hash formats (argon2id PHC, mosquitto's `$7$` PBKDF2-SHA512 and `$6$`
//!   SHA-512, SCRAM-SHA-256 credentials) and [`hash_password`] / [`hash_scram`] to make new ones.
//! - [`scram`]: [`ScramServer`], the server side of a SCRAM-SHA-256 exchange.
//! - [`acl`]: [`Acl`], mosquitto's `acl_file` format and the access check.
//! - `rule`: one ACL rule's filter compiled to levels: topic matching and filter covering
//!   ([`filter_covers`]), with `%u` / `%c` substituted during the match.
//! - [`error`]: [`AuthFileError`], which names the file and line.
//!
//! Design notes and the file formats for operators: `docs/security.md`.

#![warn(missing_docs)]

pub mod acl;
pub mod error;
pub mod hash;
pub mod password_file;
mod rule;
pub mod scram;

pub use acl::{Access, Acl, AclFile, ClientIdentity};
pub use error::AuthFileError;
pub use hash::{hash_password, hash_scram, ScramCredentials, DEFAULT_SCRAM_ITERATIONS};
pub use password_file::{check_username, PasswordFile};
pub use rule::filter_covers;
pub use scram::{generate_nonce, ScramError, ScramServer, SCRAM_SHA_256};
