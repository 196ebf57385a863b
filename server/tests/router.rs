//! The HTTP API driven in-process with `tower::ServiceExt::oneshot` on `Bridge::router()`,
//! over a real nats-server (one per test). docs/protocol.md §1–§4 and §7.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, Request, Response, StatusCode, Uri};
use axum::Router;
use base64::Engine as _;
use common::*;
use futures::StreamExt;
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use realtime_bridge::auth::{unix_now, Auth, Verifier};
use realtime_bridge::{Bridge, Config};
use serde_json::{json, Value};
use tower::ServiceExt;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Sends one request through a fresh clone of the router (bounded).
async fn send(router: &Router, req: Request<Body>) -> Response<Body> {
    let uri = req.uri().clone();
    tokio::time::timeout(WAIT, router.clone().oneshot(req))
        .await
        .unwrap_or_else(|_| panic!("no response to {uri} within {WAIT:?}"))
        .unwrap()
}

fn get(uri: &str) -> axum::http::request::Builder {
    Request::builder().method("GET").uri(uri)
}

fn get_with(uri: &str, token: Option<&str>) -> Request<Body> {
    let mut b = get(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(Body::empty()).unwrap()
}

async fn call(router: &Router, uri: &str, token: Option<&str>) -> Response<Body> {
    send(router, get_with(uri, token)).await
}

/// Reads a whole (finite) body, bounded.
async fn body_bytes(resp: Response<Body>) -> Bytes {
    tokio::time::timeout(WAIT, resp.into_body().collect()).await.expect("body ends in time").unwrap().to_bytes()
}

async fn body_text(resp: Response<Body>) -> String {
    String::from_utf8(body_bytes(resp).await.to_vec()).unwrap()
}

/// Panics with the status and (a bounded preview of) the body unless the status is `status`.
/// A stream (200 text/event-stream) never ends, so its body is not waited for.
async fn ensure_status(resp: Response<Body>, status: StatusCode, what: &str) -> Response<Body> {
    if resp.status() == status {
        return resp;
    }
    let got = resp.status();
    let preview = match tokio::time::timeout(Duration::from_secs(1), resp.into_body().collect()).await {
        Ok(Ok(b)) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Ok(Err(e)) => format!("<body error {e}>"),
        Err(_) => "<a body that does not end: an open stream>".to_owned(),
    };
    panic!("{what}: status {got}, expected {status}; body {preview}");
}

/// Asserts `status`, a JSON content type and a body `{"error": <non-empty sentence>, "code": code}`;
/// returns the error sentence.
async fn expect_error(resp: Response<Body>, status: StatusCode, code: &str, what: &str) -> String {
    let resp = ensure_status(resp, status, what).await;
    let got = resp.status();
    let ct = resp.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
    let text = body_text(resp).await;
    assert_eq!(got, status, "{what}: status (body {text})");
    assert!(ct.as_deref().is_some_and(|c| c.starts_with("application/json")), "{what}: content-type {ct:?}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {text}"));
    assert_eq!(v["code"], code, "{what}: code in {text}");
    let error = v["error"].as_str().unwrap_or_else(|| panic!("{what}: no error sentence in {text}"));
    assert!(error.len() > 5 && error.contains(' '), "{what}: error is not a sentence: {error:?}");
    assert_eq!(v.as_object().unwrap().len(), 2, "{what}: only error and code in {text}");
    error.to_owned()
}

/// Asserts a 401 that names Bearer and never echoes the token (nor any part of it).
async fn expect_401(resp: Response<Body>, token: &str, what: &str) {
    let resp = ensure_status(resp, StatusCode::UNAUTHORIZED, what).await;
    assert_eq!(
        resp.headers().get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned()).as_deref(),
        Some("Bearer"),
        "{what}: www-authenticate"
    );
    let error = expect_error(resp, StatusCode::UNAUTHORIZED, "unauthorized", what).await;
    assert_no_token_text(&error, token, what);
}

fn assert_no_token_text(body: &str, token: &str, what: &str) {
    if token.len() >= 8 {
        assert!(!body.contains(token), "{what}: the error echoes the token: {body}");
    }
    for part in token.split('.').filter(|p| p.len() >= 8) {
        assert!(!body.contains(part), "{what}: the error echoes part of the token ({part}): {body}");
    }
}

async fn json_of(resp: Response<Body>, status: StatusCode, what: &str) -> Value {
    let resp = ensure_status(resp, status, what).await;
    let got = resp.status();
    let text = body_text(resp).await;
    assert_eq!(got, status, "{what}: status (body {text})");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {text}"))
}

/// Opens a stream and asserts it is accepted; the body is kept open by the caller.
async fn open_stream(router: &Router, uri: &str, token: Option<&str>) -> Response<Body> {
    let resp = call(router, uri, token).await;
    if resp.status() != StatusCode::OK {
        let status = resp.status();
        panic!("stream {uri} refused with {status}: {}", body_text(resp).await);
    }
    resp
}

/// Reads at least `n` bytes of a streaming body (bounded) and returns what was read.
async fn read_at_least(body: &mut Body, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let frame = tokio::time::timeout(WAIT, body.frame())
            .await
            .unwrap_or_else(|_| panic!("only {:?} within {WAIT:?}", String::from_utf8_lossy(&got)))
            .expect("body ended early")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            got.extend_from_slice(&data);
        }
    }
    got
}

