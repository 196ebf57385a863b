//! Validated identifiers: [`UserId`], [`EventName`] and [`ClientId`].
//!
//! All are *tokens*: 1 to [`MAX_TOKEN_LEN`] ASCII characters from
//! `A-Z a-z 0-9 _ -`. That alphabet is what makes them safe to splice into a
//! NATS subject (no `.`, `*`, `>` or whitespace can sneak in) and into an SSE
//! `event:` / `id:` line (no CR, LF or NUL). Validation happens once, at the
//! edge (query string, JWT claim, subject), and the type carries the proof.

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// Longest accepted token, in bytes (= characters, tokens are ASCII).
///
/// Bounded so that subjects, SSE lines and log lines built from tokens stay
/// small whatever a client sends.
pub const MAX_TOKEN_LEN: usize = 128;

/// Lookup table: `TOKEN_BYTES[b]` is true when byte `b` may appear in a token.
const TOKEN_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
        b += 1;
    }
    t
};

/// Whether `b` belongs to the token alphabet `A-Z a-z 0-9 _ -`.
///
/// Exposed so callers scanning raw bytes (e.g. a subject) can share the
/// exact same definition as [`validate_token`].
///
/// ```
/// use realtime_bridge_wire::is_token_byte;
/// assert!(is_token_byte(b'a') && is_token_byte(b'-'));
/// assert!(!is_token_byte(b'.') && !is_token_byte(b'*'));
/// ```
#[inline]
pub const fn is_token_byte(b: u8) -> bool {
    TOKEN_BYTES[b as usize]
}

/// Why a string is not a valid token.
///
/// The [`Display`](fmt::Display) text is a sentence fragment meant to follow
/// the name of the thing being validated, e.g. `"user id {err}"` gives
/// "user id contains '*' at position 0 (allowed: A-Z a-z 0-9 _ -)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    /// The string is empty.
    Empty,
    /// The string is made of allowed characters but is longer than
    /// [`MAX_TOKEN_LEN`].
    TooLong {
        /// Its length (bytes = characters, since it is all ASCII).
        len: usize,
    },
    /// The string contains a character outside `A-Z a-z 0-9 _ -`.
    InvalidChar {
        /// The first offending character.
        ch: char,
        /// Its position; every character before it is ASCII, so this is
        /// both the character index and the byte index.
        index: usize,
    },
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Empty => f.write_str("is empty"),
            IdError::TooLong { len } => write!(f, "is {len} characters long (at most {MAX_TOKEN_LEN} allowed)"),
            IdError::InvalidChar { ch, index } => {
                write!(f, "contains {ch:?} at position {index} (allowed: A-Z a-z 0-9 _ -)")
            }
        }
    }
}

impl std::error::Error for IdError {}

/// Checks that `s` is a token: 1..=[`MAX_TOKEN_LEN`] characters from
/// `A-Z a-z 0-9 _ -`.
///
/// A bad character is reported before an excessive length, so the error
/// always points at the first real problem.
///
/// ```
/// use realtime_bridge_wire::{validate_token, IdError};
/// assert_eq!(validate_token("user_42-a"), Ok(()));
/// assert_eq!(validate_token(""), Err(IdError::Empty));
/// assert_eq!(validate_token("a.b"), Err(IdError::InvalidChar { ch: '.', index: 1 }));
/// ```
pub fn validate_token(s: &str) -> Result<(), IdError> {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err(IdError::Empty);
    }
    if let Some(index) = bytes.iter().position(|&b| !is_token_byte(b)) {
        // Every byte before `index` is ASCII, so `index` is a char boundary and `get`
        // always succeeds; unlike `s[index..]`, it links no slicing panic (whose message
        // formatting costs the wasm SDK kilobytes).
        let ch = s.get(index..).and_then(|t| t.chars().next()).unwrap_or(char::REPLACEMENT_CHARACTER);
        return Err(IdError::InvalidChar { ch, index });
    }
    if bytes.len() > MAX_TOKEN_LEN {
        return Err(IdError::TooLong { len: bytes.len() });
    }
    Ok(())
}

