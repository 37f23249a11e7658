//! The error of loading an authentication or authorisation file.

use std::path::Path;

/// A password file or ACL file that cannot be used.
///
/// Every message names the file (`origin`) and, for content errors, the 1-based line, so an
/// operator can fix the file; no message ever contains a password hash or a password.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("{origin}: cannot read: {source}")]
    Io {
        /// The file's path as given.
        origin: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A line of the file is malformed.
    #[error("{origin}:{line}: {message}")]
    Syntax {
        /// The file's path (or another label, e.g. `<stdin>`).
        origin: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line; never contains secret material.
        message: String,
    },
}

impl AuthFileError {
    /// The line at fault, if the error is about a line.
    #[must_use]
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Io { .. } => None,
            Self::Syntax { line, .. } => Some(*line),
        }
    }
}

/// Reads `path` as UTF-8 text, naming the file on failure.
pub(crate) fn read_text(path: &Path) -> Result<(String, String), AuthFileError> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((text, origin)),
        Err(source) => Err(AuthFileError::Io { origin, source }),
    }
}

/// An [`AuthFileError::Syntax`] for line `line` of `origin`.
pub(crate) fn syntax(origin: &str, line: usize, message: impl Into<String>) -> AuthFileError {
    AuthFileError::Syntax {
        origin: origin.to_owned(),
        line,
        message: message.into(),
    }
}
