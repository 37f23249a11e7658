//! Access control lists in mosquitto's `acl_file` format.
//!
//! ```text
//! # Rules before any `user` line apply to clients that connect without a username.
//! topic read $SYS/#
//!
//! # Rules after `user NAME` apply to that user, up to the next `user` line.
//! user alice
//! topic readwrite sensors/#
//! topic deny sensors/secret/#
//!
//! # `pattern` rules apply to every client, wherever they appear; %u is the username,
//! # %c the client id.
//! pattern write sensors/%u/data
//! pattern read devices/%c/#
//! ```
//!
//! `topic|pattern [read|write|readwrite|deny] FILTER`: the access defaults to `readwrite`; the
//! filter is the rest of the line (it may contain spaces, as in mosquitto) and may use `+` and `#`.
//! `#` starts a comment only at the start of a line. Unknown keywords are errors rather than
//! silently ignored lines (mosquitto ignores them), so a typo cannot quietly drop a `deny`.
//!
//! # Decisions
//!
//! - Deny by default: with an ACL in force, anything no rule allows is refused.
//! - A matching `deny` rule wins over any allow, whatever the order of the lines.
//! - [`Access::Write`] (PUBLISH) and [`Access::Read`] (delivering one message) are checked against
//!   the concrete topic name. So a subscription to `#` never delivers a topic the client may not
//!   read: every message is checked on its way out.
//! - [`Access::Subscribe`] is checked against the read rules, as mosquitto does, but with the
//!   subscription *filter*: allowed if some read rule matches every topic the filter can match
//!   (`topic read a/#` allows subscribing to `a/+/c`, `topic read a/+` does not allow `a/#`),
//!   and refused if some deny rule does (subscribing to a filter that can deliver nothing). A
//!   subscription that is partly readable (`#` with `topic read a/#`) is refused; one that is
//!   readable but overlaps a deny rule (`#` with `topic read #` and `topic deny secret/#`) is
//!   allowed, and the delivery check keeps the denied topics out. `$share/{group}/` is removed
//!   before the check.
//! - As in mosquitto, a client whose username or client id contains `+`, `#` or `/` is refused
//!   everything when a `pattern` rule would substitute that value: otherwise a client could pick
//!   an id like `#` to widen its own pattern.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{read_text, syntax, AuthFileError};
use crate::rule::{RuleFilter, Subst};

/// What a client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Receive one message published to a concrete topic (checked at delivery).
    Read,
    /// Publish to a concrete topic.
    Write,
    /// Subscribe to a topic filter (checked against the read rules).
    Subscribe,
}

/// Who is asking: the authenticated username (if any) and the client id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIdentity<'a> {
    /// The authenticated username; `None` for an anonymous client.
    pub username: Option<&'a str>,
    /// The client identifier from CONNECT (or assigned by the server).
    pub client_id: &'a str,
}

/// A parsed ACL file; see the module documentation for the format and the rules of the check.
///
/// # Invariants
///
/// - `patterns_use_user` / `patterns_use_client` are true exactly when some pattern uses `%u` /
///   `%c`.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    /// Rules before the first `user` line: for clients without a username.
    anonymous: RuleSet,
    /// Rules per username, split at load so a check looks only at the client's own rules.
    users: HashMap<String, RuleSet>,
    /// `pattern` rules, for every client.
    patterns: RuleSet,
    /// Some pattern substitutes the username.
    patterns_use_user: bool,
    /// Some pattern substitutes the client id.
    patterns_use_client: bool,
}

/// The name the issue and mosquitto use for the same thing.
pub type AclFile = Acl;

/// Rules of one scope, deny rules apart so that they can be checked first.
#[derive(Debug, Clone, Default)]
struct RuleSet {
    deny: Vec<Rule>,
    allow: Vec<Rule>,
}

/// One `topic` or `pattern` line.
#[derive(Debug, Clone)]
struct Rule {
    filter: RuleFilter,
    read: bool,
    write: bool,
}

/// The access keyword of a rule.
#[derive(Clone, Copy)]
enum Grant {
    Allow { read: bool, write: bool },
    Deny,
}

