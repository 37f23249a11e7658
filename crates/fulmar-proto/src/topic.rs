//! Validated topic names and topic filters (MQTT 5.0 section 4.7, 3.1.1 section 4.7) and a naive
//! matcher.
//!
//! Both newtypes are backed by [`Bytes`], so a topic decoded from a read buffer is a slice of it
//! (no copy) and cloning one is a reference-count increment.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};

use bytes::Bytes;

/// The longest topic name or filter: it is a UTF-8 string with a two-byte length [MQTT-1.5.4].
pub const MAX_TOPIC_LEN: usize = 65_535;

/// Why a string is not a valid topic name or topic filter.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TopicError {
    /// Topic names and filters are at least one character long [MQTT-4.7.3-1].
    #[error("topic is empty")]
    Empty,
    /// Longer than [`MAX_TOPIC_LEN`] bytes [MQTT-4.7.3-3].
    #[error("topic is longer than 65535 bytes")]
    TooLong,
    /// Not well-formed UTF-8, or an encoded surrogate (U+D800..U+DFFF) [MQTT-1.5.4-1].
    #[error("topic is not valid UTF-8")]
    InvalidUtf8,
    /// Contains U+0000 [MQTT-1.5.4-2] [MQTT-4.7.3-2].
    #[error("topic contains U+0000")]
    NullCharacter,
    /// A topic name contains `+` or `#` [MQTT-3.3.2-2].
    #[error("topic name contains a wildcard character")]
    WildcardInName,
    /// `+` not alone in its level, or `#` not alone in the last level [MQTT-4.7.1-1..3].
    #[error("wildcard must occupy a whole level and '#' must be the last level")]
    InvalidWildcard,
    /// `$share/` without a non-empty, wildcard-free group and a filter [MQTT-4.8.2-1] [MQTT-4.8.2-2].
    #[error("invalid shared subscription, expected $share/{{group}}/{{filter}}")]
    InvalidSharedSubscription,
}

/// Checks the MQTT rules for a UTF-8 string (well-formed, no surrogates, no U+0000) and returns it.
pub(crate) fn check_utf8(bytes: &[u8]) -> Result<&str, TopicError> {
    // `from_utf8` rejects overlong forms and the encoded surrogates ED A0..ED BF [MQTT-1.5.4-1].
    let s = std::str::from_utf8(bytes).map_err(|_| TopicError::InvalidUtf8)?;
    if bytes.contains(&0) {
        return Err(TopicError::NullCharacter); // [MQTT-1.5.4-2]
    }
    Ok(s)
}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty); // [MQTT-4.7.3-1]
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    if s.as_bytes().contains(&0) {
        return Err(TopicError::NullCharacter); // [MQTT-4.7.3-2]
    }
    Ok(())
}

/// The topic-name rules, in one pass over the bytes: every PUBLISH's topic goes through here.
fn check_name(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty); // [MQTT-4.7.3-1]
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    // U+0000, `+` and `#` are single bytes below 0x80, which never occur inside a multi-byte
    // UTF-8 sequence, so a byte scan finds exactly these characters.
    let (mut null, mut wildcard) = (false, false);
    for &b in s.as_bytes() {
        null |= b == 0;
        wildcard |= b == b'+' || b == b'#';
    }
    if null {
        return Err(TopicError::NullCharacter); // [MQTT-4.7.3-2]
    }
    if wildcard {
        return Err(TopicError::WildcardInName); // [MQTT-3.3.2-2]
    }
    Ok(())
}

/// True for a valid topic name made of ASCII only, found in one pass over the bytes: every
/// PUBLISH's topic goes through here, and ASCII is valid UTF-8 without a separate validation.
/// False for anything else, valid or not: [`check_name`] after `from_utf8` then decides.
fn is_plain_ascii_name(bytes: &[u8]) -> bool {
    // [MQTT-4.7.3-1] non-empty, [MQTT-4.7.3-3] at most 65,535 bytes.
    if bytes.is_empty() || bytes.len() > MAX_TOPIC_LEN {
        return false;
    }
    // Eight bytes at a time; a short name is padded with a harmless byte, and the last word of
    // a longer one overlaps the word before it, so every byte is in some word.
    let mut chunks = bytes.chunks_exact(8);
    let ok = chunks.by_ref().all(plain_ascii_word);
    if chunks.remainder().is_empty() {
        return ok;
    }
    match bytes.len().checked_sub(8) {
        Some(start) => ok && plain_ascii_word(&bytes[start..]),
        None => {
            let mut padded = [b'a'; 8];
            padded[..bytes.len()].copy_from_slice(bytes);
            plain_ascii_word(&padded)
        }
    }
}