fn admin_token() -> String {
    token_with("admin", true, &[])
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn public_key_config(nats_url: &str, public_pem: &str) -> Config {
    let verifier = Verifier::from_public_key_file(&fixture(public_pem)).unwrap();
    let mut c = Config::new(nats_url, Auth::Jwt(Box::new(verifier)));
    c.history.mode = realtime_bridge::config::HistoryMode::Off;
    c
}

/// Every subscription on the NATS server whose subject starts with `user.`.
async fn user_subscriptions(nats: &NatsServer) -> Vec<String> {
    let url = format!("http://127.0.0.1:{}/subsz?subs=1&limit=100000", nats.monitor_port);
    let v: Value = tokio::time::timeout(WAIT, async { reqwest::get(url).await.unwrap().json().await.unwrap() })
        .await
        .expect("monitoring answers in time");
    v["subscriptions_list"]
        .as_array()
        .map(|subs| {
            subs.iter()
                .filter_map(|s| s["subject"].as_str())
                .filter(|s| s.starts_with("user."))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

async fn assert_nothing_subscribed(bridge: &Bridge, nats: &NatsServer, what: &str) {
    assert_eq!(bridge.connected_users(), 0, "{what}: hub has a user slot");
    assert_eq!(nats.subscriptions_on("user.*.*").await, 0, "{what}: a wildcard user subscription exists");
    assert_eq!(nats.subscriptions_on("user.>.*").await, 0, "{what}: a wildcard user subscription exists");
    let subs = user_subscriptions(nats).await;
    assert!(subs.is_empty(), "{what}: user subscriptions on NATS: {subs:?}");
}

fn post_json(uri: &str, token: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::builder().method("POST").uri(uri).header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(body.into()).unwrap()
}

async fn next_msg(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(WAIT, sub.next()).await.expect("a NATS message in time").expect("subscription open")
}

/// Publishes a sentinel through the router (the same NATS connection as anything refused or
/// misrouted before it, so in order) and checks it is the next message on `sub`: a stray
/// publish would come first. `broadcast`: a broadcast sentinel, else one for user `sentinel`.
async fn expect_sentinel_next(router: &Router, sub: &mut async_nats::Subscriber, broadcast: bool) {
    let t = token_with("svc", false, &["publish"]);
    let (body, subject) = if broadcast {
        (r#"{"broadcast":true,"event":"sentinel","data":1}"#, "broadcast.sentinel")
    } else {
        (r#"{"users":["sentinel"],"event":"sentinel","data":1}"#, "user.sentinel.sentinel")
    };
    assert_eq!(send(router, post_json("/v1/publish", Some(&t), body)).await.status(), StatusCode::ACCEPTED);
    let m = next_msg(sub).await;
    assert_eq!(m.subject.as_str(), subject, "a stray message came before the sentinel: {:?}", m.payload);
}

// ---------------------------------------------------------------------------------------
// 1. Validation at the edge
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_user_ids_are_400_and_subscribe_nothing() {
    let nats = NatsServer::start();
    let bridge = start_router(&test_config(&nats.url())).await;
    let router = bridge.router();
    let admin = admin_token();

    // A raw `>` is not a legal path character: no HTTP request can carry it, so it can
    // never reach the router. Its encoded form is tested below.
    assert!(Uri::try_from("/v1/users/>/events").is_err(), "a raw '>' in a path is refused by the URI parser");

    let long = "a".repeat(129);
    let cases: Vec<(String, &str)> = vec![
        ("*".into(), "'*'"),
        ("a.b".into(), "'.'"),
        ("%2A".into(), "'*'"),
        ("%3E".into(), "'>'"),
        ("a%2Eb".into(), "'.'"),
        ("%20".into(), "' '"),
        ("%C3%A9".into(), "'é'"),
        ("user.%3E".into(), "'.'"),
        (String::new(), "empty"),
        (long.clone(), "129"),
    ];
    for (id, reason) in &cases {
        let uri = format!("/v1/users/{id}/events");
        // With an admin token: only the id can be the problem.
        let error =
            expect_error(call(&router, &uri, Some(&admin)).await, StatusCode::BAD_REQUEST, "invalid_user_id", &uri)
                .await;
        assert!(error.contains("user id"), "{uri}: error does not name the user id: {error}");
        assert!(error.contains(reason), "{uri}: error does not say why ({reason}): {error}");
        // And without any token, still a 400 (validated at the edge, before auth).
        expect_error(call(&router, &uri, None).await, StatusCode::BAD_REQUEST, "invalid_user_id", &uri).await;
    }
    assert_nothing_subscribed(&bridge, &nats, "after invalid ids").await;

    // Control: 128 characters is a valid id, and its subscription does show up on the
    // monitoring endpoint (so the checks above can see one).
    let max = "b".repeat(128);
    let uri = format!("/v1/users/{max}/events");
    let resp = open_stream(&router, &uri, Some(&admin)).await;
    assert_eq!(bridge.connected_users(), 1);
    let subject = format!("user.{max}.*");
    let n = &nats;
    let s = subject.as_str();
    eventually("the 128-char user's subscription on NATS", WAIT, || async move {
        (n.subscriptions_on(s).await == 1).then_some(())
    })
    .await;
    assert_eq!(user_subscriptions(&nats).await, vec![subject.clone()]);
    drop(resp);
    assert_eq!(bridge.connected_users(), 0, "closing the stream releases the slot");
    eventually("the subscription to go away", WAIT, || async move { (n.subscriptions_on(s).await == 0).then_some(()) })
        .await;
}

/// A percent-encoded byte sequence that is not UTF-8 is still an invalid user id, answered
/// with the JSON error of docs/protocol.md §3 (not the framework's plain-text rejection).
#[tokio::test]
async fn non_utf8_user_id_is_400_json() {
    let nats = NatsServer::start();
    let bridge = start_router(&test_config(&nats.url())).await;
    let router = bridge.router();
    let admin = admin_token();
    let p = token_with("svc", false, &["presence"]);
    for (uri, tok) in [("/v1/users/%FF/events", &admin), ("/v1/users/a%C3/events", &admin), ("/v1/presence/%FF", &p)] {
        expect_error(call(&router, uri, Some(tok)).await, StatusCode::BAD_REQUEST, "invalid_user_id", uri).await;
    }
    assert_nothing_subscribed(&bridge, &nats, "after non-UTF-8 ids").await;
}

#[tokio::test]
async fn invalid_event_filters_are_400_and_subscribe_nothing() {
    let nats = NatsServer::start();
    let bridge = start_router(&test_config(&nats.url())).await;
    let router = bridge.router();
    let tok = token("42");
    for (events, what) in
        [("a.b", "'.'"), ("*", "'*'"), ("%2A", "'*'"), ("a,,b", "empty"), ("", "empty"), ("ok,a%20b", "' '")]
    {
        let uri = format!("/v1/users/42/events?events={events}");
        let error =
            expect_error(call(&router, &uri, Some(&tok)).await, StatusCode::BAD_REQUEST, "invalid_event_name", &uri)
                .await;
        assert!(error.contains("event name"), "{uri}: error does not name the event: {error}");
        assert!(error.contains(what), "{uri}: error does not say why ({what}): {error}");
    }
    assert_nothing_subscribed(&bridge, &nats, "after invalid event filters").await;

    // Control: a valid list is accepted.
    let resp = open_stream(&router, "/v1/users/42/events?events=message_new,typing", Some(&tok)).await;
    assert_eq!(bridge.connected_users(), 1);
    drop(resp);
}

#[tokio::test]
async fn valid_stream_is_event_stream_starting_with_retry() {
    let nats = NatsServer::start();
    let bridge = start_router(&test_config(&nats.url())).await;
    let router = bridge.router();
    let resp = open_stream(&router, "/v1/users/42/events", Some(&token("42"))).await;
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let cc = resp.headers().get(header::CACHE_CONTROL).expect("cache-control").to_str().unwrap();
    assert!(cc.split(',').any(|d| d.trim() == "no-cache"), "cache-control {cc:?}");
    let mut body = resp.into_body();
    let first = read_at_least(&mut body, b"retry: 2000\n\n".len()).await;
    assert!(first.starts_with(b"retry: 2000\n\n"), "first bytes: {:?}", String::from_utf8_lossy(&first));
    assert_eq!(bridge.connected_users(), 1);
    drop(body);
    assert_eq!(bridge.connected_users(), 0);
}

// ---------------------------------------------------------------------------------------
// 2. Auth (HS256)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn missing_token_is_401_bearer() {
    let nats = NatsServer::start();
    let bridge = start_router(&test_config(&nats.url())).await;
    let router = bridge.router();
    expect_401(call(&router, "/v1/users/42/events", None).await, "", "no token").await;
    // An Authorization header that is not Bearer, or has no token, is the same as none.
    for h in ["Basic YWxhZGRpbjpvcGVuc2VzYW1l", "Bearer ", "Bearer"] {
        let req = get("/v1/users/42/events").header(header::AUTHORIZATION, h).body(Body::empty()).unwrap();
        expect_401(send(&router, req).await, "", h).await;
    }
    // An empty query token or cookie is not a token either.
    expect_401(call(&router, "/v1/users/42/events?access_token=", None).await, "", "empty access_token").await;
    let req = get("/v1/users/42/events").header(header::COOKIE, "rb_token=").body(Body::empty()).unwrap();
    expect_401(send(&router, req).await, "", "empty cookie").await;
    assert_nothing_subscribed(&bridge, &nats, "after unauthenticated requests").await;
}

#[tokio::test]
async fn bad_tokens_are_401_without_echoing_them() {
    let nats = NatsServer::start();
    let bridge = start_router(&test_config(&nats.url())).await;
    let router = bridge.router();
    let now = unix_now();

    // Control: the same helper with the right secret and claims is accepted.
    let good = hs256(SECRET.as_bytes(), None, &claims_for("42"));
    drop(open_stream(&router, "/v1/users/42/events", Some(&good)).await);

    let alg_none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(serde_json::to_string(&claims_for("42")).unwrap().as_bytes())
    );
    // Same, but with the HS256 signature of a good token kept: still refused.
    let alg_none_with_sig = format!("{}{}", alg_none, good.rsplit('.').next().unwrap());
    let cases: Vec<(&str, String)> = vec![
        ("malformed", "this-is-not-a-jwt".into()),
        ("malformed three parts", "aaaaaaaaaa.bbbbbbbbbb.cccccccccc".into()),
        ("truncated signature", good[..good.len() - 5].to_owned()),
        ("wrong secret", hs256(b"another-secret-0123456789", None, &claims_for("42"))),
        ("expired an hour ago", hs256(SECRET.as_bytes(), None, &json!({ "sub": "42", "exp": now - 3600 }))),
        ("no exp claim", hs256(SECRET.as_bytes(), None, &json!({ "sub": "42" }))),
        ("exp not a number", hs256(SECRET.as_bytes(), None, &json!({ "sub": "42", "exp": "tomorrow" }))),
        (
            "not valid yet",
            hs256(SECRET.as_bytes(), None, &json!({ "sub": "42", "exp": now + 7200, "nbf": now + 3600 })),
        ),
        ("alg none", alg_none),
        ("alg none with signature", alg_none_with_sig),
        ("sub that is a wildcard", hs256(SECRET.as_bytes(), None, &json!({ "sub": "*", "exp": now + 3600 }))),
    ];
    for (what, tok) in &cases {
        expect_401(call(&router, "/v1/users/42/events", Some(tok)).await, tok, what).await;
        // Through the query string too.
        let uri = format!("/v1/users/42/events?access_token={tok}");
        expect_401(call(&router, &uri, None).await, tok, &format!("{what} (query)")).await;
    }
    // An admin claim does not save a badly signed token.
    let forged_admin =
        hs256(b"another-secret-0123456789", None, &json!({ "sub": "x", "exp": now + 3600, "rb_admin": true }));
    expect_401(call(&router, "/v1/users/42/events", Some(&forged_admin)).await, &forged_admin, "forged admin").await;
    assert_nothing_subscribed(&bridge, &nats, "after bad tokens").await;
}

#[tokio::test]
async fn token_for_another_user_is_403_and_admin_reads_any() {
    let nats = NatsServer::start();
    let bridge = start_router(&test_config(&nats.url())).await;
    let router = bridge.router();
    let t43 = token("43");
    let error = expect_error(
        call(&router, "/v1/users/42/events", Some(&t43)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "43 reading 42",
    )
    .await;
    assert_no_token_text(&error, &t43, "403");
    // A token without sub reads nobody's stream.
    let nosub = hs256(SECRET.as_bytes(), None, &json!({ "exp": unix_now() + 3600 }));
    expect_error(
        call(&router, "/v1/users/42/events", Some(&nosub)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "no sub",
    )
    .await;
    // `rb_admin: false` spelled out is no admin.
    let not_admin =
        hs256(SECRET.as_bytes(), None, &json!({ "sub": "43", "exp": unix_now() + 3600, "rb_admin": false }));
    expect_error(
        call(&router, "/v1/users/42/events", Some(&not_admin)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "rb_admin false",
    )
    .await;
    assert_nothing_subscribed(&bridge, &nats, "after 403s").await;

    let resp = open_stream(&router, "/v1/users/42/events", Some(&token_with("ops", true, &[]))).await;
    assert_eq!(bridge.local_streams("42"), 1);
    drop(resp);
}

#[tokio::test]
async fn token_from_query_or_cookie_and_header_wins() {
    let nats = NatsServer::start();
    let bridge = start_router(&test_config(&nats.url())).await;
    let router = bridge.router();
    let t42 = token("42");

    let resp = open_stream(&router, &format!("/v1/users/42/events?access_token={t42}"), None).await;
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    drop(resp);

    let req = get("/v1/users/42/events")
        .header(header::COOKIE, format!("theme=dark; rb_token={t42}; session=abc"))
        .body(Body::empty())
        .unwrap();
    let resp = send(&router, req).await;
    assert_eq!(resp.status(), StatusCode::OK, "cookie among others: {}", body_text(resp).await);

    // A cookie with a similar name is not the token.
    let req =
        get("/v1/users/42/events").header(header::COOKIE, format!("xrb_token={t42}")).body(Body::empty()).unwrap();
    expect_401(send(&router, req).await, &t42, "xrb_token cookie").await;

    // The header is used when present, even when it is bad and the query is good...
    let req = get(&format!("/v1/users/42/events?access_token={t42}"))
        .header(header::AUTHORIZATION, "Bearer not-a-valid-jwt")
        .body(Body::empty())
        .unwrap();
    expect_401(send(&router, req).await, &t42, "bad header + good query").await;
    // ...and the query before the cookie.
    let req = get("/v1/users/42/events?access_token=not-a-valid-jwt")
        .header(header::COOKIE, format!("rb_token={t42}"))
        .body(Body::empty())
        .unwrap();
    expect_401(send(&router, req).await, &t42, "bad query + good cookie").await;
    // Good header wins over a bad query.
    let req = get("/v1/users/42/events?access_token=not-a-valid-jwt")
        .header(header::AUTHORIZATION, format!("Bearer {t42}"))
        .body(Body::empty())
        .unwrap();
    let resp = send(&router, req).await;
    assert_eq!(resp.status(), StatusCode::OK, "good header + bad query: {}", body_text(resp).await);
    drop(resp);
    // The scheme name is case-insensitive (RFC 7235).
    let req =
        get("/v1/users/42/events").header(header::AUTHORIZATION, format!("bearer {t42}")).body(Body::empty()).unwrap();
    let resp = send(&router, req).await;
    assert_eq!(resp.status(), StatusCode::OK, "lowercase bearer: {}", body_text(resp).await);
}

// ---------------------------------------------------------------------------------------
// 3. Public keys
// ---------------------------------------------------------------------------------------

async fn check_public_key(
    public: &str,
    private: &str,
    other_private: &str,
    alg: Algorithm,
    load: fn(&[u8]) -> EncodingKey,
) {
    let nats = NatsServer::start();
    let bridge = start_router(&public_key_config(&nats.url(), public)).await;
    let router = bridge.router();
    let claims = claims_for("42");

    let good = jsonwebtoken::encode(&Header::new(alg), &claims, &load(&fixture_bytes(private))).unwrap();
    let resp = open_stream(&router, "/v1/users/42/events", Some(&good)).await;
    drop(resp);

    let other = jsonwebtoken::encode(&Header::new(alg), &claims, &load(&fixture_bytes(other_private))).unwrap();
    expect_401(call(&router, "/v1/users/42/events", Some(&other)).await, &other, "other key of the same type").await;

    // The right key but expired: still refused.
    let expired = json!({ "sub": "42", "exp": unix_now() - 3600 });
    let expired = jsonwebtoken::encode(&Header::new(alg), &expired, &load(&fixture_bytes(private))).unwrap();
    expect_401(call(&router, "/v1/users/42/events", Some(&expired)).await, &expired, "expired").await;

    // An HS256 token whose secret is the public key PEM (key confusion): refused.
    let confused = hs256(&fixture_bytes(public), None, &claims);
    expect_401(call(&router, "/v1/users/42/events", Some(&confused)).await, &confused, "HS256 with the public key")
        .await;
    // And a token made with the shared-secret config's secret is not accepted here.
    let hs = token("42");
    expect_401(call(&router, "/v1/users/42/events", Some(&hs)).await, &hs, "HS256 with SECRET").await;
    assert_nothing_subscribed(&bridge, &nats, "after refused tokens").await;
}

fn rsa_key(pem: &[u8]) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem).unwrap()
}
fn ec_key(pem: &[u8]) -> EncodingKey {
    EncodingKey::from_ec_pem(pem).unwrap()
}
fn ed_key(pem: &[u8]) -> EncodingKey {
    EncodingKey::from_ed_pem(pem).unwrap()
}

#[tokio::test]
async fn rs256_public_key() {
    check_public_key("rsa_public.pem", "rsa_private.pem", "rsa_other_private.pem", Algorithm::RS256, rsa_key).await;
}

#[tokio::test]
async fn es256_public_key() {
    check_public_key(
        "ec_p256_public.pem",
        "ec_p256_private.pem",
        "ec_p256_other_private.pem",
        Algorithm::ES256,
        ec_key,
    )
    .await;
}

#[tokio::test]
async fn eddsa_public_key() {
    check_public_key(
        "ed25519_public.pem",
        "ed25519_private.pem",
        "ed25519_other_private.pem",
        Algorithm::EdDSA,
        ed_key,
    )
    .await;
}

#[tokio::test]
async fn rsa_config_refuses_key_confusion_and_other_key_types() {
    let nats = NatsServer::start();
    let bridge = start_router(&public_key_config(&nats.url(), "rsa_public.pem")).await;
    let router = bridge.router();
    let claims = claims_for("42");
    // The classic attack: HS256 "signed" with the RSA public key PEM as the HMAC secret.
    let confused = hs256(&fixture_bytes("rsa_public.pem"), None, &claims);
    expect_401(call(&router, "/v1/users/42/events", Some(&confused)).await, &confused, "key confusion").await;
    // Same with the header claiming HS384/HS512.
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let t = jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(&fixture_bytes("rsa_public.pem")),
        )
        .unwrap();
        expect_401(call(&router, "/v1/users/42/events", Some(&t)).await, &t, "key confusion HS384/512").await;
    }
    // Tokens signed with keys of other types.
    let es =
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &ec_key(&fixture_bytes("ec_p256_private.pem")))
            .unwrap();
    expect_401(call(&router, "/v1/users/42/events", Some(&es)).await, &es, "ES256 under RSA").await;
    let ed =
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &ed_key(&fixture_bytes("ed25519_private.pem")))
            .unwrap();
    expect_401(call(&router, "/v1/users/42/events", Some(&ed)).await, &ed, "EdDSA under RSA").await;
    assert_nothing_subscribed(&bridge, &nats, "after refused tokens").await;
    // Control: the real key works.
    let good =
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &rsa_key(&fixture_bytes("rsa_private.pem")))
            .unwrap();
    drop(open_stream(&router, "/v1/users/42/events", Some(&good)).await);
}

