//! Properties of token validation and NATS subjects (`realtime_bridge_wire::{ids, subject}`)
//! on arbitrary input.
//!
//! Shared by the `ids` fuzz target and `tests/fuzz_properties.rs` (see `sse_parser.rs`).
//!
//! Input: the text checked (decoded lossily when it is not UTF-8): as a token, as an
//! `events=` list and as a subject; and, mapped byte by byte onto the token alphabet, the
//! user id and event name that subjects are built from.
//!
//! Checked:
//! * `validate_token`, `UserId::parse`, `EventName::parse` and `is_token_byte` agree with the
//!   plain predicate "1 to 128 characters of `A-Z a-z 0-9 _ -`", and report the error it
//!   predicts (empty, first bad character and its index, or length);
//! * `parse_event_list` accepts exactly the lists whose every comma-separated item is a
//!   token, keeps the first of duplicates in order, and otherwise names the first bad item;
//! * `parse_subject` accepts exactly `[rt.]user.<token>.<token>` and `[rt.]broadcast.<token>`
//!   (so never a wildcard, an empty or an extra level), and subjects built from valid tokens
//!   parse back to them.

use realtime_bridge_wire::subject::{self, parse_subject, Target};
use realtime_bridge_wire::{is_token_byte, parse_event_list, validate_token, EventName, IdError, UserId};

pub(crate) fn check(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    check_token(&text);
    check_event_list(&text);
    check_subject(&text);
    for level in text.split(['.', ',']) {
        check_token(level);
    }
    for b in input {
        assert_eq!(is_token_byte(*b), b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-', "byte {b}");
    }

    let mid = input.len() / 2;
    let user = token(&input[..mid]);
    let event = token(&input[mid..]);
    build_and_parse(&user, &event);
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// The plain predicate, with the error it implies.
fn reference_token(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if let Some((index, ch)) = s.char_indices().find(|&(_, c)| !is_token_char(c)) {
        return Err(IdError::InvalidChar { ch, index });
    }
    if s.chars().count() > 128 {
        return Err(IdError::TooLong { len: s.len() });
    }
    Ok(())
}

fn check_token(s: &str) {
    let expected = reference_token(s);
    assert_eq!(validate_token(s), expected, "validate_token({s:?})");
    assert_eq!(UserId::parse(s).map(|u| u.as_str().to_owned()), expected.clone().map(|()| s.to_owned()));
    assert_eq!(EventName::parse(s).map(|e| e.as_str().to_owned()), expected.clone().map(|()| s.to_owned()));
    assert_eq!(UserId::try_from(s.to_owned()).map(String::from), expected.map(|()| s.to_owned()));
}

fn check_event_list(s: &str) {
    let mut expected: Result<Vec<&str>, (String, IdError)> = Ok(Vec::new());
    for item in s.split(',') {
        if let Err(e) = reference_token(item) {
            expected = Err((item.to_owned(), e));
            break;
        }
        if let Ok(list) = &mut expected {
            if !list.contains(&item) {
                list.push(item);
            }
        }
    }
    let got = parse_event_list(s);
    let got = got.as_ref().map(|v| v.iter().map(EventName::as_str).collect::<Vec<_>>()).map_err(Clone::clone);
    assert_eq!(got, expected, "parse_event_list({s:?})");
}

/// `parse_subject` read the plain way: split into levels, then match the shapes.
fn reference_subject(s: &str) -> Option<Target<'_>> {
    let body = s.strip_prefix("rt.").unwrap_or(s);
    let ok = |t: &str| reference_token(t).is_ok();
    match body.split('.').collect::<Vec<_>>().as_slice() {
        ["user", user, event] if ok(user) && ok(event) => Some(Target::User { user, event }),
        ["broadcast", event] if ok(event) => Some(Target::Broadcast { event }),
        _ => None,
    }
}

fn check_subject(s: &str) {
    let got = parse_subject(s);
    assert_eq!(got, reference_subject(s), "parse_subject({s:?})");
    let Some(target) = got else { return };
    let tokens: &[&str] = match target {
        Target::User { user, event } => &[user, event],
        Target::Broadcast { event } => &[event],
    };
    for t in tokens {
        assert!(!t.is_empty() && !t.contains(['.', '*', '>', ' ']), "{s:?} gave token {t:?}");
    }
    assert_eq!(target.event(), tokens[tokens.len() - 1]);
}

const TOKEN_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// A valid token made of `bytes`: each byte picks a character, cut to 128, never empty.
fn token(bytes: &[u8]) -> String {
    let t: String = bytes.iter().take(128).map(|&b| char::from(TOKEN_ALPHABET[usize::from(b % 64)])).collect();
    if t.is_empty() {
        "x".to_owned()
    } else {
        t
    }
}

fn build_and_parse(user: &str, event: &str) {
    let (u, e) = (UserId::parse(user).unwrap(), EventName::parse(event).unwrap());

    let s = subject::user_subject(&u, &e);
    assert_eq!(s, format!("user.{user}.{event}"));
    assert_eq!(s.split('.').count(), 3, "{s:?} has an extra level");
    assert_eq!(parse_subject(&s), Some(Target::User { user, event }));
    assert_eq!(parse_subject(&format!("rt.{s}")), Some(Target::User { user, event }));

    let b = subject::broadcast_subject(&e);
    assert_eq!(b, format!("broadcast.{event}"));
    assert_eq!(parse_subject(&b), Some(Target::Broadcast { event }));
    assert_eq!(parse_subject(&format!("rt.{b}")), Some(Target::Broadcast { event }));

    // A wildcard is for subscribing, never a subject an event is routed from.
    let w = subject::user_wildcard(&u);
    assert_eq!(w, format!("user.{user}.*"));
    assert_eq!(parse_subject(&w), None);
    for bad in [format!("user.{user}.{event}.x"), format!("user.{user}"), format!("broadcast.{event}.x")] {
        assert_eq!(parse_subject(&bad), None, "{bad:?}");
    }
}
