//! Keys from an identity provider (`--jwks-url`): a local JWKS endpoint (axum on
//! 127.0.0.1:0, counting its fetches) serves the public JWKs of the test fixtures; tokens are
//! signed with the matching private keys; the bridge runs in-process (or as the real binary)
//! over a real nats-server.
//!
//! Every wait is bounded; nothing sleeps to synchronise.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use common::*;
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use realtime_bridge::auth::{unix_now, Auth, TokenRules};
use realtime_bridge::jwks::{Jwks, JwksOptions};
use realtime_bridge::Config;
use serde_json::{json, Value};
use tower::ServiceExt;

// ---------------------------------------------------------------------------------------
// The identity provider

/// What the JWKS endpoint serves, and how often it was asked.
struct ProviderState {
    keys: Mutex<Vec<Value>>,
    fetches: AtomicUsize,
}

/// A JWKS endpoint on 127.0.0.1 that can be stopped and started again on the same port.
struct Provider {
    addr: SocketAddr,
    state: Arc<ProviderState>,
    running: Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

const JWKS_PATH: &str = "/realms/demo/protocol/openid-connect/certs";

async fn serve_jwks(State(state): State<Arc<ProviderState>>) -> impl IntoResponse {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    let body = json!({ "keys": *state.keys.lock().unwrap() }).to_string();
    // `Connection: close`: no idle keep-alive connection outlives a stop, so a stopped
    // provider is really unreachable.
    ([(header::CONTENT_TYPE, "application/json"), (header::CONNECTION, "close")], body)
}

impl Provider {
    /// A provider that is not running yet, on a port that was free a moment ago.
    fn reserve(keys: Vec<Value>) -> Self {
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let state = Arc::new(ProviderState { keys: Mutex::new(keys), fetches: AtomicUsize::new(0) });
        Self { addr, state, running: None }
    }

    async fn start(keys: Vec<Value>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let state = Arc::new(ProviderState { keys: Mutex::new(keys), fetches: AtomicUsize::new(0) });
        let mut p = Self { addr: listener.local_addr().unwrap(), state, running: None };
        p.serve(listener);
        p
    }

    /// Serves on its port again (bounded retries: the port may take a moment to be free).
    async fn resume(&mut self) {
        assert!(self.running.is_none(), "already running");
        let listener = eventually("the provider's port to be free", WAIT, || async {
            tokio::net::TcpListener::bind(self.addr).await.ok()
        })
        .await;
        self.serve(listener);
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = Router::new().route(JWKS_PATH, axum::routing::get(serve_jwks)).with_state(Arc::clone(&self.state));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        self.running = Some((tx, task));
    }

    /// Stops serving; once this returns, connections to the port are refused.
    async fn stop(&mut self) {
        if let Some((tx, task)) = self.running.take() {
            let _ = tx.send(());
            tokio::time::timeout(WAIT, task).await.expect("provider stops in time").unwrap();
        }
    }

    fn url(&self) -> String {
        format!("http://{}{JWKS_PATH}", self.addr)
    }

    fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    fn set_keys(&self, keys: Vec<Value>) {
        *self.state.keys.lock().unwrap() = keys;
    }
}

// ---------------------------------------------------------------------------------------
// Keys and tokens

/// The public JWK of fixture key `name` (e.g. `rsa`, `ec_p256`) as a provider publishes it.
fn jwk(name: &str, kid: &str, alg: Option<&str>) -> Value {
    let mut v: Value = serde_json::from_slice(&fixture_bytes(&format!("{name}.jwk.json"))).unwrap();
    v["kid"] = json!(kid);
    v["use"] = json!("sig");
    if let Some(alg) = alg {
        v["alg"] = json!(alg);
    }
    v
}

/// A token signed with fixture key `name`'s private key.
fn sign(name: &str, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let pem = fixture_bytes(&format!("{name}_private.pem"));
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .unwrap();
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, &key).unwrap()
}

fn rs256(kid: &str, user: &str) -> String {
    sign("rsa", Algorithm::RS256, Some(kid), &claims_for(user))
}

// ---------------------------------------------------------------------------------------
// The bridge

fn jwks_config(nats_url: &str, jwks_url: &str, rules: TokenRules, options: JwksOptions) -> Config {
    let jwks = Jwks::new(jwks_url, rules, options).unwrap();
    let mut c = Config::new(nats_url, Auth::Jwks(Arc::new(jwks)));
    c.history.mode = realtime_bridge::config::HistoryMode::Off;
    // The bursts below open many streams of one user at once.
    c.max_streams_per_user = 1000;
    c
}

