//! NATS subjects: `user.<id>.<event>` and `broadcast.<event>`.
//!
//! Builders take validated [`UserId`] / [`EventName`] so a built subject is
//! always exactly the intended shape. [`parse_subject`] is the inverse used
//! when a message arrives, and is strict for the same reason: a subject that
//! does not have exactly the expected shape is not ours to route.

use crate::ids::{validate_token, EventName, UserId};

/// First token of per-user subjects.
pub const USER_PREFIX: &str = "user.";

/// First token of broadcast subjects.
pub const BROADCAST_PREFIX: &str = "broadcast.";

/// Prefix of a republished copy of a subject (`rt.user.42.x`), used by the
/// history mode; [`parse_subject`] accepts and strips it.
pub const REPUBLISH_PREFIX: &str = "rt.";

/// Subscription subject matching every broadcast event.
pub const BROADCAST_WILDCARD: &str = "broadcast.*";
/// Every user event: what a bridge subscribes with `--subscribe shared`.
pub const ALL_USERS_WILDCARD: &str = "user.*.*";

/// Namespace of the requests services send the bridges (`realtime.presence.<userId>`).
pub const SERVICE_PREFIX: &str = "realtime.";
/// Prefix of a presence request (docs/protocol.md §4.2): `realtime.presence.<userId>`.
pub const PRESENCE_REQUEST_PREFIX: &str = "realtime.presence.";

/// The subjects the history store keeps: every user event and every broadcast, at any depth
/// (`user.>`, `broadcast.>`).
///
/// ```
/// assert_eq!(realtime_bridge_wire::subject::history_store_subjects(), ["user.>", "broadcast.>"]);
/// ```
pub fn history_store_subjects() -> [String; 2] {
    [format!("{USER_PREFIX}>"), format!("{BROADCAST_PREFIX}>")]
}

/// Where the history store re-publishes every message it stored: [`REPUBLISH_PREFIX`] and `>`.
///
/// ```
/// assert_eq!(realtime_bridge_wire::subject::republish_destination(), "rt.>");
/// ```
pub fn republish_destination() -> String {
    format!("{REPUBLISH_PREFIX}>")
}

/// The re-published copy of `subject` (or of a wildcard): `rt.<subject>`.
///
/// ```
/// assert_eq!(realtime_bridge_wire::subject::republished("user.42.*"), "rt.user.42.*");
/// ```
pub fn republished(subject: &str) -> String {
    let mut s = String::with_capacity(REPUBLISH_PREFIX.len() + subject.len());
    s.push_str(REPUBLISH_PREFIX);
    s.push_str(subject);
    s
}

/// The original subject of a re-published copy; `None` if `subject` is not one.
///
/// ```
/// use realtime_bridge_wire::subject::strip_republished;
/// assert_eq!(strip_republished("rt.user.42.x"), Some("user.42.x"));
/// assert_eq!(strip_republished("user.42.x"), None);
/// ```
pub fn strip_republished(subject: &str) -> Option<&str> {
    subject.strip_prefix(REPUBLISH_PREFIX)
}

/// `realtime.presence.*`: the subscription answering every presence request.
///
/// ```
/// assert_eq!(realtime_bridge_wire::subject::presence_request_wildcard(), "realtime.presence.*");
/// ```
pub fn presence_request_wildcard() -> String {
    format!("{PRESENCE_REQUEST_PREFIX}*")
}

/// The user a presence request asks about, as sent (not validated: the answer says
/// what is wrong with it); `None` if `subject` is not a presence request.
///
/// ```
/// use realtime_bridge_wire::subject::presence_request_user;
/// assert_eq!(presence_request_user("realtime.presence.42"), Some("42"));
/// assert_eq!(presence_request_user("user.42.x"), None);
/// ```
pub fn presence_request_user(subject: &str) -> Option<&str> {
    subject.strip_prefix(PRESENCE_REQUEST_PREFIX)
}

