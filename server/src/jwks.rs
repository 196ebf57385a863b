//! Signing keys from an identity provider's JWKS endpoint (`--jwks-url`): Keycloak, Auth0,
//! Cognito, Clerk, Supabase and the like publish their public keys there, and rotate them.
//!
//! The key set is fetched in the background (at start, then every
//! [`JwksOptions::refresh_every`]) and again when a token names a `kid` the bridge has not
//! seen, at most once per [`JwksOptions::min_refetch`]: a stream of made-up `kid`s must not
//! turn the bridge into a load generator against the provider. A fetch replaces the whole
//! set, so a key the provider withdrew stops working; a failed fetch keeps the keys we have.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::auth::{verify_with, AuthError, Principal, TokenRules};

/// How often the key set is fetched when all is well.
pub(crate) const DEFAULT_REFRESH_EVERY: Duration = Duration::from_secs(600);
/// Least time between two fetches caused by tokens (unknown `kid`, no keys yet).
pub(crate) const DEFAULT_MIN_REFETCH: Duration = Duration::from_secs(5);
/// Longest a fetch may take, body included.
pub(crate) const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest key set accepted: real ones are a few KB; this bounds what a broken or hostile
/// endpoint can make us buffer.
pub(crate) const DEFAULT_MAX_BYTES: usize = 1 << 20;
/// Retry interval of the background fetch after a failure, once keys are cached.
pub(crate) const DEFAULT_RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// At most one warning per this interval about a failing provider (it may be down for hours).
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Timing and size limits of the key fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksOptions {
    /// Background refresh interval after a successful fetch (picks up rotations and removals).
    pub refresh_every: Duration,
    /// Least time between two token-triggered fetches (rate limit against `kid` spraying).
    pub min_refetch: Duration,
    /// Timeout of one fetch, body included.
    pub fetch_timeout: Duration,
    /// Largest response body accepted.
    pub max_bytes: usize,
    /// Background retry interval after a failed fetch once keys are cached (before any key
    /// was fetched, retries start at 1 s and back off up to this).
    pub retry_after_failure: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        Self {
            refresh_every: DEFAULT_REFRESH_EVERY,
            min_refetch: DEFAULT_MIN_REFETCH,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            max_bytes: DEFAULT_MAX_BYTES,
            retry_after_failure: DEFAULT_RETRY_AFTER_FAILURE,
        }
    }
}

/// A bad `--jwks-url`, or a failed fetch (logged, never shown to clients).
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("{url:?} is not a URL ({reason})")]
    BadUrl { url: String, reason: String },
    #[error("{url:?} must be an http:// or https:// URL")]
    Scheme { url: String },
    #[error("cannot set up the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("request failed: {0}")]
    Request(#[source] reqwest::Error),
    #[error("the provider answered HTTP {0}")]
    Status(u16),
    #[error("the answer is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("the answer is not a JWKS document: {0}")]
    Json(#[source] serde_json::Error),
    #[error("none of its {total} keys is a usable signing key (RSA, EC P-256/P-384, Ed25519)")]
    NoUsableKeys { total: usize },
}

/// One usable key of the set.
struct Key {
    kid: Option<String>,
    key: DecodingKey,
    /// Algorithms this key verifies (from its `alg`, else its type and curve), with the
    /// bridge's claim rules: a token cannot pick an algorithm family the key isn't for.
    validation: Validation,
}

impl Key {
    fn accepts(&self, alg: Algorithm) -> bool {
        self.validation.algorithms.contains(&alg)
    }
}

/// The provider's usable keys at the last successful fetch.
struct KeySet {
    all: Vec<Arc<Key>>,
    by_kid: HashMap<String, Vec<Arc<Key>>>,
}

/// What the cached set says about a token's header.
enum Lookup {
    Found(Arc<Key>),
    UnknownKid,
    AlgorithmNotAccepted,
    /// No `kid`, and more than one key fits the algorithm.
    Ambiguous,
}

impl KeySet {
    fn parse(body: &[u8], rules: &TokenRules) -> Result<Self, JwksError> {
        // Each key is parsed on its own: one key of a type jsonwebtoken does not know (a new
        // curve, an encryption algorithm) must not make the whole set unusable.
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        let raw: RawSet = serde_json::from_slice(body).map_err(JwksError::Json)?;
        let total = raw.keys.len();
        let mut all = Vec::new();
        let mut by_kid: HashMap<String, Vec<Arc<Key>>> = HashMap::new();
        for value in raw.keys {
            let shown_kid = value.get("kid").and_then(|k| k.as_str()).unwrap_or("").to_owned();
            let jwk = match serde_json::from_value::<Jwk>(value) {
                Ok(jwk) => jwk,
                Err(e) => {
                    tracing::debug!(kid = shown_kid, error = %e, "JWKS: skipping a key that does not parse");
                    continue;
                }
            };
            let algs = match signing_algorithms(&jwk) {
                Ok(algs) => algs,
                Err(why) => {
                    tracing::debug!(kid = shown_kid, why, "JWKS: skipping a key");
                    continue;
                }
            };
            let key = match DecodingKey::from_jwk(&jwk) {
                Ok(k) => k,
                Err(e) => {
                    tracing::debug!(kid = shown_kid, error = %e, "JWKS: skipping a key with bad parameters");
                    continue;
                }
            };
            let key = Arc::new(Key { kid: jwk.common.key_id.clone(), key, validation: rules.validation(&algs) });
            if let Some(kid) = &key.kid {
                by_kid.entry(kid.clone()).or_default().push(Arc::clone(&key));
            }
            all.push(key);
        }
        if all.is_empty() {
            return Err(JwksError::NoUsableKeys { total });
        }
        Ok(Self { all, by_kid })
    }

    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                None => Lookup::UnknownKid,
                Some(keys) => match keys.iter().find(|k| k.accepts(alg)) {
                    Some(k) => Lookup::Found(Arc::clone(k)),
                    None => Lookup::AlgorithmNotAccepted,
                },
            },
            None => {
                let mut fits = self.all.iter().filter(|k| k.accepts(alg));
                match (fits.next(), fits.next()) {
                    (Some(k), None) => Lookup::Found(Arc::clone(k)),
                    (None, _) => Lookup::AlgorithmNotAccepted,
                    (Some(_), Some(_)) => Lookup::Ambiguous,
                }
            }
        }
    }

    /// Key ids, sorted, to log what changed.
    fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.all.iter().map(|k| k.kid.as_deref().unwrap_or("-")).collect();
        kids.sort_unstable();
        kids
    }
}