/// `GET /v1/users/{user}/events` with a Bearer token, through the router (bounded).
async fn call(router: &Router, user: &str, token: &str) -> Response<Body> {
    let req = Request::builder()
        .uri(format!("/v1/users/{user}/events"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    tokio::time::timeout(WAIT, router.clone().oneshot(req)).await.expect("an answer in time").unwrap()
}

/// The status; for an error, also the JSON body's `error` and `code` (a stream's body never
/// ends, so it is not read).
async fn outcome(resp: Response<Body>) -> (StatusCode, String, String) {
    let status = resp.status();
    if status == StatusCode::OK {
        return (status, String::new(), String::new());
    }
    let ct = resp.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
    assert!(ct.as_deref().is_some_and(|c| c.starts_with("application/json")), "{status}: content-type {ct:?}");
    let body = tokio::time::timeout(WAIT, resp.into_body().collect()).await.unwrap().unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    (status, v["error"].as_str().unwrap().to_owned(), v["code"].as_str().unwrap().to_owned())
}

async fn status(router: &Router, user: &str, token: &str) -> StatusCode {
    outcome(call(router, user, token).await).await.0
}

/// Asserts a 401 and returns its reason, checking it does not echo the token.
async fn expect_401(router: &Router, user: &str, token: &str, what: &str) -> String {
    let (status, error, code) = outcome(call(router, user, token).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {error}");
    assert_eq!(code, "unauthorized", "{what}");
    for part in token.split('.').filter(|p| p.len() >= 8) {
        assert!(!error.contains(part), "{what}: the error echoes the token: {error}");
    }
    error
}

async fn expect_200(router: &Router, user: &str, token: &str, what: &str) {
    let (status, error, _) = outcome(call(router, user, token).await).await;
    assert_eq!(status, StatusCode::OK, "{what}: {error}");
}

/// Fires `tokens` at once and returns the statuses.
async fn burst(router: &Router, user: &str, tokens: Vec<String>) -> Vec<StatusCode> {
    let calls = tokens.into_iter().map(|t| {
        let router = router.clone();
        let user = user.to_owned();
        tokio::spawn(async move { status(&router, &user, &t).await })
    });
    let mut out = Vec::new();
    for c in futures::future::join_all(calls).await {
        out.push(c.unwrap());
    }
    out
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn a_token_signed_by_the_providers_key_opens_a_stream() {
    let nats = NatsServer::start();
    let provider = Provider::start(vec![
        jwk("rsa", "rsa-1", Some("RS256")),
        jwk("ec_p256", "ec-256", Some("ES256")),
        jwk("ec_p384", "ec-384", None),
        jwk("ed25519", "ed-1", Some("EdDSA")),
        // What real sets also hold, each to be skipped without spoiling the rest: an
        // encryption key, a symmetric key, a curve and a key type the bridge does not take.
        {
            let mut enc = jwk("rsa_other", "enc-1", Some("RSA-OAEP"));
            enc["use"] = json!("enc");
            enc
        },
        json!({"kty": "oct", "kid": "hmac-1", "alg": "HS256", "k": "c2hhcmVkLXNlY3JldC1zaGFyZWQtc2VjcmV0LTAxMjM0NTY3"}),
        json!({"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AQ", "y": "AQ"}),
        json!({"kty": "ML-DSA", "kid": "post-quantum", "pub": "AQ"}),
    ])
    .await;
    let bridge = InProcessBridge::start(jwks_config(
        &nats.url(),
        &provider.url(),
        TokenRules::default(),
        JwksOptions::default(),
    ))
    .await;
    let base = bridge.base();

    // Over real HTTP: the stream opens and carries an event published on NATS.
    let mut sse = SseClient::open(&base, "42", "", Some(&rs256("rsa-1", "42"))).await;
    let client = nats.client().await;
    publish(&client, "user.42.message_new", r#"{"text":"signed by the provider"}"#).await;
    let e = sse.next().await;
    assert_eq!(e.event, "message_new");
    assert_eq!(envelope(&e)["data"]["text"], "signed by the provider");

    // Every supported key type, each by its kid.
    for (name, alg, kid) in [
        ("ec_p256", Algorithm::ES256, "ec-256"),
        ("ec_p384", Algorithm::ES384, "ec-384"),
        ("ed25519", Algorithm::EdDSA, "ed-1"),
    ] {
        let t = sign(name, alg, Some(kid), &claims_for("7"));
        let resp = open_raw(&base, "7", "", Some(&t)).await;
        assert_eq!(resp.status(), 200, "{alg:?} ({kid}): {}", resp.text().await.unwrap());
    }
    // No kid: accepted, as exactly one usable key fits RS256 (the enc key does not count).
    let t = sign("rsa", Algorithm::RS256, None, &claims_for("7"));
    assert_eq!(open_raw(&base, "7", "", Some(&t)).await.status(), 200, "RS256 without kid");

    // The right kid but another key's signature; the kid of the skipped encryption key.
    for (what, t) in [
        ("another key under rsa-1", sign("rsa_other", Algorithm::RS256, Some("rsa-1"), &claims_for("7"))),
        ("the encryption key's kid", sign("rsa_other", Algorithm::RS256, Some("enc-1"), &claims_for("7"))),
        ("another P-256 key under ec-256", sign("ec_p256_other", Algorithm::ES256, Some("ec-256"), &claims_for("7"))),
    ] {
        let resp = open_raw(&base, "7", "", Some(&t)).await;
        assert_eq!(resp.status(), 401, "{what}");
    }
    println!("the provider was fetched {} time(s)", provider.fetches());
}

#[tokio::test]
async fn a_rotated_key_works_without_a_restart_and_unknown_kids_do_not_hammer_the_provider() {
    let nats = NatsServer::start();
    let provider = Provider::start(vec![jwk("rsa", "rsa-1", Some("RS256"))]).await;
    let bridge =
        start_router(&jwks_config(&nats.url(), &provider.url(), TokenRules::default(), JwksOptions::default())).await;
    let router = bridge.router();
    expect_200(&router, "42", &rs256("rsa-1", "42"), "the first key").await;
    // One fetch at start-up, whether the request or the background task got there first.
    let settled = provider.fetches();
    assert_eq!(settled, 1, "start-up fetches");

    // The provider rotates: a new key, with its own kid. Twenty requests carrying it at once
    // all succeed, sharing one fetch.
    provider.set_keys(vec![jwk("rsa", "rsa-1", Some("RS256")), jwk("rsa_other", "rsa-2", Some("RS256"))]);
    let t2 = sign("rsa_other", Algorithm::RS256, Some("rsa-2"), &claims_for("42"));
    let statuses = burst(&router, "42", vec![t2.clone(); 20]).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "new kid: {statuses:?}");
    assert_eq!(provider.fetches(), settled + 1, "one fetch for twenty requests with the new kid");
    expect_200(&router, "42", &rs256("rsa-1", "42"), "the old key still works").await;

    // Two RSA keys now: a token without kid is ambiguous.
    let no_kid = sign("rsa", Algorithm::RS256, None, &claims_for("42"));
    let why = expect_401(&router, "42", &no_kid, "no kid, two RSA keys").await;
    assert!(why.contains("kid"), "{why}");

    // A burst of made-up kids (validly signed otherwise): all refused, and the provider
    // sees at most one more fetch.
    let before = provider.fetches();
    let start = Instant::now();
    let sprayed: Vec<String> = (0..200).map(|i| rs256(&format!("random-{i}-{}", unix_now()), "42")).collect();
    let statuses = burst(&router, "42", sprayed).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED), "{statuses:?}");
    let extra = provider.fetches() - before;
    println!("200 unknown kids in {:?} caused {extra} fetch(es)", start.elapsed());
    assert!(extra <= 1, "200 unknown kids caused {extra} fetches");
    let why = expect_401(&router, "42", &rs256("unknown-kid", "42"), "unknown kid").await;
    assert!(why.contains("kid"), "{why}");
}

#[tokio::test]
async fn a_key_the_provider_removed_stops_working_after_a_refresh() {
    let nats = NatsServer::start();
    let provider =
        Provider::start(vec![jwk("rsa", "rsa-1", Some("RS256")), jwk("ec_p256", "ec-1", Some("ES256"))]).await;
    // A short refresh interval stands in for the 10 minutes of production.
    let options = JwksOptions { refresh_every: Duration::from_millis(200), ..JwksOptions::default() };
    let bridge = start_router(&jwks_config(&nats.url(), &provider.url(), TokenRules::default(), options)).await;
    let router = bridge.router();
    let t_rsa = rs256("rsa-1", "42");
    let t_ec = sign("ec_p256", Algorithm::ES256, Some("ec-1"), &claims_for("42"));
    expect_200(&router, "42", &t_rsa, "rsa-1 before removal").await;
    expect_200(&router, "42", &t_ec, "ec-1 before removal").await;

    provider.set_keys(vec![jwk("ec_p256", "ec-1", Some("ES256"))]);
    let fetches = provider.fetches();
    let start = Instant::now();
    eventually("rsa-1 to be refused after the provider dropped it", WAIT, || {
        let (router, t) = (router.clone(), t_rsa.clone());
        async move { (status(&router, "42", &t).await == StatusCode::UNAUTHORIZED).then_some(()) }
    })
    .await;
    println!("rsa-1 refused {:?} after its removal", start.elapsed());
    assert!(provider.fetches() > fetches, "a fetch happened in between");
    let why = expect_401(&router, "42", &t_rsa, "removed key").await;
    assert!(why.contains("kid"), "{why}");
    expect_200(&router, "42", &t_ec, "ec-1 still published").await;
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_provider_is_down() {
    let nats = NatsServer::start();
    let mut provider = Provider::start(vec![jwk("rsa", "rsa-1", Some("RS256"))]).await;
    // No rate limit here, so that each unknown kid below provably makes a fetch attempt.
    let options = JwksOptions {
        min_refetch: Duration::ZERO,
        refresh_every: Duration::from_millis(200),
        ..JwksOptions::default()
    };
    let bridge = start_router(&jwks_config(&nats.url(), &provider.url(), TokenRules::default(), options)).await;
    let router = bridge.router();
    let t = rs256("rsa-1", "42");
    expect_200(&router, "42", &t, "before the provider goes down").await;

    provider.stop().await;
    assert!(tokio::net::TcpStream::connect(provider.addr).await.is_err(), "the provider is really down");
    for i in 0..3 {
        // The unknown kid makes the bridge try the provider (and fail) before answering...
        expect_401(&router, "42", &rs256(&format!("new-{i}"), "42"), "unknown kid, provider down").await;
        // ...and the cached key still verifies.
        expect_200(&router, "42", &t, "cached key, provider down").await;
    }

    // Back up, with the key rotated: the bridge follows.
    provider.set_keys(vec![jwk("rsa_other", "rsa-2", Some("RS256"))]);
    provider.resume().await;
    let t2 = sign("rsa_other", Algorithm::RS256, Some("rsa-2"), &claims_for("42"));
    expect_200(&router, "42", &t2, "the new key once the provider is back").await;
    eventually("rsa-1 refused once the provider is back without it", WAIT, || {
        let (router, t) = (router.clone(), t.clone());
        async move { (status(&router, "42", &t).await == StatusCode::UNAUTHORIZED).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn provider_down_from_the_start_is_503_until_it_answers() {
    let nats = NatsServer::start();
    let mut provider = Provider::reserve(vec![jwk("rsa", "rsa-1", Some("RS256"))]);
    // Production timings: this is what a client sees when the bridge starts before the provider.
    let bridge =
        start_router(&jwks_config(&nats.url(), &provider.url(), TokenRules::default(), JwksOptions::default())).await;
    let router = bridge.router();
    let t = rs256("rsa-1", "42");
    for _ in 0..3 {
        let (status, error, code) = outcome(call(&router, "42", &t).await).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "before any key was fetched: {error}");
        assert_eq!(code, "unavailable");
        assert!(error.contains("identity provider") && error.contains("not available yet"), "{error}");
    }
    // A malformed token is refused outright; a well-formed one, whatever its kid, has to wait.
    assert_eq!(status(&router, "42", "not-a-jwt.at.all").await, StatusCode::UNAUTHORIZED, "malformed");
    assert_eq!(status(&router, "42", &rs256("other", "42")).await, StatusCode::SERVICE_UNAVAILABLE);

    provider.resume().await;
    let start = Instant::now();
    // Background retries back off from 1 s, token-triggered fetches run at most every 5 s.
    eventually("the stream to open once the provider answers", Duration::from_secs(20), || {
        let (router, t) = (router.clone(), t.clone());
        async move { (status(&router, "42", &t).await == StatusCode::OK).then_some(()) }
    })
    .await;
    println!("the stream opened {:?} after the provider came up", start.elapsed());
    provider.stop().await;
}

#[tokio::test]
async fn audience_and_issuer_must_match_when_configured() {
    let nats = NatsServer::start();
    let provider = Provider::start(vec![jwk("rsa", "rsa-1", Some("RS256"))]).await;
    let iss = "https://idp.example.com/realms/demo";
    let rules = TokenRules {
        audience: vec!["realtime-bridge".into(), "account".into()],
        issuer: Some(iss.into()),
        ..TokenRules::default()
    };
    let bridge = start_router(&jwks_config(&nats.url(), &provider.url(), rules, JwksOptions::default())).await;
    let router = bridge.router();
    let exp = unix_now() + 3600;
    let tok = |c: Value| sign("rsa", Algorithm::RS256, Some("rsa-1"), &c);

    expect_200(&router, "42", &tok(json!({"sub": "42", "exp": exp, "aud": "realtime-bridge", "iss": iss})), "aud")
        .await;
    expect_200(&router, "42", &tok(json!({"sub": "42", "exp": exp, "aud": ["crm", "account"], "iss": iss})), "aud[]")
        .await;
    for (what, c, word) in [
        ("another audience", json!({"sub": "42", "exp": exp, "aud": "crm", "iss": iss}), "aud"),
        ("audiences none of which is ours", json!({"sub": "42", "exp": exp, "aud": ["crm", "erp"], "iss": iss}), "aud"),
        ("no audience", json!({"sub": "42", "exp": exp, "iss": iss}), "aud"),
        (
            "another issuer",
            json!({"sub": "42", "exp": exp, "aud": "account", "iss": "https://evil.example.com"}),
            "iss",
        ),
        (
            "an issuer with a trailing slash",
            json!({"sub": "42", "exp": exp, "aud": "account", "iss": format!("{iss}/")}),
            "iss",
        ),
        ("no issuer", json!({"sub": "42", "exp": exp, "aud": "account"}), "iss"),
    ] {
        let why = expect_401(&router, "42", &tok(c), what).await;
        assert!(why.contains(word), "{what}: {why}");
        assert!(!why.contains("realtime-bridge") && !why.contains("idp.example.com"), "{what} leaks the config: {why}");
    }
}

#[tokio::test]
async fn the_user_id_comes_from_the_configured_claim() {
    let nats = NatsServer::start();
    let provider = Provider::start(vec![jwk("ed25519", "ed-1", None)]).await;
    let rules = TokenRules { user_claim: "preferred_username".into(), ..TokenRules::default() };
    let bridge = start_router(&jwks_config(&nats.url(), &provider.url(), rules, JwksOptions::default())).await;
    let router = bridge.router();
    let exp = unix_now() + 3600;
    let tok = |c: Value| sign("ed25519", Algorithm::EdDSA, Some("ed-1"), &c);

    // Keycloak style: `sub` is an opaque id, the user name is elsewhere.
    let t = tok(json!({"sub": "f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "preferred_username": "alice", "exp": exp}));
    expect_200(&router, "alice", &t, "alice by preferred_username").await;
    let (status, error, _) = outcome(call(&router, "f81d4fae-7dec-11d0-a765-00a0c91e6bf6", &t).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "sub is not the user id any more: {error}");
    // An integer claim is its decimal string.
    expect_200(&router, "1042", &tok(json!({"preferred_username": 1042, "exp": exp})), "integer user id").await;
    // No such claim: the token reads nobody's stream.
    let (status, _, _) = outcome(call(&router, "alice", &tok(json!({"sub": "alice", "exp": exp}))).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "without preferred_username");
    for (what, v) in [
        ("a dot", json!("alice.smith")),
        ("a wildcard", json!("*")),
        ("a float", json!(10.5)),
        ("a list", json!(["alice"])),
    ] {
        let why = expect_401(&router, "alice", &tok(json!({"preferred_username": v, "exp": exp})), what).await;
        assert!(why.contains("preferred_username"), "{what}: the reason names the claim: {why}");
    }
    // `nbf` that is not a number is refused, not ignored; a fractional one is a number.
    let why = expect_401(
        &router,
        "alice",
        &tok(json!({"preferred_username": "alice", "exp": exp, "nbf": "2099-01-01"})),
        "nbf as a date string",
    )
    .await;
    assert!(why.contains("nbf"), "{why}");
    let past = (unix_now() - 60) as f64 + 0.25;
    expect_200(&router, "alice", &tok(json!({"preferred_username": "alice", "exp": exp, "nbf": past})), "float nbf")
        .await;
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    let nats = NatsServer::start();
    let oct = "c2hhcmVkLXNlY3JldC1zaGFyZWQtc2VjcmV0LTAxMjM0NTY3";
    let provider = Provider::start(vec![
        jwk("rsa", "rsa-1", Some("RS256")),
        jwk("ec_p256", "ec-1", Some("ES256")),
        json!({"kty": "oct", "kid": "hmac-1", "alg": "HS256", "k": oct}),
    ])
    .await;
    let bridge =
        start_router(&jwks_config(&nats.url(), &provider.url(), TokenRules::default(), JwksOptions::default())).await;
    let router = bridge.router();
    let c = claims_for("42");
    let rsa_jwk = jwk("rsa", "rsa-1", None);
    use base64::Engine as _;
    let oct_secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(oct).unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let alg_none =
        format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#), b64(c.to_string().as_bytes()));
    let good = rs256("rsa-1", "42");
    let alg_none_with_sig = format!("{alg_none}{}", good.rsplit('.').next().unwrap());

    let cases: Vec<(&str, String)> = vec![
        ("HS256 keyed with the RSA public key PEM", hs256(&fixture_bytes("rsa_public.pem"), Some("rsa-1"), &c)),
        ("the same without kid", hs256(&fixture_bytes("rsa_public.pem"), None, &c)),
        ("HS256 keyed with the JWK's modulus", hs256(rsa_jwk["n"].as_str().unwrap().as_bytes(), Some("rsa-1"), &c)),
        ("HS256 keyed with the whole JWK", hs256(rsa_jwk.to_string().as_bytes(), Some("rsa-1"), &c)),
        ("HS256 with the published oct key", hs256(&oct_secret, Some("hmac-1"), &c)),
        ("HS256 with the oct key, no kid", hs256(&oct_secret, None, &c)),
        ("PS256 under an RS256 key", sign("rsa", Algorithm::PS256, Some("rsa-1"), &c)),
        ("RS256 under an EC kid", sign("rsa", Algorithm::RS256, Some("ec-1"), &c)),
        ("ES384 under a P-256 key", sign("ec_p384", Algorithm::ES384, Some("ec-1"), &c)),
        ("alg none", alg_none),
        ("alg none with a real signature", alg_none_with_sig),
    ];
    for (what, t) in &cases {
        let why = expect_401(&router, "42", t, what).await;
        for alg in ["RS256", "ES256", "PS256", "HS256", "EdDSA"] {
            assert!(!why.contains(alg), "{what}: the reason lists algorithms: {why}");
        }
    }
    let why = expect_401(&router, "42", &cases[0].1, "key confusion").await;
    assert_eq!(why, "token algorithm not accepted");
    expect_200(&router, "42", &good, "control: the real key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flags_wire_a_real_bridge_to_the_provider() {
    let nats = NatsServer::start();
    let provider = Provider::start(vec![jwk("ec_p256", "ec-1", Some("ES256"))]).await;
    let iss = "https://idp.example.com/realms/demo";
    let bridge = BridgeProcess::start(
        &nats.url(),
        &[
            "--jwks-url",
            &provider.url(),
            "--jwt-audience",
            "crm,realtime-bridge",
            "--jwt-issuer",
            iss,
            "--user-claim",
            "uid",
            "--jwt-leeway",
            "5s",
        ],
    );
    let base = bridge.base();
    let exp = unix_now() + 3600;
    let tok = |c: Value| sign("ec_p256", Algorithm::ES256, Some("ec-1"), &c);
    let good = tok(json!({"uid": "42", "sub": "x", "aud": "realtime-bridge", "iss": iss, "exp": exp}));
    let mut sse = SseClient::open(&base, "42", "", Some(&good)).await;
    publish(&nats.client().await, "user.42.message_new", r#"{"n":1}"#).await;
    assert_eq!(envelope(&sse.next().await)["data"], json!({"n": 1}));

    let cases = [
        ("wrong audience", tok(json!({"uid": "42", "aud": "erp", "iss": iss, "exp": exp}))),
        ("wrong issuer", tok(json!({"uid": "42", "aud": "crm", "iss": "https://other", "exp": exp}))),
        // Expired 20 s ago: outside the 5 s leeway (inside the default 30 s one).
        ("expired beyond the leeway", tok(json!({"uid": "42", "aud": "crm", "iss": iss, "exp": unix_now() - 20}))),
    ];
    for (what, t) in cases {
        assert_eq!(open_raw(&base, "42", "", Some(&t)).await.status(), 401, "{what}");
    }
    // `uid` is the user id, not `sub`.
    let t = tok(json!({"uid": "43", "sub": "42", "aud": "crm", "iss": iss, "exp": exp}));
    assert_eq!(open_raw(&base, "42", "", Some(&t)).await.status(), 403, "uid 43 reading 42");
    let logs = bridge.logs();
    assert!(logs.contains("identity provider keys loaded"), "logs:\n{logs}");
}