impl Acl {
    /// Parses the text of an ACL file; `origin` (usually the path) labels errors, which name the
    /// 1-based line and what is wrong with it.
    ///
    /// # Errors
    ///
    /// [`AuthFileError::Syntax`] for an unknown keyword, a `user` line without a name, an unknown
    /// access type, or an invalid topic filter.
    pub fn parse(text: &str, origin: &str) -> Result<Self, AuthFileError> {
        let mut acl = Self::default();
        let mut current_user: Option<String> = None;
        for (number, line) in text.lines().enumerate() {
            let number = number + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            match keyword {
                "user" if rest.is_empty() => {
                    return Err(syntax(origin, number, "`user` needs a username"))
                }
                "user" => current_user = Some(rest.to_owned()),
                "topic" | "pattern" => {
                    let pattern = keyword == "pattern";
                    let (grant, filter) =
                        parse_access(rest).map_err(|m| syntax(origin, number, m))?;
                    let filter = RuleFilter::compile(filter, pattern)
                        .map_err(|m| syntax(origin, number, m))?;
                    let set = if pattern {
                        acl.patterns_use_user |= filter.uses_user;
                        acl.patterns_use_client |= filter.uses_client;
                        &mut acl.patterns
                    } else {
                        match &current_user {
                            Some(user) => acl.users.entry(user.clone()).or_default(),
                            None => &mut acl.anonymous,
                        }
                    };
                    match grant {
                        Grant::Deny => set.deny.push(Rule {
                            filter,
                            read: false,
                            write: false,
                        }),
                        Grant::Allow { read, write } => set.allow.push(Rule {
                            filter,
                            read,
                            write,
                        }),
                    }
                }
                other => {
                    return Err(syntax(
                        origin,
                        number,
                        format!(
                            "unknown keyword {other:?} (expected `user`, `topic` or `pattern`)"
                        ),
                    ));
                }
            }
        }
        Ok(acl)
    }

    /// Reads and parses the ACL file at `path`.
    ///
    /// # Errors
    ///
    /// [`AuthFileError::Io`] if the file cannot be read, otherwise as [`Acl::parse`].
    pub fn load(path: &Path) -> Result<Self, AuthFileError> {
        let (text, origin) = read_text(path)?;
        Self::parse(&text, &origin)
    }

    /// `true` if `client` may have `access` to `topic_or_filter` (a topic name for
    /// [`Access::Read`] and [`Access::Write`], a subscription filter for [`Access::Subscribe`]).
    /// Deny by default; see the module documentation for the rules.
    ///
    /// Cost: the client's own rules plus the patterns, each matched level by level without
    /// allocating; placeholders are substituted during the match.
    #[must_use]
    pub fn check(
        &self,
        client: &ClientIdentity<'_>,
        access: Access,
        topic_or_filter: &str,
    ) -> bool {
        let target = match access {
            Access::Subscribe => {
                fulmar_router::split_shared(topic_or_filter).map_or(topic_or_filter, |(_, f)| f)
            }
            Access::Read | Access::Write => topic_or_filter,
        };
        let dangerous = |value: &str| value.contains(['+', '#', '/']);
        if (self.patterns_use_user && client.username.is_some_and(dangerous))
            || (self.patterns_use_client && dangerous(client.client_id))
        {
            return false;
        }
        let subst = Subst {
            user: client.username,
            client: client.client_id,
        };
        let own = match client.username {
            Some(user) => self.users.get(user),
            None => Some(&self.anonymous),
        };
        let sets = || own.into_iter().chain(std::iter::once(&self.patterns));
        let applies = |rule: &Rule| {
            if rule.filter.uses_user && subst.user.is_none() {
                return false;
            }
            match access {
                Access::Subscribe => rule.filter.covers(subst, target),
                Access::Read | Access::Write => rule.filter.matches(subst, target),
            }
        };
        if sets().any(|set| set.deny.iter().any(applies)) {
            return false;
        }
        sets().any(|set| {
            set.allow.iter().any(|rule| {
                let granted = match access {
                    Access::Read | Access::Subscribe => rule.read,
                    Access::Write => rule.write,
                };
                granted && applies(rule)
            })
        })
    }
}

/// Splits `[read|write|readwrite|deny] FILTER` into the grant and the filter.
fn parse_access(rest: &str) -> Result<(Grant, &str), String> {
    if rest.is_empty() {
        return Err("missing topic filter".into());
    }
    let (word, filter) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let filter = filter.trim();
    let grant = match word {
        "read" => Grant::Allow {
            read: true,
            write: false,
        },
        "write" => Grant::Allow {
            read: false,
            write: true,
        },
        "readwrite" => Grant::Allow {
            read: true,
            write: true,
        },
        "deny" => Grant::Deny,
        // One word only: it is the filter, with the default access (mosquitto does the same).
        _ if filter.is_empty() => {
            return Ok((
                Grant::Allow {
                    read: true,
                    write: true,
                },
                rest,
            ))
        }
        other => {
            return Err(format!(
                "unknown access {other:?} (expected read, write, readwrite or deny)"
            ));
        }
    };
    if filter.is_empty() {
        return Err(format!("missing topic filter after `{word}`"));
    }
    Ok((grant, filter))
}

#[cfg(test)]
#[path = "acl_tests.rs"]
mod tests;