/// `user.<id>.<event>`: where a backend publishes an event for one user.
///
/// ```
/// use realtime_bridge_wire::{subject::user_subject, EventName, UserId};
/// let s = user_subject(&UserId::parse("42")?, &EventName::parse("message_new")?);
/// assert_eq!(s, "user.42.message_new");
/// # Ok::<(), realtime_bridge_wire::IdError>(())
/// ```
pub fn user_subject(user: &UserId, event: &EventName) -> String {
    let (u, e) = (user.as_str(), event.as_str());
    let mut s = String::with_capacity(USER_PREFIX.len() + u.len() + 1 + e.len());
    s.push_str(USER_PREFIX);
    s.push_str(u);
    s.push('.');
    s.push_str(e);
    s
}

/// `user.<id>.*`: one subscription receiving every event of one user.
///
/// ```
/// use realtime_bridge_wire::{subject::user_wildcard, UserId};
/// assert_eq!(user_wildcard(&UserId::parse("42")?), "user.42.*");
/// # Ok::<(), realtime_bridge_wire::IdError>(())
/// ```
pub fn user_wildcard(user: &UserId) -> String {
    let u = user.as_str();
    let mut s = String::with_capacity(USER_PREFIX.len() + u.len() + 2);
    s.push_str(USER_PREFIX);
    s.push_str(u);
    s.push_str(".*");
    s
}

/// `broadcast.<event>`: where a backend publishes an event for everyone.
///
/// ```
/// use realtime_bridge_wire::{subject::broadcast_subject, EventName};
/// assert_eq!(broadcast_subject(&EventName::parse("maintenance")?), "broadcast.maintenance");
/// # Ok::<(), realtime_bridge_wire::IdError>(())
/// ```
pub fn broadcast_subject(event: &EventName) -> String {
    let e = event.as_str();
    let mut s = String::with_capacity(BROADCAST_PREFIX.len() + e.len());
    s.push_str(BROADCAST_PREFIX);
    s.push_str(e);
    s
}

/// Who a received message is for, borrowed from its subject.
///
/// Both strings are already-validated tokens (see
/// [`validate_token`]); convert with
/// [`UserId::parse`] / [`EventName::parse`] if an owned value is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target<'a> {
    /// From `user.<user>.<event>`: deliver to that user's streams only.
    User {
        /// The `<user>` token.
        user: &'a str,
        /// The `<event>` token.
        event: &'a str,
    },
    /// From `broadcast.<event>`: deliver to every stream.
    Broadcast {
        /// The `<event>` token.
        event: &'a str,
    },
}

impl<'a> Target<'a> {
    /// The event name, whichever the kind of target (it is the SSE `event:`).
    pub fn event(&self) -> &'a str {
        match *self {
            Target::User { event, .. } | Target::Broadcast { event } => event,
        }
    }
}

/// The `<event>` of `user.<user>.<event>` for a subject already known to be `user`'s (a
/// message of that user's subscription), without validating it: the receiver validates the
/// name once, as an [`EventName`]. `None` if the subject is not `user`'s.
///
/// ```
/// use realtime_bridge_wire::{subject::user_event, UserId};
/// let u = UserId::parse("42")?;
/// assert_eq!(user_event("user.42.message_new", &u), Some("message_new"));
/// assert_eq!(user_event("user.421.x", &u), None);
/// # Ok::<(), realtime_bridge_wire::IdError>(())
/// ```
pub fn user_event<'s>(subject: &'s str, user: &UserId) -> Option<&'s str> {
    subject.strip_prefix(USER_PREFIX)?.strip_prefix(user.as_str())?.strip_prefix('.')
}

/// The `<event>` of `broadcast.<event>`, unvalidated like [`user_event`].
pub fn broadcast_event(subject: &str) -> Option<&str> {
    subject.strip_prefix(BROADCAST_PREFIX)
}

