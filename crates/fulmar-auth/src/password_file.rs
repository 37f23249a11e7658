//! The password file: `username:hash` lines, as mosquitto's `password_file`.
//!
//! ```text
//! # comments start with '#' and are kept by `fulmar passwd`
//! alice:$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$...
//! bob:$7$101$/WSBBeWkVJy91WBk$EZW2T2Fi...==
//! carol:$scram-sha-256$i=4096,s=W22ZaJ0SNY7soEsUEjb6gQ==$...:...
//! ```
//!
//! The username is everything before the first `:` (so a username cannot contain `:`), the hash
//! everything after it; see [`crate::hash`] for the accepted formats. A line is kept verbatim, so
//! rewriting a file ([`PasswordFile::to_text`]) changes only the lines of users that were set or
//! removed.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{read_text, syntax, AuthFileError};
use crate::hash::{ScramCredentials, StoredHash};

/// A parsed password file: users and their hashes, plus comments and order for rewriting it.
///
/// # Invariants
///
/// - `index` maps every username of an [`Line::Entry`] in `lines` to its position, and nothing else.
/// - Usernames are unique, non-empty, contain no `:` or line break and do not start with `#`.
#[derive(Clone, Default)]
pub struct PasswordFile {
    /// Every line of the file in order, so comments and order survive a rewrite.
    lines: Vec<Line>,
    /// Username → index into `lines`, for the per-CONNECT lookup.
    index: HashMap<String, usize>,
}

/// One line of the file.
#[derive(Clone)]
enum Line {
    /// A comment or blank line, kept as written.
    Other(String),
    /// A user entry: `raw` is the line as written (or as generated), `hash` its parsed hash.
    Entry {
        user: String,
        hash: StoredHash,
        raw: String,
    },
}

impl std::fmt::Debug for PasswordFile {
    /// Lists the users, never the hashes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordFile")
            .field("users", &self.users().collect::<Vec<_>>())
            .finish()
    }
}