// ---------------------------------------------------------------------------------------
// 4. 429
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn too_many_streams_is_429_until_one_closes() {
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    config.max_streams_per_user = 2;
    let bridge = start_router(&config).await;
    let router = bridge.router();
    let t42 = token("42");
    let uri = "/v1/users/42/events";

    let first = open_stream(&router, uri, Some(&t42)).await;
    let second = open_stream(&router, uri, Some(&t42)).await;
    let error =
        expect_error(call(&router, uri, Some(&t42)).await, StatusCode::TOO_MANY_REQUESTS, "too_many_streams", "third")
            .await;
    assert!(error.contains("42"), "the error names the user: {error}");
    // Refusing does not leak a slot.
    assert_eq!(bridge.local_streams("42"), 2);
    expect_error(call(&router, uri, Some(&t42)).await, StatusCode::TOO_MANY_REQUESTS, "too_many_streams", "fourth")
        .await;
    assert_eq!(bridge.local_streams("42"), 2);

    // Another user is not affected.
    let other = open_stream(&router, "/v1/users/43/events", Some(&token("43"))).await;

    drop(first);
    let r = &router;
    let t = t42.as_str();
    let again = eventually("a slot after closing one stream", WAIT, || async move {
        let resp = call(r, uri, Some(t)).await;
        (resp.status() == StatusCode::OK).then_some(resp)
    })
    .await;
    assert_eq!(again.headers()[header::CONTENT_TYPE], "text/event-stream");
    assert_eq!(bridge.local_streams("42"), 2);
    expect_error(call(&router, uri, Some(&t42)).await, StatusCode::TOO_MANY_REQUESTS, "too_many_streams", "full again")
        .await;
    drop((second, again, other));
}