/// The algorithms a JWK may verify, or why it is skipped.
fn signing_algorithms(jwk: &Jwk) -> Result<Vec<Algorithm>, &'static str> {
    use Algorithm::*;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Err("an encryption key (use: enc)");
    }
    if jwk.common.key_operations.as_ref().is_some_and(|ops| !ops.contains(&KeyOperations::Verify)) {
        return Err("key_ops does not include verify");
    }
    let declared = jwk.common.key_algorithm;
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => match declared {
            None => Ok(vec![RS256, RS384, RS512, PS256, PS384, PS512]),
            Some(KeyAlgorithm::RS256) => Ok(vec![RS256]),
            Some(KeyAlgorithm::RS384) => Ok(vec![RS384]),
            Some(KeyAlgorithm::RS512) => Ok(vec![RS512]),
            Some(KeyAlgorithm::PS256) => Ok(vec![PS256]),
            Some(KeyAlgorithm::PS384) => Ok(vec![PS384]),
            Some(KeyAlgorithm::PS512) => Ok(vec![PS512]),
            Some(_) => Err("an RSA key whose alg is not a signature algorithm"),
        },
        AlgorithmParameters::EllipticCurve(p) => {
            let (alg, named) = match p.curve {
                EllipticCurve::P256 => (ES256, KeyAlgorithm::ES256),
                EllipticCurve::P384 => (ES384, KeyAlgorithm::ES384),
                _ => return Err("an EC key on an unsupported curve (P-256 and P-384 are)"),
            };
            match declared {
                None => Ok(vec![alg]),
                Some(d) if d == named => Ok(vec![alg]),
                Some(_) => Err("an EC key whose alg does not match its curve"),
            }
        }
        AlgorithmParameters::OctetKeyPair(p) => match (&p.curve, declared) {
            (EllipticCurve::Ed25519, None | Some(KeyAlgorithm::EdDSA)) => Ok(vec![EdDSA]),
            _ => Err("an OKP key that is not an Ed25519 signing key"),
        },
        // A symmetric key has no business in a public key set, and accepting one would let
        // anyone who reads the set sign tokens.
        AlgorithmParameters::OctetKey(_) => Err("a symmetric (oct) key"),
    }
}

/// Why a request asks for a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Its `kid` is not in the cached set (maybe a rotation).
    UnknownKid,
    /// No set was ever fetched.
    FirstKeys,
}