/// Whether eight bytes are ASCII without U+0000 [MQTT-4.7.3-2] and without a wildcard
/// [MQTT-3.3.2-2].
fn plain_ascii_word(word: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    // Non-zero exactly when some byte of `x` is zero (the carry can only flag a byte above
    // a zero one, never make the whole test true without one).
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    let mut x = [0u8; 8];
    x.copy_from_slice(word);
    let x = u64::from_le_bytes(x);
    x & HIGH == 0
        && !has_zero(x)
        && !has_zero(x ^ (ONES * u64::from(b'+')))
        && !has_zero(x ^ (ONES * u64::from(b'#')))
}

fn check_filter(s: &str) -> Result<(), TopicError> {
    check_common(s)?;
    let mut levels = s.split('/').peekable();
    while let Some(level) = levels.next() {
        // [MQTT-4.7.1-1] '#' alone in the last level; [MQTT-4.7.1-2] '+' alone in its level.
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::InvalidWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::InvalidWildcard);
        }
    }
    if let Some(rest) = s.strip_prefix(SHARE_PREFIX) {
        split_shared(rest)?;
    }
    Ok(())
}

const SHARE_PREFIX: &str = "$share/";

/// Splits `{group}/{filter}` (the part after `$share/`).
fn split_shared(rest: &str) -> Result<(&str, &str), TopicError> {
    let (group, filter) = rest
        .split_once('/')
        .ok_or(TopicError::InvalidSharedSubscription)?;
    // [MQTT-4.8.2-1] the group is non-empty and [MQTT-4.8.2-2] holds no wildcard.
    if group.is_empty() || group.contains(['+', '#']) || filter.is_empty() {
        return Err(TopicError::InvalidSharedSubscription);
    }
    Ok((group, filter))
}

macro_rules! topic_newtype_common {
    ($ty:ident) => {
        impl $ty {
            /// The topic as a string slice.
            pub fn as_str(&self) -> &str {
                debug_assert!(std::str::from_utf8(&self.0).is_ok());
                // SAFETY: every constructor checks that the bytes are UTF-8 (see # Invariants),
                // and `Bytes` is immutable.
                unsafe { std::str::from_utf8_unchecked(&self.0) }
            }

            /// The topic's bytes, a cheap clone of the backing buffer.
            pub fn as_bytes(&self) -> &Bytes {
                &self.0
            }

            /// The backing buffer.
            pub fn into_bytes(self) -> Bytes {
                self.0
            }

            /// Length in bytes.
            pub fn len(&self) -> usize {
                self.0.len()
            }

            /// True only for [`TopicName::empty`] (a filter is never empty).
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($ty))
                    .field(&self.as_str())
                    .finish()
            }
        }

        // Hash as a `str` so that `Borrow<str>` is sound for hash maps keyed by topic.
        impl Hash for $ty {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.as_str().hash(state);
            }
        }

        impl Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl std::str::FromStr for $ty {
            type Err = TopicError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = TopicError;

            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }
    };
}

/// A topic name, as published to: non-empty, valid MQTT UTF-8, no wildcards.
///
/// # Invariants
/// The bytes are UTF-8 without U+0000, at most [`MAX_TOPIC_LEN`] long and without `+` or `#`; they
/// are non-empty except for [`TopicName::empty`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TopicName(Bytes);

impl TopicName {
    /// Validates and wraps a topic name.
    pub fn new(name: impl Into<String>) -> Result<Self, TopicError> {
        let name = name.into();
        check_name(&name)?;
        Ok(Self(Bytes::from(name)))
    }

    /// Validates raw bytes (UTF-8 included) and wraps them without copying.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, TopicError> {
        if !is_plain_ascii_name(&bytes) {
            // `check_name` also rejects U+0000 [MQTT-1.5.4-2], so `check_utf8` would only
            // repeat it.
            let name = std::str::from_utf8(&bytes).map_err(|_| TopicError::InvalidUtf8)?;
            check_name(name)?;
        }
        Ok(Self(bytes))
    }

    /// The same name in an allocation of its own: a decoded name is a slice of the read
    /// buffer it arrived in, and keeps all of that buffer alive as long as it lives.
    pub fn detached(&self) -> Self {
        Self(Bytes::copy_from_slice(&self.0))
    }

    /// The empty topic name: only valid in an MQTT 5.0 PUBLISH that carries a Topic Alias, which
    /// the session resolves to the real name (MQTT 5.0 section 3.3.2.3.4).
    pub const fn empty() -> Self {
        Self(Bytes::new())
    }
}

topic_newtype_common!(TopicName);

/// A topic filter, as subscribed to: non-empty, valid MQTT UTF-8, wildcards only as whole levels,
/// and `$share/{group}/{filter}` well formed.
///
/// # Invariants
/// The bytes satisfy the rules above (checked by every constructor).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TopicFilter(Bytes);

impl TopicFilter {
    /// Validates and wraps a topic filter.
    pub fn new(filter: impl Into<String>) -> Result<Self, TopicError> {
        let filter = filter.into();
        check_filter(&filter)?;
        Ok(Self(Bytes::from(filter)))
    }

