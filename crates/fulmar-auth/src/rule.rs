//! One ACL rule's topic filter, compiled to levels: matching a topic and covering a filter.
//!
//! A rule filter is an MQTT topic filter (§4.7) whose levels may contain mosquitto's `%u`
//! (username) and `%c` (client id) placeholders. They are substituted level by level while
//! matching, so a check allocates nothing. Substituted values are literal text: the ACL refuses
//! usernames and client ids containing `+`, `#` or `/` before a placeholder is ever filled in
//! (see [`crate::acl`]), so a value can neither span levels nor act as a wildcard.
//!
//! - [`RuleFilter::matches`]: does the rule apply to a concrete topic (PUBLISH, delivery)?
//! - [`RuleFilter::covers`]: does the rule apply to *every* topic a subscription filter can
//!   match (SUBSCRIBE)? For `+`/`#` in the subscription this is containment of filters, not
//!   overlap: `a/+` covers `a/b` and `a/+`, but not `a/#` (which also matches `a`) nor `+/b`.

/// The identity placeholders are filled from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subst<'a> {
    /// Fills `%u`; a rule using `%u` never applies to a client without a username.
    pub(crate) user: Option<&'a str>,
    /// Fills `%c`.
    pub(crate) client: &'a str,
}

/// A piece of a level that has placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Box<str>),
    User,
    Client,
}

/// One level of a rule filter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    /// `+`: any one level (§4.7.1.3).
    Plus,
    /// `#`: this level and all below, and the parent (§4.7.1.2). Always the last level.
    Hash,
    /// A level without placeholders.
    Literal(Box<str>),
    /// A level with at least one `%u` or `%c`.
    Template(Box<[Piece]>),
}

/// A compiled rule filter.
///
/// # Invariants
///
/// - At least one level; `Hash` only as the last level.
/// - `Template` levels occur only when compiled with placeholders enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleFilter {
    levels: Box<[Level]>,
    /// Uses `%u` somewhere.
    pub(crate) uses_user: bool,
    /// Uses `%c` somewhere.
    pub(crate) uses_client: bool,
}

impl RuleFilter {
    /// Compiles `filter`; with `placeholders`, `%u` and `%c` are recognised (mosquitto's
    /// `pattern` lines), otherwise they are literal text (`topic` lines).
    ///
    /// # Errors
    ///
    /// A message if `filter` is not a valid topic filter (empty, `#` not alone as the last
    /// level, `+` not alone in its level, NUL character).
    pub(crate) fn compile(filter: &str, placeholders: bool) -> Result<Self, String> {
        if filter.is_empty() {
            return Err("empty topic filter".into());
        }
        if filter.contains('\0') {
            return Err("topic filter contains NUL".into());
        }
        let count = filter.split('/').count();
        let mut levels = Vec::with_capacity(count);
        let (mut uses_user, mut uses_client) = (false, false);
        for (i, text) in filter.split('/').enumerate() {
            let level = match text {
                "#" if i + 1 == count => Level::Hash,
                "#" => return Err("`#` must be the last level of a topic filter".into()),
                "+" => Level::Plus,
                t if t.contains(['+', '#']) => {
                    return Err(format!("`+` and `#` must fill a whole level, found {t:?}"));
                }
                t if placeholders && (t.contains("%u") || t.contains("%c")) => {
                    let pieces = split_placeholders(t);
                    uses_user |= pieces.contains(&Piece::User);
                    uses_client |= pieces.contains(&Piece::Client);
                    Level::Template(pieces.into())
                }
                t => Level::Literal(t.into()),
            };
            levels.push(level);
        }
        Ok(Self {
            levels: levels.into(),
            uses_user,
            uses_client,
        })
    }