/// Single-flight state, guarded by the fetch mutex.
#[derive(Debug, Default)]
struct FetchState {
    /// When the last fetch for an unknown `kid` started (rate limit).
    last_unknown_kid: Option<Instant>,
    /// When the last fetch for a request that found no keys at all started (rate limit). Kept
    /// apart from the above: requests racing the first fetch at start-up must not use up the
    /// slot a rotation right after start-up needs.
    last_first_keys: Option<Instant>,
}

impl FetchState {
    fn last(&mut self, want: Want) -> &mut Option<Instant> {
        match want {
            Want::UnknownKid => &mut self.last_unknown_kid,
            Want::FirstKeys => &mut self.last_first_keys,
        }
    }
}

/// An identity provider's key set, cached and refreshed.
pub struct Jwks {
    /// Where the keys come from (logged, never shown to clients).
    url: reqwest::Url,
    http: reqwest::Client,
    rules: TokenRules,
    options: JwksOptions,
    /// The keys of the last successful fetch; `None` until one succeeded (requests get 503).
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Successful fetches so far: a request that waited for someone else's fetch sees that it
    /// happened and does not fetch again.
    generation: AtomicU64,
    /// Held for the whole of a fetch, so there is one at a time and waiters share its result.
    fetch: Arc<tokio::sync::Mutex<FetchState>>,
    /// When a failing fetch was last logged as a warning.
    last_warning: std::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url.as_str())
            .field("keys", &self.current().map(|s| s.all.len()))
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// Checks the URL and prepares the HTTP client; fetches nothing yet (`start` does, when the server runs).
    pub fn new(url: &str, rules: TokenRules, options: JwksOptions) -> Result<Self, JwksError> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| JwksError::BadUrl { url: url.to_owned(), reason: e.to_string() })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(JwksError::Scheme { url: url.to_owned() });
        }
        let http = reqwest::Client::builder()
            .timeout(options.fetch_timeout)
            .connect_timeout(options.fetch_timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("realtime-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(JwksError::Client)?;
        Ok(Self {
            url: parsed,
            http,
            rules,
            options,
            keys: RwLock::new(None),
            generation: AtomicU64::new(0),
            fetch: Arc::new(tokio::sync::Mutex::new(FetchState::default())),
            last_warning: std::sync::Mutex::new(None),
        })
    }

    /// Starts the background refresh (first fetch right away). Aborting the task stops it.
    pub(crate) fn start(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        if self.url.scheme() == "http" && !is_loopback_host(&self.url) {
            tracing::warn!(url = %self.url, "--jwks-url is plain http: the keys can be replaced in transit; use https");
        }
        tokio::spawn(async move { self.refresh_loop().await })
    }

    /// Whether a fetch has succeeded yet.
    pub(crate) fn has_keys(&self) -> bool {
        self.current().is_some()
    }

    /// Verifies a token with the provider's key named by its `kid` (or its only key for its
    /// algorithm), fetching the set again for an unknown `kid` (rate-limited).
    pub(crate) async fn verify(self: &Arc<Self>, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid("token is malformed".into()))?;
        let seen = self.generation.load(Ordering::Acquire);
        let mut refetched = false;
        loop {
            let lookup = self.current().map(|set| set.lookup(header.kid.as_deref(), header.alg));
            match lookup {
                Some(Lookup::Found(key)) => return verify_with(token, &key.key, &key.validation, &self.rules),
                Some(Lookup::AlgorithmNotAccepted) => {
                    return Err(AuthError::Invalid("token algorithm not accepted".into()))
                }
                Some(Lookup::Ambiguous) => {
                    return Err(AuthError::Invalid(
                        "token has no kid header, and more than one of the identity provider's keys fits its \
                         algorithm"
                            .into(),
                    ))
                }
                Some(Lookup::UnknownKid) if refetched => {
                    return Err(AuthError::Invalid(
                        "token kid names none of the identity provider's current keys".into(),
                    ))
                }
                None if refetched => return Err(AuthError::KeysUnavailable),
                Some(Lookup::UnknownKid) => {
                    self.refetch_on_demand(seen, Want::UnknownKid).await;
                    refetched = true;
                }
                None => {
                    self.refetch_on_demand(seen, Want::FirstKeys).await;
                    refetched = true;
                }
            }
        }
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// A fetch on behalf of a request, shared with concurrent ones and rate-limited. Returns
    /// once a fetch finished (or was skipped); bounded by the fetch timeout, twice at worst.
    async fn refetch_on_demand(self: &Arc<Self>, seen: u64, want: Want) {
        let wait = self.options.fetch_timeout + Duration::from_secs(1);
        let Ok(mut state) = tokio::time::timeout(wait, Arc::clone(&self.fetch).lock_owned()).await else {
            return;
        };
        if self.generation.load(Ordering::Acquire) != seen {
            return; // a fetch finished while we waited: its keys are the ones to look in
        }
        let now = Instant::now();
        let last = state.last(want);
        if last.is_some_and(|t| now.duration_since(t) < self.options.min_refetch) {
            return;
        }
        *last = Some(now);
        // In its own task, holding the lock: a client that hangs up mid-fetch neither cancels
        // the fetch (wasting the rate-limit slot) nor lets a second one start alongside.
        let this = Arc::clone(self);
        let _ = tokio::spawn(async move {
            let why = match want {
                Want::UnknownKid => "a token names an unknown kid",
                Want::FirstKeys => "a request found no keys yet",
            };
            this.fetch_and_install(why).await;
            drop(state);
        })
        .await;
    }

    async fn refresh_loop(&self) {
        let mut backoff = Duration::from_secs(1);
        // The generation after this loop's last fetch: if it moved, a request fetched since,
        // and the set is as fresh as a fetch now would make it.
        let mut seen = 0;
        loop {
            let ok = {
                let _one_at_a_time = self.fetch.lock().await;
                self.generation.load(Ordering::Acquire) != seen || self.fetch_and_install("scheduled").await
            };
            seen = self.generation.load(Ordering::Acquire);
            let wait = if ok {
                backoff = Duration::from_secs(1);
                self.options.refresh_every
            } else if self.has_keys() {
                self.options.retry_after_failure.min(self.options.refresh_every)
            } else {
                // No keys means every request gets 503: retry soon, backing off.
                let w = backoff;
                backoff = (backoff * 2).min(self.options.retry_after_failure);
                w
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Fetches and, on success, replaces the key set. Call with the fetch lock held.
    async fn fetch_and_install(&self, why: &'static str) -> bool {
        let result = match self.download().await {
            Ok(body) => KeySet::parse(&body, &self.rules),
            Err(e) => Err(e),
        };
        match result {
            Ok(set) => {
                let before = self.current();
                let changed = before.as_ref().is_none_or(|b| b.kids() != set.kids());
                if changed {
                    tracing::info!(url = %self.url, kids = ?set.kids(), why, "identity provider keys loaded");
                } else {
                    tracing::debug!(url = %self.url, why, "identity provider keys unchanged");
                }
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(set));
                self.generation.fetch_add(1, Ordering::AcqRel);
                true
            }
            Err(e) => {
                let cached = self.has_keys();
                if self.should_warn() {
                    if cached {
                        tracing::warn!(url = %self.url, error = %e, why, "cannot fetch the identity provider's keys; still using the cached ones");
                    } else {
                        tracing::warn!(url = %self.url, error = %e, why, "cannot fetch the identity provider's keys; requests get 503 until it answers");
                    }
                } else {
                    tracing::debug!(url = %self.url, error = %e, why, "cannot fetch the identity provider's keys");
                }
                false
            }
        }
    }

    /// GETs the set, refusing bodies over `max_bytes` without buffering them.
    async fn download(&self) -> Result<Vec<u8>, JwksError> {
        let max = self.options.max_bytes;
        let mut resp = self
            .http
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/jwk-set+json, application/json")
            .send()
            .await
            .map_err(JwksError::Request)?;
        if !resp.status().is_success() {
            return Err(JwksError::Status(resp.status().as_u16()));
        }
        if resp.content_length().is_some_and(|n| n > max as u64) {
            return Err(JwksError::TooLarge { max });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(JwksError::Request)? {
            if body.len() + chunk.len() > max {
                return Err(JwksError::TooLarge { max });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn should_warn(&self) -> bool {
        let mut last = self.last_warning.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }
}

fn is_loopback_host(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or("");
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::{json, Value};

    fn jwk(fixture: &str, extra: Value) -> Value {
        let mut v: Value = serde_json::from_str(fixture).unwrap();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    const RSA: &str = include_str!("../tests/fixtures/rsa.jwk.json");
    const RSA_OTHER: &str = include_str!("../tests/fixtures/rsa_other.jwk.json");
    const P256: &str = include_str!("../tests/fixtures/ec_p256.jwk.json");
    const P384: &str = include_str!("../tests/fixtures/ec_p384.jwk.json");
    const ED: &str = include_str!("../tests/fixtures/ed25519.jwk.json");

    fn parse(keys: Vec<Value>) -> Result<KeySet, JwksError> {
        KeySet::parse(json!({ "keys": keys }).to_string().as_bytes(), &TokenRules::default())
    }

    fn algs(set: &KeySet, kid: &str) -> Vec<Algorithm> {
        set.by_kid[kid][0].validation.algorithms.clone()
    }

    #[test]
    fn keeps_signing_keys_with_the_algorithms_they_are_for() {
        use Algorithm::*;
        let set = parse(vec![
            jwk(RSA, json!({"kid": "rsa-alg", "alg": "PS256", "use": "sig"})),
            jwk(RSA_OTHER, json!({"kid": "rsa-any"})),
            jwk(P256, json!({"kid": "p256"})),
            jwk(P384, json!({"kid": "p384", "alg": "ES384"})),
            jwk(ED, json!({"kid": "ed", "alg": "EdDSA"})),
            // Skipped, each for its own reason; none of them spoils the others.
            jwk(RSA, json!({"kid": "enc", "use": "enc"})),
            jwk(RSA, json!({"kid": "oaep", "alg": "RSA-OAEP"})),
            jwk(RSA, json!({"kid": "ops", "key_ops": ["encrypt"]})),
            jwk(P256, json!({"kid": "mismatch", "alg": "ES384"})),
            json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "alg": "HS256"}),
            json!({"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"}),
            json!({"kty": "OKP", "crv": "X25519", "kid": "x25519", "x": "AA"}),
            json!({"kty": "RSA", "kid": "future-alg", "alg": "RS1024", "n": "AQAB", "e": "AQAB"}),
            json!({"kty": "PQC", "kid": "future-kty"}),
            json!("not even an object"),
        ])
        .unwrap();
        assert_eq!(set.kids(), ["ed", "p256", "p384", "rsa-alg", "rsa-any"]);
        assert_eq!(algs(&set, "rsa-alg"), [PS256]);
        assert_eq!(algs(&set, "rsa-any"), [RS256, RS384, RS512, PS256, PS384, PS512]);
        assert_eq!(algs(&set, "p256"), [ES256]);
        assert_eq!(algs(&set, "p384"), [ES384]);
        assert_eq!(algs(&set, "ed"), [EdDSA]);
    }

    #[test]
    fn lookup_by_kid_or_by_the_only_key_that_fits() {
        use Algorithm::*;
        let set = parse(vec![
            jwk(RSA, json!({"kid": "a", "alg": "RS256"})),
            jwk(RSA_OTHER, json!({"kid": "b", "alg": "RS256"})),
            jwk(P256, json!({"kid": "c"})),
            jwk(ED, json!({})),
        ])
        .unwrap();
        assert!(matches!(set.lookup(Some("a"), RS256), Lookup::Found(k) if k.kid.as_deref() == Some("a")));
        assert!(matches!(set.lookup(Some("a"), HS256), Lookup::AlgorithmNotAccepted));
        assert!(matches!(set.lookup(Some("a"), PS256), Lookup::AlgorithmNotAccepted));
        assert!(matches!(set.lookup(Some("c"), ES384), Lookup::AlgorithmNotAccepted));
        assert!(matches!(set.lookup(Some("zzz"), RS256), Lookup::UnknownKid));
        assert!(matches!(set.lookup(None, RS256), Lookup::Ambiguous));
        assert!(matches!(set.lookup(None, ES256), Lookup::Found(k) if k.kid.as_deref() == Some("c")));
        assert!(matches!(set.lookup(None, EdDSA), Lookup::Found(k) if k.kid.is_none()));
        assert!(matches!(set.lookup(None, HS256), Lookup::AlgorithmNotAccepted));
    }

    #[test]
    fn a_set_without_usable_keys_is_an_error_not_an_empty_set() {
        assert!(matches!(parse(vec![]), Err(JwksError::NoUsableKeys { total: 0 })));
        let only_enc = vec![jwk(RSA, json!({"use": "enc"}))];
        assert!(matches!(parse(only_enc), Err(JwksError::NoUsableKeys { total: 1 })));
        assert!(matches!(KeySet::parse(b"<html>", &TokenRules::default()), Err(JwksError::Json(_))));
    }

    #[test]
    fn only_http_urls() {
        let new = |u: &str| Jwks::new(u, TokenRules::default(), JwksOptions::default());
        assert!(new("https://idp.example.com/.well-known/jwks.json").is_ok());
        assert!(matches!(new("ftp://idp.example.com/jwks"), Err(JwksError::Scheme { .. })));
        assert!(matches!(new("idp.example.com/jwks"), Err(JwksError::BadUrl { .. })));
    }
}