// ---------------------------------------------------------------------------------------
// 5. POST /v1/publish
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn publish_needs_token_and_scope() {
    let nats = NatsServer::start();
    let bridge = start_router(&test_config(&nats.url())).await;
    let router = bridge.router();
    let (_c, mut users) = subscriber(&nats, "user.>").await;
    let (_c2, mut broadcasts) = subscriber(&nats, "broadcast.>").await;
    let body = r#"{"users":["42"],"event":"message_new","data":{"t":1}}"#;

    expect_401(send(&router, post_json("/v1/publish", None, body)).await, "", "no token").await;
    let bad = hs256(
        b"another-secret-0123456789",
        None,
        &json!({ "sub": "svc", "exp": unix_now() + 3600, "rb_scope": "publish" }),
    );
    expect_401(send(&router, post_json("/v1/publish", Some(&bad), body)).await, &bad, "wrong secret").await;
    for scopes in [&[][..], &["presence"][..], &["publisher"][..]] {
        let t = token_with("svc", false, scopes);
        let error = expect_error(
            send(&router, post_json("/v1/publish", Some(&t), body)).await,
            StatusCode::FORBIDDEN,
            "forbidden",
            "scope",
        )
        .await;
        assert!(error.contains("publish"), "the error names the missing scope: {error}");
    }
    // Nothing reached NATS.
    expect_sentinel_next(&router, &mut users, false).await;
    expect_sentinel_next(&router, &mut broadcasts, true).await;

    // Scope as an OAuth-style string and as a list both work.
    let as_string = hs256(
        SECRET.as_bytes(),
        None,
        &json!({ "sub": "svc", "exp": unix_now() + 3600, "rb_scope": "presence publish" }),
    );
    let v = json_of(
        send(&router, post_json("/v1/publish", Some(&as_string), body)).await,
        StatusCode::ACCEPTED,
        "string scope",
    )
    .await;
    assert_eq!(v, json!({ "published": 1 }));
    // A publish token anywhere but the Authorization header is not looked at.
    let via_query = token_with("svc", false, &["publish"]);
    expect_401(
        send(&router, post_json(&format!("/v1/publish?access_token={via_query}"), None, body)).await,
        &via_query,
        "query token",
    )
    .await;
    // Admin reads any stream and nothing else: no publish without the scope.
    let admin = admin_token();
    let error = expect_error(
        send(&router, post_json("/v1/publish", Some(&admin), body)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "admin without scope",
    )
    .await;
    assert!(error.contains("publish"), "{error}");
}

#[tokio::test]
async fn publish_to_users_reaches_nats_byte_exact() {
    let nats = NatsServer::start();
    let bridge = start_router(&test_config(&nats.url())).await;
    let router = bridge.router();
    let (_c, mut sub) = subscriber(&nats, "user.*.message_new").await;
    let t = token_with("svc", false, &["publish"]);

    let body = r#"{"users":["42","43"],"event":"message_new","data":{"t":1}}"#;
    let resp = send(&router, post_json("/v1/publish", Some(&t), body)).await;
    assert_eq!(json_of(resp, StatusCode::ACCEPTED, "publish").await, json!({ "published": 2 }));
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = next_msg(&mut sub).await;
        assert_eq!(&m.payload[..], br#"{"t":1}"#, "payload byte-exact on {}", m.subject);
        got.push(m.subject.to_string());
    }
    got.sort();
    assert_eq!(got, ["user.42.message_new", "user.43.message_new"]);

    // The payload is forwarded as written (whitespace, key order, unicode escapes kept).
    let body = r#"{"users":["42"],"event":"message_new","data": { "b" : 2, "a":"\u00e9" } }"#;
    let resp = send(&router, post_json("/v1/publish", Some(&t), body)).await;
    assert_eq!(json_of(resp, StatusCode::ACCEPTED, "publish").await, json!({ "published": 1 }));
    let m = next_msg(&mut sub).await;
    assert_eq!(m.subject.as_str(), "user.42.message_new");
    assert_eq!(&m.payload[..], br#"{ "b" : 2, "a":"\u00e9" }"#);

    // The bridge's own stream for 42 gets it too (end to end through the router).
    let stream = open_stream(&router, "/v1/users/42/events", Some(&token("42"))).await;
    let mut sse = stream.into_body();
    read_at_least(&mut sse, b"retry: 2000\n\n".len()).await;
    let body = r#"{"users":["42"],"event":"message_new","data":{"t":3}}"#;
    assert_eq!(send(&router, post_json("/v1/publish", Some(&t), body)).await.status(), StatusCode::ACCEPTED);
    let mut text = Vec::new();
    while !text.windows(2).any(|w| w == b"\n\n") {
        text.extend(read_at_least(&mut sse, 1).await);
    }
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("event: message_new\n") && text.contains(r#""data":{"t":3}"#), "frame: {text}");
}

#[tokio::test]
async fn publish_broadcast_goes_to_broadcast_subject() {
    let nats = NatsServer::start();
    let bridge = start_router(&test_config(&nats.url())).await;
    let router = bridge.router();
    let (_c, mut broadcasts) = subscriber(&nats, "broadcast.>").await;
    let (_c2, mut users) = subscriber(&nats, "user.>").await;
    let t = token_with("svc", false, &["publish"]);
    let body = r#"{"broadcast":true,"event":"system_alert","data":"maintenance"}"#;
    let resp = send(&router, post_json("/v1/publish", Some(&t), body)).await;
    assert_eq!(json_of(resp, StatusCode::ACCEPTED, "broadcast").await, json!({ "published": 1 }));
    let m = next_msg(&mut broadcasts).await;
    assert_eq!(m.subject.as_str(), "broadcast.system_alert");
    assert_eq!(&m.payload[..], br#""maintenance""#);
    // It went to no user subject.
    expect_sentinel_next(&router, &mut users, false).await;
}

/// Someone watching every subject (`nats sub '>'`, a debugging tap, an audit service) is
/// ordinary on a shared NATS. It must not stall or break `POST /v1/publish`.
#[tokio::test]
async fn publish_works_while_someone_listens_on_every_subject() {
    let nats = NatsServer::start();
    let bridge = start_router(&test_config(&nats.url())).await;
    let router = bridge.router();
    let (_c, mut everything) = subscriber(&nats, ">").await;
    let (_c2, mut users) = subscriber(&nats, "user.>").await;
    let t = token_with("svc", false, &["publish"]);
    let body = r#"{"users":["42"],"event":"message_new","data":{"t":1}}"#;
    let resp =
        tokio::time::timeout(Duration::from_secs(5), router.clone().oneshot(post_json("/v1/publish", Some(&t), body)))
            .await
            .expect("publish answered within 5 s while a '>' subscriber exists")
            .unwrap();
    assert_eq!(json_of(resp, StatusCode::ACCEPTED, "publish with a '>' listener").await, json!({ "published": 1 }));
    let m = next_msg(&mut users).await;
    assert_eq!((m.subject.as_str(), &m.payload[..]), ("user.42.message_new", &br#"{"t":1}"#[..]));
    // The tap saw it too (it is a real subscriber, not a no-op).
    let seen = tokio::time::timeout(WAIT, async {
        loop {
            let m = everything.next().await.expect("subscription open");
            if m.subject.as_str() == "user.42.message_new" {
                break;
            }
        }
    })
    .await;
    assert!(seen.is_ok(), "the '>' subscriber did not see the event");
}

#[tokio::test]
async fn invalid_publish_requests_are_400_and_publish_nothing() {
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    config.max_event_bytes = 1024;
    let bridge = start_router(&config).await;
    let router = bridge.router();
    let (_c, mut users) = subscriber(&nats, "user.>").await;
    let (_c2, mut broadcasts) = subscriber(&nats, "broadcast.>").await;
    let t = token_with("svc", false, &["publish"]);

    let too_big = format!(r#"{{"users":["42"],"event":"message_new","data":"{}"}}"#, "x".repeat(1100));
    let cases: Vec<(&str, String, &str, &[&str])> = vec![
        (
            "invalid user in list",
            r#"{"users":["42","a.b"],"event":"message_new","data":{"t":1}}"#.into(),
            "invalid_user_id",
            &["user id", "'.'"],
        ),
        (
            "wildcard user",
            r#"{"users":["*"],"event":"message_new","data":{"t":1}}"#.into(),
            "invalid_user_id",
            &["user id", "'*'"],
        ),
        (
            "tail wildcard user",
            r#"{"users":[">"],"event":"message_new","data":{"t":1}}"#.into(),
            "invalid_user_id",
            &["user id"],
        ),
        (
            "empty user",
            r#"{"users":["42",""],"event":"message_new","data":{"t":1}}"#.into(),
            "invalid_user_id",
            &["user id", "empty"],
        ),
        (
            "invalid event",
            r#"{"users":["42"],"event":"a.b","data":{"t":1}}"#.into(),
            "invalid_event_name",
            &["event name", "'.'"],
        ),
        (
            "wildcard event",
            r#"{"broadcast":true,"event":"*","data":{"t":1}}"#.into(),
            "invalid_event_name",
            &["event name", "'*'"],
        ),
        (
            "empty event",
            r#"{"users":["42"],"event":"","data":{"t":1}}"#.into(),
            "invalid_event_name",
            &["event name", "empty"],
        ),
        (
            "both users and broadcast",
            r#"{"users":["42"],"broadcast":true,"event":"message_new","data":{"t":1}}"#.into(),
            "bad_request",
            &["both"],
        ),
        ("neither", r#"{"event":"message_new","data":{"t":1}}"#.into(), "bad_request", &["users", "broadcast"]),
        ("empty users", r#"{"users":[],"event":"message_new","data":{"t":1}}"#.into(), "bad_request", &["users"]),
        (
            "broadcast false",
            r#"{"broadcast":false,"event":"message_new","data":{"t":1}}"#.into(),
            "bad_request",
            &["users"],
        ),
        ("missing data", r#"{"users":["42"],"event":"message_new"}"#.into(), "bad_request", &["data", "missing"]),
        ("missing event", r#"{"users":["42"],"data":1}"#.into(), "bad_request", &["event", "missing"]),
        ("non-JSON body", "users=42&event=message_new".into(), "bad_request", &[]),
        ("empty body", String::new(), "bad_request", &[]),
        ("data is not JSON", r#"{"users":["42"],"event":"message_new","data":{t:1}}"#.into(), "bad_request", &[]),
        ("data larger than max_event_bytes", too_big, "bad_request", &["1024"]),
    ];
    for (what, body, code, words) in &cases {
        let resp = send(&router, post_json("/v1/publish", Some(&t), body.clone())).await;
        let error = expect_error(resp, StatusCode::BAD_REQUEST, code, what).await;
        for w in *words {
            assert!(
                error.to_lowercase().contains(&w.to_lowercase()),
                "{what}: the reason does not mention {w:?}: {error}"
            );
        }
    }
    // Nothing was published for any of them.
    expect_sentinel_next(&router, &mut users, false).await;
    expect_sentinel_next(&router, &mut broadcasts, true).await;

    // Control, and the boundary: data of exactly max_event_bytes is accepted, and it is
    // the first thing the subscriber sees (NATS keeps one connection's order).
    let exact = format!("\"{}\"", "y".repeat(1022));
    assert_eq!(exact.len(), 1024);
    let body = format!(r#"{{"users":["42"],"event":"message_new","data":{exact}}}"#);
    let resp = send(&router, post_json("/v1/publish", Some(&t), body)).await;
    assert_eq!(json_of(resp, StatusCode::ACCEPTED, "exactly max_event_bytes").await, json!({ "published": 1 }));
    let m = next_msg(&mut users).await;
    assert_eq!(m.subject.as_str(), "user.42.message_new");
    assert_eq!(m.payload.len(), 1024);
}

/// Data far larger than `max_event_bytes` (past the HTTP body limit) is refused like any
/// other oversized data: a JSON error, never the framework's plain-text rejection.
#[tokio::test]
async fn very_large_publish_body_gets_a_json_error() {
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    config.max_event_bytes = 1024;
    let bridge = start_router(&config).await;
    let router = bridge.router();
    let (_c, mut users) = subscriber(&nats, "user.>").await;
    let t = token_with("svc", false, &["publish"]);
    let body = format!(r#"{{"users":["42"],"event":"message_new","data":"{}"}}"#, "z".repeat(200_000));
    let resp = send(&router, post_json("/v1/publish", Some(&t), body)).await;
    let status = resp.status();
    assert!(
        status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE,
        "status {status}: {}",
        body_text(resp).await
    );
    let ct = resp.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
    let text = body_text(resp).await;
    assert!(ct.as_deref().is_some_and(|c| c.starts_with("application/json")), "content-type {ct:?}, body {text:?}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"));
    assert!(v["code"].is_string() && v["error"].as_str().is_some_and(|e| !e.is_empty()), "{text}");
    expect_sentinel_next(&router, &mut users, false).await;
}

/// A known path with the wrong method: 405 with the JSON error body of docs/protocol.md §3.
#[tokio::test]
async fn wrong_method_is_405_json() {
    let nats = NatsServer::start();
    let bridge = start_router(&test_config(&nats.url())).await;
    let router = bridge.router();
    let t = token_with("svc", false, &["publish"]);
    let cases = [
        Request::builder().method("GET").uri("/v1/publish").body(Body::empty()).unwrap(),
        post_json("/v1/users/42/events", Some(&token("42")), "{}"),
        Request::builder().method("DELETE").uri("/v1/presence/42").body(Body::empty()).unwrap(),
        post_json("/healthz", Some(&t), "{}"),
    ];
    for req in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let resp = send(&router, req).await;
        let resp = ensure_status(resp, StatusCode::METHOD_NOT_ALLOWED, &what).await;
        assert!(resp.headers().contains_key(header::ALLOW), "{what}: no Allow header");
        let ct = resp.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
        let text = body_text(resp).await;
        assert!(
            ct.as_deref().is_some_and(|c| c.starts_with("application/json")),
            "{what}: content-type {ct:?}, body {text:?}"
        );
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {text}"));
        assert!(v["code"].is_string() && v["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {text}");
    }
    assert_nothing_subscribed(&bridge, &nats, "after 405s").await;
}

// ---------------------------------------------------------------------------------------
// 6. Presence
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_bad_client_id_is_400_with_the_reason() {
    let nats = NatsServer::start();
    let bridge = start_router(&test_config(&nats.url())).await;
    let router = bridge.router();
    let long = "c".repeat(129);
    for (raw, why) in [("a.b", "'.'"), ("%2A", "'*'"), ("", "empty"), ("t%20b", "' '"), (long.as_str(), "129")] {
        let uri = format!("/v1/users/42/events?clientId={raw}");
        let error = expect_error(
            call(&router, &uri, Some(&token("42"))).await,
            StatusCode::BAD_REQUEST,
            "invalid_client_id",
            &uri,
        )
        .await;
        assert!(error.contains("client id") && error.contains(why), "{uri}: {error}");
    }
    // Nothing was opened on the way.
    assert_eq!(bridge.local_streams("42"), 0);
    // A good one is taken as given, and listed as given.
    let _s = open_stream(&router, "/v1/users/42/events?clientId=tab-1_A", Some(&token("42"))).await;
    let p = token_with("svc", false, &["presence"]);
    let v = json_of(call(&router, "/v1/presence/42", Some(&p)).await, StatusCode::OK, "presence").await;
    assert_eq!(v["clients"][0]["id"], "tab-1_A", "{v}");
}

#[tokio::test]
async fn presence_needs_scope_and_counts_open_streams() {
    let nats = NatsServer::start();
    let bridge = start_router(&test_config(&nats.url())).await;
    let router = bridge.router();
    let p = token_with("svc", false, &["presence"]);

    expect_401(call(&router, "/v1/presence/42", None).await, "", "no token").await;
    for scopes in [&[][..], &["publish"][..]] {
        let t = token_with("svc", false, scopes);
        let error =
            expect_error(call(&router, "/v1/presence/42", Some(&t)).await, StatusCode::FORBIDDEN, "forbidden", "scope")
                .await;
        assert!(error.contains("presence"), "the error names the missing scope: {error}");
    }
    // Not even the user itself without the scope.
    expect_error(call(&router, "/v1/presence/42", Some(&token("42"))).await, StatusCode::FORBIDDEN, "forbidden", "own")
        .await;

    let v = json_of(call(&router, "/v1/presence/42", Some(&p)).await, StatusCode::OK, "presence").await;
    assert_eq!(v, json!({ "userId": "42", "connected": false, "streams": 0, "clients": [] }));

    let stream = open_stream(&router, "/v1/users/42/events", Some(&token("42"))).await;
    let v = json_of(call(&router, "/v1/presence/42", Some(&p)).await, StatusCode::OK, "presence").await;
    assert_eq!(counts(&v), json!({ "userId": "42", "connected": true, "streams": 1 }));
    // A stream without clientId gets a made-up one, in the id grammar.
    let made_up = v["clients"][0]["id"].as_str().unwrap().to_owned();
    assert!(made_up.len() == 22 && made_up.bytes().all(|b| b.is_ascii_alphanumeric()), "{v}");
    // Only 42's streams count for 42.
    let v = json_of(call(&router, "/v1/presence/43", Some(&p)).await, StatusCode::OK, "presence 43").await;
    assert_eq!(v, json!({ "userId": "43", "connected": false, "streams": 0, "clients": [] }));
    // Only from the Authorization header: a query token (proxy logs) or a cookie (sent by
    // the browser on its own) is not looked at here.
    expect_401(call(&router, &format!("/v1/presence/42?access_token={p}"), None).await, &p, "query token").await;
    let req = get("/v1/presence/42").header(header::COOKIE, format!("rb_token={p}")).body(Body::empty()).unwrap();
    expect_401(send(&router, req).await, &p, "cookie token").await;

    drop(stream);
    let r = &router;
    let pt = p.as_str();
    eventually("presence back to 0", WAIT, || async move {
        let v = json_of(call(r, "/v1/presence/42", Some(pt)).await, StatusCode::OK, "presence").await;
        (v == json!({ "userId": "42", "connected": false, "streams": 0, "clients": [] })).then_some(())
    })
    .await;

    for id in ["a.b", "%2A", "%3E", "%20", &"c".repeat(129)] {
        let uri = format!("/v1/presence/{id}");
        let error =
            expect_error(call(&router, &uri, Some(&p)).await, StatusCode::BAD_REQUEST, "invalid_user_id", &uri).await;
        assert!(error.contains("user id"), "{uri}: {error}");
    }
}

// ---------------------------------------------------------------------------------------
// 7. Health, readiness, metrics
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn healthz_readyz_and_metrics() {
    let nats = NatsServer::start();
    let bridge = start_router(&test_config(&nats.url())).await;
    let router = bridge.router();

    let resp = call(&router, "/healthz", None).await;
    assert_eq!(resp.status(), StatusCode::OK);

    let r = &router;
    eventually("/readyz 200 with NATS up", WAIT, || async move {
        (call(r, "/readyz", None).await.status() == StatusCode::OK).then_some(())
    })
    .await;

    let text = eventually("realtime_bridge_nats_connected 1", WAIT, || async move {
        let resp = call(r, "/metrics", None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let text = body_text(resp).await;
        text.lines().any(|l| l == "realtime_bridge_nats_connected 1").then_some(text)
    })
    .await;
    let value = |series: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    };
    assert_eq!(value("realtime_bridge_open_streams"), Some(0.0), "{text}");
    assert_eq!(value(r#"realtime_bridge_events_dropped_total{reason="invalid_json"}"#), Some(0.0), "{text}");

    // The gauge follows open streams, and the drop counter counts a bad payload.
    let stream = open_stream(&router, "/v1/users/42/events", Some(&token("42"))).await;
    let client = nats.client().await;
    publish(&client, "user.42.message_new", "{not json").await;
    let text = eventually("open stream and invalid_json drop counted", WAIT, || async move {
        let text = body_text(call(r, "/metrics", None).await).await;
        (text.lines().any(|l| l == r#"realtime_bridge_events_dropped_total{reason="invalid_json"} 1"#)).then_some(text)
    })
    .await;
    assert!(text.lines().any(|l| l == "realtime_bridge_open_streams 1"), "{text}");
    drop(stream);

    // Metrics and health need no token (they are for the infrastructure).
    let resp = call(&router, "/healthz", Some("garbage")).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

// ---------------------------------------------------------------------------------------
// 8. CORS
// ---------------------------------------------------------------------------------------

fn preflight(origin: &str) -> Request<Body> {
    Request::builder()
        .method("OPTIONS")
        .uri("/v1/users/42/events")
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
        .body(Body::empty())
        .unwrap()
}

fn header_str(resp: &Response<Body>, name: header::HeaderName) -> Option<String> {
    resp.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn cors_allows_listed_origins_with_credentials() {
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    config.cors_origins = vec!["http://app.test".into()];
    let bridge = start_router(&config).await;
    let router = bridge.router();

    let resp = send(&router, preflight("http://app.test")).await;
    assert!(resp.status().is_success(), "preflight status {}", resp.status());
    assert_eq!(header_str(&resp, header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(), Some("http://app.test"));
    assert_eq!(header_str(&resp, header::ACCESS_CONTROL_ALLOW_CREDENTIALS).as_deref(), Some("true"));
    let methods = header_str(&resp, header::ACCESS_CONTROL_ALLOW_METHODS).unwrap_or_default();
    assert!(methods.contains("GET"), "allow-methods {methods:?}");
    let headers = header_str(&resp, header::ACCESS_CONTROL_ALLOW_HEADERS).unwrap_or_default().to_lowercase();
    assert!(headers.contains("authorization"), "allow-headers {headers:?}");

    // The actual request from the listed origin gets the headers too.
    let req = get("/v1/users/42/events")
        .header(header::ORIGIN, "http://app.test")
        .header(header::AUTHORIZATION, format!("Bearer {}", token("42")))
        .body(Body::empty())
        .unwrap();
    let resp = send(&router, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header_str(&resp, header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(), Some("http://app.test"));
    assert_eq!(header_str(&resp, header::ACCESS_CONTROL_ALLOW_CREDENTIALS).as_deref(), Some("true"));
    drop(resp);

    // Unlisted origins (including look-alikes) get no allow-origin.
    for origin in ["http://evil.test", "https://app.test", "http://app.test.evil.test", "http://app.test:8080", "null"]
    {
        let resp = send(&router, preflight(origin)).await;
        assert_eq!(header_str(&resp, header::ACCESS_CONTROL_ALLOW_ORIGIN), None, "preflight from {origin}");
        let req = get("/healthz").header(header::ORIGIN, origin).body(Body::empty()).unwrap();
        let resp = send(&router, req).await;
        assert_eq!(header_str(&resp, header::ACCESS_CONTROL_ALLOW_ORIGIN), None, "GET from {origin}");
    }
}

#[tokio::test]
async fn no_cors_headers_without_configured_origins() {
    let nats = NatsServer::start();
    let bridge = start_router(&test_config(&nats.url())).await;
    let router = bridge.router();
    let resp = send(&router, preflight("http://app.test")).await;
    let cors: Vec<_> =
        resp.headers().keys().filter(|k| k.as_str().starts_with("access-control-")).map(|k| k.to_string()).collect();
    assert!(cors.is_empty(), "CORS headers without --cors-origin: {cors:?}");
    let req = get("/v1/users/42/events")
        .header(header::ORIGIN, "http://app.test")
        .header(header::AUTHORIZATION, format!("Bearer {}", token("42")))
        .body(Body::empty())
        .unwrap();
    let resp = send(&router, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let cors: Vec<_> =
        resp.headers().keys().filter(|k| k.as_str().starts_with("access-control-")).map(|k| k.to_string()).collect();
    assert!(cors.is_empty(), "CORS headers without --cors-origin: {cors:?}");
}

// ---------------------------------------------------------------------------------------
// 9. 404
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_paths_are_404_json() {
    let nats = NatsServer::start();
    let bridge = start_router(&test_config(&nats.url())).await;
    let router = bridge.router();
    let t42 = token("42");
    for uri in
        ["/nope", "/", "/v1", "/v1/users/42", "/v1/users/42/events/extra", "/v1/users/42/other", "/v2/users/42/events"]
    {
        expect_error(call(&router, uri, Some(&t42)).await, StatusCode::NOT_FOUND, "not_found", uri).await;
    }
    assert_nothing_subscribed(&bridge, &nats, "after 404s").await;
}