    /// Validates raw bytes (UTF-8 included) and wraps them without copying.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, TopicError> {
        check_filter(check_utf8(&bytes)?)?;
        Ok(Self(bytes))
    }

    /// For `$share/{group}/{filter}`, the group and the filter; `None` for a plain filter.
    pub fn shared(&self) -> Option<(&str, &str)> {
        let rest = self.as_str().strip_prefix(SHARE_PREFIX)?;
        split_shared(rest).ok()
    }

    /// True if the filter (without any `$share/{group}/` prefix) contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        let filter = self.shared().map_or(self.as_str(), |(_, f)| f);
        filter.contains(['+', '#'])
    }
}

topic_newtype_common!(TopicFilter);

/// Naive reference matcher: does `filter` match `topic`?
///
/// `+` matches one level, `#` the parent level and any number of children [MQTT-4.7.1-2], and a
/// filter starting with a wildcard never matches a topic starting with `$` [MQTT-4.7.2-1].
/// `$share/` prefixes are not interpreted: pass the filter part of a shared subscription.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(TopicName::new("a/b").is_ok());
        assert!(TopicName::new("/").is_ok());
        assert_eq!(TopicName::new(""), Err(TopicError::Empty));
        assert_eq!(TopicName::new("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::new("a#"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::new("a\0"), Err(TopicError::NullCharacter));
        assert_eq!(
            TopicName::from_bytes(Bytes::from_static(b"\xED\xA0\x80")),
            Err(TopicError::InvalidUtf8)
        );
        assert_eq!(TopicName::new("x".repeat(65_536)), Err(TopicError::TooLong));
        assert!(TopicName::empty().is_empty());
    }

    #[test]
    fn decoded_names_get_the_same_verdict_as_the_full_check() {
        let long = "x".repeat(65_536);
        let inputs: [&[u8]; 18] = [
            b"a/b",
            b"sensors/room/1",
            b"sensors/room/+",
            b"sensors+room/1",
            b"sensors/\0oom/temperature",
            b"sensors/room/temp\xC3\xA9",
            b"12345678",
            b"",
            b"a/+",
            b"#",
            b"a\0b",
            b"\x7f/~",
            "caf\u{e9}/\u{fc}".as_bytes(),
            b"\xED\xA0\x80",
            b"\xC0\xAF",
            b"\xFF",
            "\u{e9}+".as_bytes(),
            long.as_bytes(),
        ];
        for raw in inputs {
            let full = std::str::from_utf8(raw)
                .map_err(|_| TopicError::InvalidUtf8)
                .and_then(check_name);
            let decoded = TopicName::from_bytes(Bytes::copy_from_slice(raw)).map(|_| ());
            assert_eq!(decoded, full, "{raw:?}");
        }
        // Every byte value at every position of names from 1 to 17 bytes (word, tail, padding).
        for len in 1..=17 {
            for at in 0..len {
                for byte in 0..=u8::MAX {
                    let mut raw = vec![b'x'; len];
                    raw[at] = byte;
                    let full = std::str::from_utf8(&raw)
                        .map_err(|_| TopicError::InvalidUtf8)
                        .and_then(check_name);
                    let decoded = TopicName::from_bytes(Bytes::from(raw.clone())).map(|_| ());
                    assert_eq!(decoded, full, "{raw:?}");
                }
            }
        }
    }

    #[test]
    fn filters() {
        for ok in [
            "#",
            "+",
            "a/#",
            "+/+",
            "a/+/b",
            "/",
            "$share/g/a/#",
            "$SYS/#",
            "$share",
        ] {
            assert!(TopicFilter::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/#/b", "a#", "a/b+", "#/", "++", "$share/#/a"] {
            assert!(TopicFilter::new(bad).is_err(), "{bad}");
        }
        for bad in [
            "$share/",
            "$share//a",
            "$share/g",
            "$share/g/",
            "$share/+/a",
        ] {
            assert_eq!(
                TopicFilter::new(bad),
                Err(TopicError::InvalidSharedSubscription),
                "{bad}"
            );
        }
        let f = TopicFilter::new("$share/grp/a/+").unwrap();
        assert_eq!(f.shared(), Some(("grp", "a/+")));
        assert!(f.has_wildcards());
        assert_eq!(TopicFilter::new("a/b").unwrap().shared(), None);
    }

    #[test]
    fn matcher() {
        assert!(topic_matches("a/#", "a"));
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(topic_matches("#", "a/b"));
        assert!(topic_matches("+/+", "/"));
        assert!(topic_matches("a/+", "a/"));
        assert!(!topic_matches("a/+", "a/b/c"));
        assert!(!topic_matches("a/b", "a"));
        assert!(!topic_matches("#", "$SYS/x")); // [MQTT-4.7.2-1]
        assert!(!topic_matches("+/x", "$SYS/x"));
        assert!(topic_matches("$SYS/#", "$SYS/x"));
    }
}
