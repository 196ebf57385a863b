//! Properties of `auth::find_token` (where a request's JWT is taken from) on arbitrary
//! input.
//!
//! Shared by the `token` fuzz target and `tests/fuzz_properties.rs` (see `head.rs`).
//!
//! Input layout: `[places] [field] (\n [field])*`: `places & 1` picks
//! `TokenPlaces::HeaderQueryCookie` (else `Header`); each field is a kind byte, an optional
//! `:`, and a value: `A` an `Authorization` header, `C` a `Cookie` header, `Q` the
//! `access_token` query value (the last one counts), anything else an unrelated header.
//! Header values that `HeaderValue` refuses are left out, as hyper would never build them.
//! The headers reach `find_token` as the HTTP layer hands them over: the first
//! `Authorization` value and every `Cookie` value, as bytes (`Credentials`).
//!
//! Checked:
//! * it never panics, and agrees with a plain reading of the rules: the first
//!   `Authorization` header decides alone when present (`Bearer <token>`, scheme in any case,
//!   else an error); otherwise, only where the endpoint allows it, a non-empty query value,
//!   then the first non-empty `rb_token=` pair of the `Cookie` headers;
//! * `TokenPlaces::Header` never takes a token from the query or a cookie: its answer is the
//!   same with them removed;
//! * a token returned lies inside the input it was taken from (it borrows, never copies).

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use realtime_bridge::auth::{find_token, Credentials, TokenPlaces};

/// Where a returned token was found, in the reference reading.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    Error,
    Nothing,
    Header(String),
    Query(String),
    Cookie(String),
}

pub(crate) fn check(input: &[u8]) {
    let places =
        if input.first().is_some_and(|b| b & 1 == 1) { TokenPlaces::HeaderQueryCookie } else { TokenPlaces::Header };
    let mut headers = HeaderMap::new();
    let mut query = None;
    for field in input.get(1..).unwrap_or(&[]).split(|&b| b == b'\n') {
        let Some((&kind, value)) = field.split_first() else { continue };
        let value = value.strip_prefix(b":").unwrap_or(value);
        let name = match kind {
            b'A' => header::AUTHORIZATION,
            b'C' => header::COOKIE,
            b'Q' => {
                query = Some(String::from_utf8_lossy(value).into_owned());
                continue;
            }
            _ => HeaderName::from_static("x-other"),
        };
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(name, v);
        }
    }

    let got = find_token(&credentials(&headers, query.as_deref()), places);
    let expected = reference(&headers, query.as_deref(), places);
    let found = match (&got, &expected) {
        (Err(_), Found::Error) | (Ok(None), Found::Nothing) => None,
        (Ok(Some(t)), Found::Header(e) | Found::Query(e) | Found::Cookie(e)) if t == e => Some(*t),
        _ => panic!("find_token gave {got:?}, the rules give {expected:?} ({places:?}, {headers:?}, query {query:?})"),
    };

    if let Some(token) = found {
        assert!(!token.is_empty());
        // It must point into the value it was read from.
        let inside = |hay: &str| {
            let (h, t) = (hay.as_bytes().as_ptr_range(), token.as_bytes().as_ptr_range());
            h.start <= t.start && t.end <= h.end
        };
        let source = match expected {
            Found::Header(_) => headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).is_some_and(inside),
            Found::Query(_) => query.as_deref().is_some_and(inside),
            Found::Cookie(_) => headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).any(inside),
            Found::Error | Found::Nothing => false,
        };
        assert!(source, "token {token:?} does not point into the value it was read from");
    }

    if places == TokenPlaces::Header {
        let mut bare = headers.clone();
        bare.remove(header::COOKIE);
        let alone = find_token(&credentials(&bare, None), TokenPlaces::Header);
        assert_eq!(
            alone.as_ref().ok().copied().flatten(),
            got.as_ref().ok().copied().flatten(),
            "Header-only lookup depends on the query or a cookie"
        );
        assert_eq!(alone.is_err(), got.is_err());
    }
}

/// What the HTTP layer takes from a request for `find_token`.
fn credentials<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Credentials<'a> {
    Credentials {
        authorization: headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes),
        query,
        cookies: headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes).collect(),
    }
}

/// The rules, read the plain way.
fn reference(headers: &HeaderMap, query: Option<&str>, places: TokenPlaces) -> Found {
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let Ok(text) = auth.to_str() else { return Found::Error };
        let Some((scheme, rest)) = text.split_once(' ') else { return Found::Error };
        let token = rest.trim();
        return if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() {
            Found::Header(token.to_owned())
        } else {
            Found::Error
        };
    }
    if places == TokenPlaces::Header {
        return Found::Nothing;
    }
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        return Found::Query(q.to_owned());
    }
    for cookie in headers.get_all(header::COOKIE) {
        let Ok(text) = cookie.to_str() else { continue };
        for pair in text.split(';').map(str::trim) {
            if let Some(t) = pair.strip_prefix("rb_token=").filter(|t| !t.is_empty()) {
                return Found::Cookie(t.to_owned());
            }
        }
    }
    Found::Nothing
}