macro_rules! token_newtype {
    ($(#[$meta:meta])* $name:ident, $what:literal, $example:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Box<str>);

        impl $name {
            #[doc = concat!("Validates `s` (see [`validate_token`]) and wraps it as a ", $what, ".")]
            ///
            /// ```
            #[doc = concat!("use realtime_bridge_wire::", stringify!($name), ";")]
            #[doc = concat!("let v = ", stringify!($name), "::parse(\"", $example, "\")?;")]
            #[doc = concat!("assert_eq!(v.as_str(), \"", $example, "\");")]
            #[doc = concat!("assert!(", stringify!($name), "::parse(\"a*\").is_err());")]
            /// # Ok::<(), realtime_bridge_wire::IdError>(())
            /// ```
            pub fn parse(s: &str) -> Result<Self, IdError> {
                validate_token(s)?;
                Ok(Self(s.into()))
            }

            /// The validated token, for building subjects and SSE lines.
            #[inline]
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Gives the token back as an owned `String` (no copy).
            pub fn into_string(self) -> String {
                self.0.into_string()
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            /// Reuses the `String`'s allocation when it is valid.
            fn try_from(s: String) -> Result<Self, IdError> {
                validate_token(&s)?;
                Ok(Self(s.into_boxed_str()))
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.into_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// Lets `HashSet<Self>` / `HashMap<Self, _>` be queried with a `&str`.
        /// Sound because `Hash`, `Eq` and `Ord` are those of the inner `str`.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }

        #[cfg(feature = "serde")]
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        /// Deserializes from a string and validates it, so an invalid token
        /// can never be smuggled in through JSON or config.
        #[cfg(feature = "serde")]
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a {} (1 to {} characters from A-Z a-z 0-9 _ -)", $what, MAX_TOKEN_LEN)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::try_from(v).map_err(|e| E::custom(format_args!("{} {}", $what, e)))
                    }
                    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<$name, E> {
                        $name::try_from(v).map_err(|e| E::custom(format_args!("{} {}", $what, e)))
                    }
                }
                deserializer.deserialize_str(V)
            }
        }
    };
}

token_newtype!(
    /// A validated user id: the `<id>` in `user.<id>.<event>`.
    ///
    /// Because it is validated, it can be put into a NATS subject without
    /// ever becoming a wildcard or adding a subject level.
    UserId,
    "user id",
    "42"
);

token_newtype!(
    /// A validated client id: names one stream (a tab, a device) in presence answers.
    ///
    /// Same grammar as a user id, so it is safe in a query string, a log line and JSON
    /// without escaping.
    ClientId,
    "client id",
    "tab-1"
);

token_newtype!(
    /// A validated event name: the `<event>` in `user.<id>.<event>` /
    /// `broadcast.<event>`, and the SSE `event:` field.
    ///
    /// Validated so it is a single subject token and can never break an SSE
    /// line (no CR / LF).
    EventName,
    "event name",
    "message_new"
);

/// Event names the stream itself uses for control frames (`end`, `reset`; see
/// [`crate::sse::write_control`]). A producer's event with one of these names is never
/// delivered: a client could not tell it from the bridge's own frame.
pub const RESERVED_EVENT_NAMES: [&str; 2] = [crate::sse::END, crate::sse::RESET];

impl EventName {
    /// Whether this name is one of [`RESERVED_EVENT_NAMES`].
    ///
    /// ```
    /// use realtime_bridge_wire::EventName;
    /// assert!(EventName::parse("end")?.is_reserved());
    /// assert!(!EventName::parse("ended")?.is_reserved());
    /// # Ok::<(), realtime_bridge_wire::IdError>(())
    /// ```
    pub fn is_reserved(&self) -> bool {
        RESERVED_EVENT_NAMES.contains(&self.as_str())
    }
}