impl PasswordFile {
    /// An empty password file (no users): what `fulmar passwd -c` starts from.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the text of a password file. `origin` (usually the path) labels errors, which
    /// name the 1-based line and what is wrong with it, never the hash.
    ///
    /// # Errors
    ///
    /// [`AuthFileError::Syntax`] for a line without `:`, an empty or duplicate username, or a hash
    /// in an unknown or malformed format.
    pub fn parse(text: &str, origin: &str) -> Result<Self, AuthFileError> {
        let mut file = Self::new();
        for (number, line) in text.lines().enumerate() {
            let number = number + 1;
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                file.lines.push(Line::Other(line.to_owned()));
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(syntax(
                    origin,
                    number,
                    "expected `username:hash`, found no `:`",
                ));
            };
            if user.is_empty() {
                return Err(syntax(origin, number, "empty username"));
            }
            let hash = StoredHash::parse(hash.trim_end())
                .map_err(|message| syntax(origin, number, format!("user {user:?}: {message}")))?;
            if let Some(&previous) = file.index.get(user) {
                let first = file.line_number(previous);
                return Err(syntax(
                    origin,
                    number,
                    format!("user {user:?} already defined on line {first}"),
                ));
            }
            file.index.insert(user.to_owned(), file.lines.len());
            file.lines.push(Line::Entry {
                user: user.to_owned(),
                hash,
                raw: line.to_owned(),
            });
        }
        Ok(file)
    }

    /// Reads and parses the password file at `path`.
    ///
    /// # Errors
    ///
    /// [`AuthFileError::Io`] if the file cannot be read, otherwise as [`PasswordFile::parse`].
    pub fn load(path: &Path) -> Result<Self, AuthFileError> {
        let (text, origin) = read_text(path)?;
        Self::parse(&text, &origin)
    }

    /// `true` if `user` exists and `password` matches its hash.
    ///
    /// The hash comparison is constant-time, and an unknown user costs as much as a known one:
    /// the password is checked against the first user's hash (same format and parameters) and
    /// the result thrown away, so response time does not reveal which users exist. (With users
    /// of several formats, timing can still tell the formats apart; an empty file does no work.)
    ///
    /// Slow by design (argon2id: tens of milliseconds): call it off the async runtime.
    #[must_use]
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.entry(user) {
            Some(hash) => hash.verify(password),
            None => {
                if let Some(dummy) = self.first_hash() {
                    // Same work as a real user; the result must not matter.
                    std::hint::black_box(dummy.verify(password));
                }
                false
            }
        }
    }

    /// The SCRAM-SHA-256 credential of `user`, if the user exists and is stored in the SCRAM
    /// format (other formats cannot serve SCRAM: they do not hold the SCRAM keys).
    #[must_use]
    pub fn scram_credentials(&self, user: &str) -> Option<ScramCredentials> {
        match self.entry(user)? {
            StoredHash::Scram(creds) => Some(creds.clone()),
            _ => None,
        }
    }

    /// `true` if the file has an entry for `user`.
    #[must_use]
    pub fn contains(&self, user: &str) -> bool {
        self.index.contains_key(user)
    }

    /// The usernames in file order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|line| match line {
            Line::Entry { user, .. } => Some(user.as_str()),
            Line::Other(_) => None,
        })
    }

    /// Number of users.
    #[must_use]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// `true` if the file has no users.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Sets `user`'s hash (a string from [`crate::hash_password`], [`crate::hash_scram`] or any
    /// accepted format): replaces the user's line in place, or appends a line for a new user.
    ///
    /// # Errors
    ///
    /// A message if the username cannot be stored (empty, contains `:` or a line break, starts
    /// with `#` or whitespace-only) or the hash is not in an accepted format.
    pub fn set(&mut self, user: &str, hash: &str) -> Result<(), String> {
        check_username(user)?;
        let parsed = StoredHash::parse(hash)?;
        let entry = Line::Entry {
            user: user.to_owned(),
            hash: parsed,
            raw: format!("{user}:{hash}"),
        };
        match self.index.get(user) {
            Some(&at) => self.lines[at] = entry,
            None => {
                self.index.insert(user.to_owned(), self.lines.len());
                self.lines.push(entry);
            }
        }
        Ok(())
    }

    /// Removes `user`; `false` if there was no such user.
    pub fn remove(&mut self, user: &str) -> bool {
        let Some(at) = self.index.remove(user) else {
            return false;
        };
        self.lines.remove(at);
        for position in self.index.values_mut() {
            if *position > at {
                *position -= 1;
            }
        }
        true
    }

    /// The file's text: every line as read (comments, blank lines, untouched entries verbatim)
    /// or as set, in order, each ending in `\n`.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Other(text) | Line::Entry { raw: text, .. } => out.push_str(text),
            }
            out.push('\n');
        }
        out
    }

    fn entry(&self, user: &str) -> Option<&StoredHash> {
        match self.lines.get(*self.index.get(user)?)? {
            Line::Entry { hash, .. } => Some(hash),
            Line::Other(_) => None,
        }
    }

    fn first_hash(&self) -> Option<&StoredHash> {
        self.lines.iter().find_map(|line| match line {
            Line::Entry { hash, .. } => Some(hash),
            Line::Other(_) => None,
        })
    }

    fn line_number(&self, index: usize) -> usize {
        index + 1
    }
}

/// Checks that `user` can be written as the username of a password file line.
///
/// # Errors
///
/// A message saying why not.
pub fn check_username(user: &str) -> Result<(), String> {
    if user.trim().is_empty() {
        Err("the username is empty".into())
    } else if user.contains(':') {
        Err("a username in a password file cannot contain ':'".into())
    } else if user.contains(['\n', '\r']) {
        Err("a username cannot contain a line break".into())
    } else if user.trim_start().starts_with('#') {
        Err("a username cannot start with '#' (the line would be a comment)".into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
#[path = "password_file_tests.rs"]
mod tests;