/// Parses a subject into a [`Target`].
///
/// Accepts exactly `user.<tok>.<tok>` or `broadcast.<tok>` where each `<tok>`
/// is a valid token, optionally preceded by one [`REPUBLISH_PREFIX`] (`rt.`).
/// Returns `None` for anything else (wrong number of levels, wildcards,
/// empty or invalid tokens, unknown first level).
///
/// ```
/// use realtime_bridge_wire::subject::{parse_subject, Target};
/// assert_eq!(
///     parse_subject("user.42.message_new"),
///     Some(Target::User { user: "42", event: "message_new" })
/// );
/// assert_eq!(parse_subject("rt.broadcast.x"), Some(Target::Broadcast { event: "x" }));
/// assert_eq!(parse_subject("user.*.x"), None);
/// ```
pub fn parse_subject(subject: &str) -> Option<Target<'_>> {
    let s = subject.strip_prefix(REPUBLISH_PREFIX).unwrap_or(subject);
    if let Some(rest) = s.strip_prefix(USER_PREFIX) {
        let (user, event) = rest.split_once('.')?;
        // Tokens cannot contain '.', so validation also rejects extra levels.
        validate_token(user).ok()?;
        validate_token(event).ok()?;
        Some(Target::User { user, event })
    } else if let Some(event) = s.strip_prefix(BROADCAST_PREFIX) {
        validate_token(event).ok()?;
        Some(Target::Broadcast { event })
    } else {
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    fn uid(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }
    fn ev(s: &str) -> EventName {
        EventName::parse(s).unwrap()
    }

    #[test]
    fn builders() {
        assert_eq!(user_subject(&uid("42"), &ev("message_new")), "user.42.message_new");
        assert_eq!(user_wildcard(&uid("u-1")), "user.u-1.*");
        assert_eq!(broadcast_subject(&ev("maintenance")), "broadcast.maintenance");
        assert_eq!(BROADCAST_WILDCARD, "broadcast.*");
    }

    #[test]
    fn derived_subjects() {
        assert_eq!(history_store_subjects(), ["user.>".to_owned(), "broadcast.>".to_owned()]);
        assert_eq!(republish_destination(), "rt.>");
        assert_eq!(republished(&user_wildcard(&uid("7"))), "rt.user.7.*");
        assert_eq!(republished(BROADCAST_WILDCARD), "rt.broadcast.*");
        let s = user_subject(&uid("42"), &ev("x"));
        assert_eq!(strip_republished(&republished(&s)), Some(s.as_str()));
        assert_eq!(strip_republished(&s), None);
        assert_eq!(strip_republished("rt."), Some(""));
        assert!(PRESENCE_REQUEST_PREFIX.starts_with(SERVICE_PREFIX));
        assert_eq!(presence_request_wildcard(), "realtime.presence.*");
        assert_eq!(presence_request_user("realtime.presence.u-1"), Some("u-1"));
        assert_eq!(presence_request_user("realtime.presence."), Some(""));
        assert_eq!(presence_request_user("realtime.other.1"), None);
    }

    #[test]
    fn round_trips() {
        for (u, e) in [("42", "message_new"), ("A_b-9", "x"), ("x", "user")] {
            let s = user_subject(&uid(u), &ev(e));
            assert_eq!(parse_subject(&s), Some(Target::User { user: u, event: e }));
            let rt = format!("rt.{s}");
            assert_eq!(parse_subject(&rt), Some(Target::User { user: u, event: e }));
            let b = broadcast_subject(&ev(e));
            assert_eq!(parse_subject(&b), Some(Target::Broadcast { event: e }));
            assert_eq!(parse_subject(&format!("rt.{b}")).map(|t| t.event()), Some(e));
        }
        let long = "a".repeat(128);
        let s = user_subject(&uid(&long), &ev(&long));
        assert_eq!(parse_subject(&s), Some(Target::User { user: &long, event: &long }));
    }

    #[test]
    fn rejections() {
        let too_long = format!("broadcast.{}", "a".repeat(129));
        for s in [
            "",
            "user",
            "user.",
            "user.42",
            "user.42.",
            "user..x",
            "user.42.a.b",
            "user.*.x",
            "user.>.x",
            "user.42.*",
            "user.42.>",
            "broadcast",
            "broadcast.",
            "broadcast.*",
            "broadcast.>",
            "broadcast.a.b",
            "broadcast.a b",
            "other.x",
            "users.42.x",
            "rt.",
            "rt.other.x",
            "rt.rt.user.42.x",
            "rt.user.42",
            "xrt.user.42.x",
            "USER.42.x",
            too_long.as_str(),
        ] {
            assert_eq!(parse_subject(s), None, "{s:?}");
        }
    }
}