/// Parses the comma-separated value of an `events=a,b,c` query parameter.
///
/// Strict on purpose (no trimming, no empty items) so that a typo is reported
/// instead of silently subscribing to less than the client asked for.
/// Duplicates are removed, keeping the first occurrence's position.
/// On error, returns the offending item together with why it was refused;
/// an empty `s` or an empty item (`a,,b`) gives [`IdError::Empty`].
///
/// ```
/// use realtime_bridge_wire::{parse_event_list, IdError};
/// let ev = parse_event_list("b,a,b").unwrap();
/// assert_eq!(ev, ["b", "a"]);
/// assert_eq!(parse_event_list("a,,b"), Err((String::new(), IdError::Empty)));
/// assert_eq!(
///     parse_event_list("a,x.y"),
///     Err(("x.y".to_owned(), IdError::InvalidChar { ch: '.', index: 1 }))
/// );
/// ```
pub fn parse_event_list(s: &str) -> Result<Vec<EventName>, (String, IdError)> {
    let mut out = Vec::new();
    // A BTreeSet keeps de-duplication O(n log n) even for a hostile, huge
    // list, without relying on hash seeding (absent on wasm32-unknown-unknown).
    let mut seen = BTreeSet::new();
    for item in s.split(',') {
        let name = EventName::parse(item).map_err(|e| (item.to_owned(), e))?;
        if seen.insert(item) {
            out.push(name);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn accepts_every_allowed_class() {
        for s in ["a", "z", "A", "Z", "0", "9", "_", "-", "abcXYZ019_-", "user-42_A", "--"] {
            assert_eq!(validate_token(s), Ok(()), "{s:?}");
        }
        for b in 0..=255u8 {
            let expect = b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
            assert_eq!(is_token_byte(b), expect, "byte {b}");
        }
    }

    #[test]
    fn refuses_each_bad_case() {
        let cases: &[(&str, IdError)] = &[
            ("*", IdError::InvalidChar { ch: '*', index: 0 }),
            (">", IdError::InvalidChar { ch: '>', index: 0 }),
            ("a.b", IdError::InvalidChar { ch: '.', index: 1 }),
            (" ", IdError::InvalidChar { ch: ' ', index: 0 }),
            ("ab ", IdError::InvalidChar { ch: ' ', index: 2 }),
            ("é", IdError::InvalidChar { ch: 'é', index: 0 }),
            ("aé", IdError::InvalidChar { ch: 'é', index: 1 }),
            ("a\nb", IdError::InvalidChar { ch: '\n', index: 1 }),
            ("a\0", IdError::InvalidChar { ch: '\0', index: 1 }),
            ("a:b", IdError::InvalidChar { ch: ':', index: 1 }),
            ("", IdError::Empty),
        ];
        for (s, err) in cases {
            assert_eq!(validate_token(s).as_ref(), Err(err), "{s:?}");
            assert_eq!(UserId::parse(s).as_ref(), Err(err), "{s:?}");
            assert_eq!(EventName::parse(s).as_ref(), Err(err), "{s:?}");
        }
    }

    #[test]
    fn length_limit() {
        let ok = "a".repeat(MAX_TOKEN_LEN);
        assert_eq!(MAX_TOKEN_LEN, 128);
        assert_eq!(validate_token(&ok), Ok(()));
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(validate_token(&long), Err(IdError::TooLong { len: 129 }));
        // A bad character wins over the length.
        let long_bad = format!("{long}*");
        assert_eq!(validate_token(&long_bad), Err(IdError::InvalidChar { ch: '*', index: 129 }));
        // 100 two-byte characters: reported as a bad char, not as too long.
        assert!(matches!(validate_token(&"é".repeat(100)), Err(IdError::InvalidChar { ch: 'é', index: 0 })));
    }

    #[test]
    fn display_messages() {
        assert_eq!(IdError::Empty.to_string(), "is empty");
        assert_eq!(IdError::TooLong { len: 129 }.to_string(), "is 129 characters long (at most 128 allowed)");
        assert_eq!(
            IdError::InvalidChar { ch: '*', index: 0 }.to_string(),
            "contains '*' at position 0 (allowed: A-Z a-z 0-9 _ -)"
        );
        let e: Box<dyn std::error::Error> = Box::new(IdError::Empty);
        assert_eq!(e.to_string(), "is empty");
    }

    #[test]
    fn newtype_conversions() {
        let u: UserId = "42".parse().unwrap();
        assert_eq!(u.as_str(), "42");
        assert_eq!(u.to_string(), "42");
        assert_eq!(AsRef::<str>::as_ref(&u), "42");
        assert_eq!(UserId::try_from("42").unwrap(), u);
        assert_eq!(UserId::try_from(String::from("42")).unwrap(), u);
        assert_eq!(UserId::try_from(String::from("4 2")), Err(IdError::InvalidChar { ch: ' ', index: 1 }));
        assert_eq!(u, "42");
        assert_eq!(String::from(u.clone()), "42");
        assert_eq!(u.clone().into_string(), "42");
        assert_eq!(format!("{u:?}"), "UserId(\"42\")");

        let mut set = HashSet::new();
        set.insert(EventName::parse("message_new").unwrap());
        assert!(set.contains("message_new"));
        assert!(!set.contains("other"));

        let mut v = vec![EventName::parse("b").unwrap(), EventName::parse("a").unwrap()];
        v.sort();
        assert_eq!(v, ["a", "b"]);
    }

    #[test]
    fn event_lists() {
        assert_eq!(parse_event_list("a").unwrap(), ["a"]);
        assert_eq!(
            parse_event_list("message_new,typing,presence-changed").unwrap(),
            ["message_new", "typing", "presence-changed"]
        );
        assert_eq!(parse_event_list("b,a,b,c,a").unwrap(), ["b", "a", "c"]);
        assert_eq!(parse_event_list(""), Err((String::new(), IdError::Empty)));
        assert_eq!(parse_event_list("a,,b"), Err((String::new(), IdError::Empty)));
        assert_eq!(parse_event_list("a,"), Err((String::new(), IdError::Empty)));
        assert_eq!(parse_event_list(",a"), Err((String::new(), IdError::Empty)));
        assert_eq!(parse_event_list("a, b"), Err((" b".to_owned(), IdError::InvalidChar { ch: ' ', index: 0 })));
        assert_eq!(parse_event_list("a,*"), Err(("*".to_owned(), IdError::InvalidChar { ch: '*', index: 0 })));
        let long = "x".repeat(129);
        assert_eq!(parse_event_list(&format!("a,{long}")), Err((long, IdError::TooLong { len: 129 })));
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_validates() {
        use serde::de::value::{Error as DeError, StrDeserializer, StringDeserializer};
        use serde::de::IntoDeserializer;
        use serde::Deserialize;

        let d: StrDeserializer<'_, DeError> = "42".into_deserializer();
        assert_eq!(UserId::deserialize(d).unwrap(), "42");
        let d: StringDeserializer<DeError> = String::from("ev").into_deserializer();
        assert_eq!(EventName::deserialize(d).unwrap(), "ev");
        let d: StrDeserializer<'_, DeError> = "user.*".into_deserializer();
        let err = UserId::deserialize(d).unwrap_err();
        assert_eq!(err.to_string(), "user id contains '.' at position 4 (allowed: A-Z a-z 0-9 _ -)");
    }
}