    /// `true` if the rule matches the topic name `topic` (MQTT matching, incl. the `$` rule).
    pub(crate) fn matches(&self, subst: Subst<'_>, topic: &str) -> bool {
        // [MQTT-4.7.2-1] a wildcard first level does not match a topic starting with `$`.
        if topic.starts_with('$') && matches!(self.levels.first(), Some(Level::Plus | Level::Hash))
        {
            return false;
        }
        let mut topic_levels = topic.split('/');
        for level in &*self.levels {
            match (level, topic_levels.next()) {
                (Level::Hash, _) => return true,
                (Level::Plus, Some(_)) => {}
                (_, Some(text)) if level_eq(level, subst, text) => {}
                _ => return false,
            }
        }
        topic_levels.next().is_none()
    }

    /// `true` if every topic that the subscription filter `filter` matches is matched by the
    /// rule. `filter` must be a valid topic filter (the caller validated it).
    pub(crate) fn covers(&self, subst: Subst<'_>, filter: &str) -> bool {
        // A literal `$` first level: the subscription only gets `$` topics, which a wildcard
        // first level in the rule never matches [MQTT-4.7.2-1].
        if filter.starts_with('$') && matches!(self.levels.first(), Some(Level::Plus | Level::Hash))
        {
            return false;
        }
        // A lone `#` matches every non-`$` topic of one level or more: the same set as `+/#`.
        // (Elsewhere `#` after level n also matches the parent, which has n levels.)
        if filter == "#" {
            return self.covers(subst, "+/#");
        }
        // Likewise `/#`: its parent-level match would be the empty topic, which cannot exist
        // [MQTT-4.7.3-1], so it matches exactly what `/+/#` matches.
        if filter == "/#" {
            return self.covers(subst, "/+/#");
        }
        let mut sub_levels = filter.split('/');
        for level in &*self.levels {
            if *level == Level::Hash {
                return true;
            }
            match sub_levels.next() {
                // The subscription can be shorter, or go on below: the rule has a fixed level here.
                None | Some("#") => return false,
                Some("+") if *level != Level::Plus => return false,
                Some(text) if *level != Level::Plus && !level_eq(level, subst, text) => {
                    return false
                }
                Some(_) => {}
            }
        }
        sub_levels.next().is_none()
    }
}

/// `true` if a `Literal` or `Template` level equals `text` after substitution.
fn level_eq(level: &Level, subst: Subst<'_>, text: &str) -> bool {
    match level {
        Level::Literal(literal) => **literal == *text,
        Level::Template(pieces) => {
            let mut rest = text;
            for piece in pieces.iter() {
                let value = match piece {
                    Piece::Text(t) => &**t,
                    Piece::User => match subst.user {
                        Some(user) => user,
                        None => return false,
                    },
                    Piece::Client => subst.client,
                };
                match rest.strip_prefix(value) {
                    Some(after) => rest = after,
                    None => return false,
                }
            }
            rest.is_empty()
        }
        Level::Plus | Level::Hash => false,
    }
}

/// Splits a level at `%u` / `%c` into text and placeholders (`%` elsewhere is text).
fn split_placeholders(level: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = level.chars().peekable();
    while let Some(c) = chars.next() {
        let placeholder = match (c, chars.peek()) {
            ('%', Some('u')) => Some(Piece::User),
            ('%', Some('c')) => Some(Piece::Client),
            _ => None,
        };
        match placeholder {
            Some(piece) => {
                chars.next();
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text).into()));
                }
                pieces.push(piece);
            }
            None => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text.into()));
    }
    pieces
}

/// `true` if every topic matched by the subscription filter `subscription` is also matched by
/// `rule` (both plain MQTT topic filters, already validated; no placeholders).
///
/// ```
/// use fulmar_auth::filter_covers;
/// assert!(filter_covers("a/#", "a/+/c"));
/// assert!(filter_covers("+/#", "#"));
/// assert!(!filter_covers("a/+", "a/#")); // a/# also matches "a" and "a/b/c"
/// assert!(!filter_covers("#", "$SYS/#")); // `#` never matches `$` topics
/// ```
#[must_use]
pub fn filter_covers(rule: &str, subscription: &str) -> bool {
    let subst = Subst {
        user: None,
        client: "",
    };
    RuleFilter::compile(rule, false).is_ok_and(|compiled| compiled.covers(subst, subscription))
}

#[cfg(test)]
#[path = "rule_tests.rs"]
mod tests;
