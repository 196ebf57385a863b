//! JWT authentication (docs/protocol.md).
//!
//! The token is looked for in `Authorization: Bearer`, then `?access_token=`, then the
//! `rb_token` cookie. Its text is never logged and never echoed in an error.
//!
//! Keys come from an HS256 secret, a PEM public key, or an identity provider's JWKS
//! ([`crate::jwks`]); whatever the key, the same [`TokenRules`] apply to the claims.
//!
//! Nothing here knows HTTP: the HTTP layer hands over the request's [`Credentials`], and a
//! refusal is an [`AuthError`], which `error` turns into a status and a JSON body
//! (docs/architecture.md).

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use realtime_bridge_wire::UserId;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::cli::{KeyArgs, SecretArgs};
use crate::config::ConfigError;
use crate::jwks::{Jwks, JwksOptions};

/// Scope that allows `POST /v1/publish`.
pub(crate) const SCOPE_PUBLISH: &str = "publish";
/// Scope that allows `GET /v1/presence/{userId}`.
pub(crate) const SCOPE_PRESENCE: &str = "presence";

/// Shortest HS256 secret accepted: below this, a secret can be brute-forced offline from any
/// one captured token (RFC 7518 section 3.2 asks for at least the hash size, 256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// A key could not be loaded at start-up.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not a PEM public key of a supported type (RSA, EC P-256/P-384, Ed25519)")]
    UnsupportedKey { path: String },
    #[error("the secret is empty")]
    EmptySecret,
    #[error(
        "the secret is {len} bytes, at least {MIN_SECRET_BYTES} are required: a short HS256 secret can be \
         brute-forced offline from any captured token (make one with `openssl rand -base64 48`)"
    )]
    ShortSecret { len: usize },
}

/// Why a request's credentials were refused. The text is the reason the client is given
/// (never the token itself); `error` decides the status (docs/protocol.md §3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token where the endpoint looks.
    #[error("{}", missing_token(.0))]
    Missing(TokenPlaces),
    /// An `Authorization` header that is not visible ASCII.
    #[error("Authorization header is not ASCII")]
    HeaderNotAscii,
    /// An `Authorization` header that is not `Bearer <jwt>`.
    #[error("Authorization header must be `Bearer <jwt>`")]
    NotBearer,
    /// Past `exp` (and the leeway).
    #[error("token expired")]
    Expired,
    /// Before `nbf` (less the leeway).
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    /// Anything else wrong with the token (signature, algorithm, key, claims), and why.
    #[error("{0}")]
    Invalid(String),
    /// A valid token without the `rb_scope` entry the endpoint needs.
    #[error("token lacks the {scope:?} scope (claim rb_scope)")]
    MissingScope { scope: &'static str },
    /// A valid token for another user's stream (and no `rb_admin`).
    #[error("this token may not read the stream of user {user}")]
    NotYourStream { user: UserId },
    /// `--jwks-url`: no key set was fetched yet, so no token can be checked.
    #[error("the identity provider's keys are not available yet; retry shortly")]
    KeysUnavailable,
}

/// The reason of [`AuthError::Missing`]: where this endpoint looks.
fn missing_token(places: &TokenPlaces) -> &'static str {
    match places {
        TokenPlaces::Header => "missing token: send Authorization: Bearer <jwt>",
        TokenPlaces::HeaderQueryCookie => {
            "missing token: send Authorization: Bearer <jwt>, the access_token query parameter or the rb_token cookie"
        }
    }
}

/// What a token's claims must satisfy, whatever key verified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRules {
    /// Accepted `aud` values. Empty: `aud` is not checked (a provider's tokens often carry an
    /// audience for another API, and refusing them all would be worse than not checking).
    pub audience: Vec<String>,
    /// Required `iss`. `None`: not checked.
    pub issuer: Option<String>,
    /// The claim holding the user id (`sub` unless the provider puts it elsewhere).
    pub user_claim: String,
    /// Clock skew allowed on `exp` and `nbf` (whole seconds count).
    pub leeway: Duration,
}

impl Default for TokenRules {
    fn default() -> Self {
        Self { audience: Vec::new(), issuer: None, user_claim: "sub".into(), leeway: Duration::from_secs(30) }
    }
}

impl TokenRules {
    /// jsonwebtoken's checks for keys of `algs`: algorithm, signature, `aud` and `iss`.
    /// `exp` and `nbf` are checked by [`claims_to_principal`] (jsonwebtoken skips an `nbf`
    /// that is not a number instead of refusing the token).
    pub(crate) fn validation(&self, algs: &[Algorithm]) -> Validation {
        let mut v = Validation::new(algs.first().copied().unwrap_or(Algorithm::RS256));
        v.algorithms = algs.to_vec();
        v.required_spec_claims = HashSet::new();
        v.validate_exp = false;
        v.validate_nbf = false;
        v.leeway = 0;
        if self.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audience);
            v.required_spec_claims.insert("aud".into());
        }
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            v.required_spec_claims.insert("iss".into());
        }
        v
    }

    fn leeway_secs(&self) -> u64 {
        self.leeway.as_secs()
    }
}

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `--no-auth`: every request is let through (loopback only, checked at start-up).
    Disabled,
    /// Verify JWTs with one key (`--jwt-secret`, `--jwt-secret-file`, `--jwt-public-key`).
    Jwt(Box<Verifier>),
    /// Verify JWTs with an identity provider's keys (`--jwks-url`).
    Jwks(Arc<Jwks>),
}

/// A decoding key with the validation rules that go with its type.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    /// The key's algorithm family only, so an HS256 token can't be verified with an RSA
    /// public key used as an HMAC secret (the classic key-confusion attack).
    algorithms: Vec<Algorithm>,
    /// Built from `algorithms` and `rules` once, not per request.
    validation: Validation,
    rules: TokenRules,
}

impl std::fmt::Debug for Verifier {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.algorithms)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

/// Refuses secrets too short to resist an offline guess.
pub(crate) fn check_secret(secret: &[u8]) -> Result<(), KeyError> {
    match secret.len() {
        0 => Err(KeyError::EmptySecret),
        len if len < MIN_SECRET_BYTES => Err(KeyError::ShortSecret { len }),
        _ => Ok(()),
    }
}

/// Reads a secret file; one trailing newline (as editors and `echo` leave it) is not part of it.
pub(crate) fn read_secret_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    let mut bytes =
        std::fs::read(path).map_err(|source| KeyError::Read { path: path.display().to_string(), source })?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    Ok(bytes)
}

/// The HS256 secret of `--jwt-secret` or `--jwt-secret-file` (at most one), length-checked.
/// `Ok(None)`: neither was given.
pub(crate) fn load_secret(args: &SecretArgs) -> Result<Option<Vec<u8>>, ConfigError> {
    let err = |flag| move |e: KeyError| ConfigError { flag, message: e.to_string() };
    let secret = match (&args.jwt_secret, &args.jwt_secret_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError {
                flag: "--jwt-secret-file",
                message: "cannot be combined with --jwt-secret: give one of them".into(),
            })
        }
        (None, None) => return Ok(None),
        (Some(s), None) => {
            check_secret(s.as_bytes()).map_err(err("--jwt-secret"))?;
            s.as_bytes().to_vec()
        }
        (None, Some(path)) => {
            let s = read_secret_file(path).map_err(err("--jwt-secret-file"))?;
            check_secret(&s).map_err(err("--jwt-secret-file"))?;
            s
        }
    };
    Ok(Some(secret))
}

impl Verifier {
    /// HS256 with a shared secret of at least [`MIN_SECRET_BYTES`].
    pub fn from_secret(secret: impl AsRef<[u8]>) -> Result<Self, KeyError> {
        let secret = secret.as_ref();
        check_secret(secret)?;
        Ok(Self::new(DecodingKey::from_secret(secret), &[Algorithm::HS256]))
    }

    /// RS*/PS*, ES256/ES384 or EdDSA, chosen by what the PEM file holds.
    pub fn from_public_key_file(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| KeyError::Read { path: shown.clone(), source })?;
        if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
            use Algorithm::*;
            return Ok(Self::new(key, &[RS256, RS384, RS512, PS256, PS384, PS512]));
        }
        if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
            return Ok(Self::new(key, &[Algorithm::ES256, Algorithm::ES384]));
        }
        if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
            return Ok(Self::new(key, &[Algorithm::EdDSA]));
        }
        Err(KeyError::UnsupportedKey { path: shown })
    }

    fn new(key: DecodingKey, algs: &[Algorithm]) -> Self {
        let rules = TokenRules::default();
        Self { key, algorithms: algs.to_vec(), validation: rules.validation(algs), rules }
    }

    /// The same key under other claim rules (audience, issuer, user claim, leeway).
    #[must_use]
    pub(crate) fn with_rules(mut self, rules: TokenRules) -> Self {
        self.validation = rules.validation(&self.algorithms);
        self.rules = rules;
        self
    }

    /// Checks signature, algorithm, claims and expiry, and returns who the token speaks for.
    pub(crate) fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        verify_with(token, &self.key, &self.validation, &self.rules)
    }
}

/// Verifies `token` with `key` under `validation` (built by [`TokenRules::validation`]) and
/// turns its claims into a [`Principal`].
pub(crate) fn verify_with(
    token: &str,
    key: &DecodingKey,
    validation: &Validation,
    rules: &TokenRules,
) -> Result<Principal, AuthError> {
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, validation).map_err(|e| {
        AuthError::Invalid(match e.kind() {
            ErrorKind::InvalidSignature => "token signature is invalid".into(),
            // Which algorithms the bridge takes is none of the caller's business.
            ErrorKind::InvalidAlgorithm => "token algorithm not accepted".into(),
            ErrorKind::InvalidAudience => "token audience (aud) is not accepted here".into(),
            ErrorKind::InvalidIssuer => "token issuer (iss) is not accepted here".into(),
            ErrorKind::MissingRequiredClaim(c) => format!("token has no valid {c} claim"),
            _ => "token is malformed".into(),
        })
    })?;
    claims_to_principal(&data.claims, rules, unix_now())
}

/// An invalid token, with the reason.
fn refused(reason: impl Into<String>) -> AuthError {
    AuthError::Invalid(reason.into())
}

/// A NumericDate claim (RFC 7519: seconds, possibly fractional). `Ok(None)` when absent; any
/// other JSON type is an error, never "absent".
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(refused(format!("token {name} claim is not a usable number"))),
        },
        Some(_) => Err(refused(format!("token {name} claim must be a number (seconds since 1970)"))),
    }
}

/// The time checks and the bridge's own claims, on claims whose signature was verified.
pub(crate) fn claims_to_principal(
    claims: &Map<String, Value>,
    rules: &TokenRules,
    now: u64,
) -> Result<Principal, AuthError> {
    let leeway = rules.leeway_secs();
    let exp = numeric_date(claims, "exp")?.ok_or_else(|| refused("token has no exp claim"))?;
    // Compared in f64: a fractional `exp` is allowed, and a huge one must not overflow.
    if exp + (leeway as f64) < now as f64 {
        return Err(AuthError::Expired);
    }
    if let Some(nbf) = numeric_date(claims, "nbf")? {
        if nbf > (now + leeway) as f64 {
            return Err(AuthError::NotYetValid);
        }
    }
    let user = match claims.get(&rules.user_claim) {
        None => None,
        Some(v) => {
            let name = &rules.user_claim;
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
                _ => return Err(refused(format!("token {name} claim (the user id) must be a string or an integer"))),
            };
            Some(UserId::parse(&text).map_err(|e| refused(format!("token {name} claim (the user id) {e}")))?)
        }
    };
    let admin = match claims.get("rb_admin") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(refused("token rb_admin claim must be true or false")),
    };
    let scopes = match claims.get("rb_scope") {
        None => BTreeSet::new(),
        Some(v) => {
            Scopes::deserialize(v)
                .map_err(|_| refused("token rb_scope claim must be a string or an array of strings"))?
                .0
        }
    };
    // `as` saturates: an absurd `exp` gives a stream that never ends for expiry, not a panic.
    let expires_at = (exp.floor().max(0.0) as u64).saturating_add(leeway);
    Ok(Principal { user, admin, scopes, expires_at })
}

/// The claims the `token` subcommand (and tests) sign. Verification reads claims as a JSON
/// map instead (see `claims_to_principal`): the user claim's name is configurable.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rb_admin: bool,
    #[serde(default, skip_serializing_if = "Scopes::is_empty")]
    pub rb_scope: Scopes,
}

/// `rb_scope` as an OAuth-style `"publish presence"` string or a JSON array.
#[derive(Debug, Default, Serialize)]
#[serde(transparent)]
pub struct Scopes(pub BTreeSet<String>);

impl Scopes {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let items = match Raw::deserialize(d)? {
            Raw::One(s) => s.split([' ', ',']).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            Raw::Many(v) => v.into_iter().collect(),
        };
        Ok(Self(items))
    }
}

/// Who a verified request speaks for.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    /// The user id from the `--user-claim` claim (`sub` by default). `None`: a token without
    /// it (a service token that only publishes) reads nobody's stream.
    pub(crate) user: Option<UserId>,
    /// `rb_admin: true`: may read any user's stream. It grants nothing else: publishing and
    /// presence need their own scope, so a support console's token cannot publish.
    pub(crate) admin: bool,
    pub(crate) scopes: BTreeSet<String>,
    /// The last Unix second the token is accepted (`exp` plus the leeway): an open stream
    /// ends after it (`end` / `token_expired`).
    pub(crate) expires_at: u64,
}

impl Principal {
    /// Whether this principal may read `user`'s stream.
    pub(crate) fn may_read(&self, user: &UserId) -> bool {
        self.admin || self.user.as_ref() == Some(user)
    }

    /// [`Principal::may_read`] as a refusal.
    pub(crate) fn check_read(&self, user: &UserId) -> Result<(), AuthError> {
        if self.may_read(user) {
            Ok(())
        } else {
            Err(AuthError::NotYourStream { user: user.clone() })
        }
    }

    /// Whether the token's `rb_scope` claim lists `scope` (admin does not imply any).
    pub(crate) fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }
}

/// What a request carries that may hold its token, as sent: the HTTP layer fills it from the
/// request, and [`find_token`] applies the rules.
#[derive(Debug, Clone, Default)]
pub struct Credentials<'a> {
    /// The (first) `Authorization` header's value. Bytes, not text: a value that is not
    /// visible ASCII is refused, not skipped.
    pub authorization: Option<&'a [u8]>,
    /// The `access_token` query parameter.
    pub query: Option<&'a str>,
    /// Every `Cookie` header's value, in the order sent.
    pub cookies: Vec<&'a [u8]>,
}

/// A header value as text when it is visible ASCII (tab included), as `http`'s
/// `HeaderValue::to_str` reads it; `None` otherwise.
fn header_text(value: &[u8]) -> Option<&str> {
    if value.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b)) {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// Where a request may carry its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPlaces {
    /// `Authorization: Bearer` only: every endpoint but the stream. A cookie is sent by the
    /// browser on its own (CSRF), and a query string ends up in proxy logs.
    Header,
    /// Header, then `access_token` query parameter, then `rb_token` cookie: the stream GET,
    /// which `EventSource` opens without custom headers.
    HeaderQueryCookie,
}

impl Auth {
    /// Builds authentication from `serve`'s flags: exactly one key source, or `--no-auth`.
    pub(crate) fn from_args(args: &KeyArgs, no_auth: bool) -> Result<Self, ConfigError> {
        let sources = [
            ("--jwt-secret", args.secret.jwt_secret.is_some()),
            ("--jwt-secret-file", args.secret.jwt_secret_file.is_some()),
            ("--jwt-public-key", args.jwt_public_key.is_some()),
            ("--jwks-url", args.jwks_url.is_some()),
        ];
        let given: Vec<&'static str> = sources.iter().filter(|(_, on)| *on).map(|(flag, _)| *flag).collect();
        if no_auth {
            return match given.first() {
                Some(flag) => {
                    Err(ConfigError { flag: "--no-auth", message: format!("cannot be combined with {flag}") })
                }
                None => Ok(Self::Disabled),
            };
        }
        let flag = match given.as_slice() {
            [] => {
                return Err(ConfigError {
                    flag: "--jwt-secret",
                    message: "authentication needs --jwt-secret, --jwt-secret-file, --jwt-public-key, --jwks-url, \
                              or --no-auth (loopback only)"
                        .into(),
                })
            }
            [one] => *one,
            [first, second, ..] => {
                return Err(ConfigError {
                    flag: second,
                    message: format!(
                        "cannot be combined with {first}: give exactly one of --jwt-secret, --jwt-secret-file, \
                         --jwt-public-key, --jwks-url"
                    ),
                })
            }
        };
        let rules = rules_from_args(args)?;
        let key_err = |e: KeyError| ConfigError { flag, message: e.to_string() };
        // Exactly one source is set from here on.
        if let Some(url) = &args.jwks_url {
            let jwks = Jwks::new(url, rules, JwksOptions::default())
                .map_err(|e| ConfigError { flag, message: e.to_string() })?;
            return Ok(Self::Jwks(Arc::new(jwks)));
        }
        let verifier = match &args.jwt_public_key {
            Some(path) => Verifier::from_public_key_file(path),
            None => Verifier::from_secret(load_secret(&args.secret)?.unwrap_or_default()),
        };
        Ok(Self::Jwt(Box::new(verifier.map_err(key_err)?.with_rules(rules))))
    }

    /// Starts background work (refreshing an identity provider's keys); the caller aborts the
    /// task at shutdown. `None` when there is nothing to run.
    pub(crate) fn start(&self) -> Option<tokio::task::JoinHandle<()>> {
        match self {
            Self::Jwks(jwks) => Some(Arc::clone(jwks).start()),
            Self::Disabled | Self::Jwt(_) => None,
        }
    }

    /// Authenticates a request. `Ok(None)` means auth is disabled.
    pub(crate) async fn authenticate(
        &self,
        credentials: &Credentials<'_>,
        places: TokenPlaces,
    ) -> Result<Option<Principal>, AuthError> {
        if matches!(self, Self::Disabled) {
            return Ok(None);
        }
        let token = find_token(credentials, places)?.ok_or(AuthError::Missing(places))?;
        match self {
            Self::Disabled => Ok(None),
            Self::Jwt(verifier) => verifier.verify(token).map(Some),
            Self::Jwks(jwks) => jwks.verify(token).await.map(Some),
        }
    }

    /// Requires `scope` (publish, presence) from a token in the `Authorization` header.
    /// Disabled auth lets everything through.
    pub(crate) async fn require_scope(
        &self,
        credentials: &Credentials<'_>,
        scope: &'static str,
    ) -> Result<(), AuthError> {
        match self.authenticate(credentials, TokenPlaces::Header).await? {
            Some(p) if !p.has_scope(scope) => Err(AuthError::MissingScope { scope }),
            _ => Ok(()),
        }
    }
}

/// `--jwt-audience`, `--jwt-issuer`, `--user-claim`, `--jwt-leeway`.
fn rules_from_args(args: &KeyArgs) -> Result<TokenRules, ConfigError> {
    let audience: Vec<String> =
        args.jwt_audience.iter().map(|a| a.trim()).filter(|a| !a.is_empty()).map(str::to_owned).collect();
    if !args.jwt_audience.is_empty() && audience.is_empty() {
        return Err(ConfigError {
            flag: "--jwt-audience",
            message: "is empty: give the accepted aud values, or leave the flag out".into(),
        });
    }
    let issuer = match args.jwt_issuer.as_deref().map(str::trim) {
        Some("") => {
            return Err(ConfigError {
                flag: "--jwt-issuer",
                message: "is empty: give the exact iss value, or leave the flag out".into(),
            })
        }
        other => other.map(str::to_owned),
    };
    Ok(TokenRules { audience, issuer, user_claim: args.user_claim.clone(), leeway: args.jwt_leeway })
}

/// Finds the token: header first, then (where allowed) query, then cookie.
///
/// `Ok(None)`: no token where this endpoint looks. A malformed `Authorization` header is an
/// error, never a reason to look further.
pub fn find_token<'a>(credentials: &Credentials<'a>, places: TokenPlaces) -> Result<Option<&'a str>, AuthError> {
    if let Some(v) = credentials.authorization {
        let v = header_text(v).ok_or(AuthError::HeaderNotAscii)?;
        let (scheme, token) = v.split_once(' ').unwrap_or((v, ""));
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthError::NotBearer);
        }
        return Ok(Some(token.trim()));
    }
    if places == TokenPlaces::Header {
        return Ok(None);
    }
    if let Some(t) = credentials.query.filter(|t| !t.is_empty()) {
        return Ok(Some(t));
    }
    for &v in &credentials.cookies {
        let Some(v) = header_text(v) else { continue };
        for pair in v.split(';') {
            if let Some(t) = pair.trim().strip_prefix("rb_token=") {
                if !t.is_empty() {
                    return Ok(Some(t));
                }
            }
        }
    }
    Ok(None)
}

/// Signs an HS256 token (the `token` subcommand and tests).
pub fn sign_hs256(secret: impl AsRef<[u8]>, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_ref()))
}

/// Seconds since the Unix epoch, for `exp`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_900_000_000;
    const SECRET: &str = "unit-test-secret-0123456789-abcdef";

    fn principal(claims: Value, rules: &TokenRules) -> Result<Principal, AuthError> {
        let Value::Object(map) = claims else { panic!("claims must be an object") };
        claims_to_principal(&map, rules, NOW)
    }

    /// The reason an invalid token is refused with (a 401).
    fn refusal(claims: Value, rules: &TokenRules) -> String {
        match principal(claims, rules) {
            Err(e @ (AuthError::Invalid(_) | AuthError::Expired | AuthError::NotYetValid)) => e.to_string(),
            other => panic!("expected an invalid token, got {other:?}"),
        }
    }

    #[test]
    fn nbf_that_is_not_a_number_is_refused_not_ignored() {
        let rules = TokenRules::default();
        for nbf in [json!("2099-01-01"), json!(null), json!([1]), json!({"t": 1}), json!(true)] {
            let m = refusal(json!({"sub": "42", "exp": NOW + 60, "nbf": nbf}), &rules);
            assert!(m.contains("nbf"), "{nbf}: {m}");
        }
        // Numbers, fractional ones included (RFC 7519 NumericDate), are checked by value.
        assert!(principal(json!({"sub": "42", "exp": NOW + 60, "nbf": (NOW - 5) as f64 + 0.5}), &rules).is_ok());
        assert!(principal(json!({"sub": "42", "exp": NOW + 60, "nbf": -1}), &rules).is_ok());
        let m = refusal(json!({"sub": "42", "exp": NOW + 3600, "nbf": 1.9e10}), &rules);
        assert!(m.contains("not valid yet"), "{m}");
    }

    #[test]
    fn exp_must_be_a_number_and_leeway_extends_it() {
        let rules = TokenRules::default();
        assert!(refusal(json!({"sub": "42"}), &rules).contains("exp"));
        assert!(refusal(json!({"sub": "42", "exp": "tomorrow"}), &rules).contains("exp"));
        // Expired 10 s ago: inside the default 30 s leeway, outside a 5 s one.
        let p = principal(json!({"sub": "42", "exp": NOW - 10}), &rules).unwrap();
        assert_eq!(p.expires_at, NOW - 10 + 30);
        let tight = TokenRules { leeway: Duration::from_secs(5), ..TokenRules::default() };
        assert_eq!(refusal(json!({"sub": "42", "exp": NOW - 10}), &tight), "token expired");
        let p = principal(json!({"sub": "42", "exp": (NOW + 100) as f64 + 0.9}), &tight).unwrap();
        assert_eq!(p.expires_at, NOW + 105);
        // nbf 20 s ahead: fine with 30 s of leeway, not with 5.
        assert!(principal(json!({"sub": "42", "exp": NOW + 60, "nbf": NOW + 20}), &rules).is_ok());
        assert!(refusal(json!({"sub": "42", "exp": NOW + 60, "nbf": NOW + 20}), &tight).contains("nbf"));
    }

    #[test]
    fn user_claim_is_a_string_or_an_integer_that_is_a_user_id() {
        let rules = TokenRules { user_claim: "preferred_username".into(), ..TokenRules::default() };
        let p = principal(json!({"sub": "uuid-1", "preferred_username": "alice", "exp": NOW + 60}), &rules).unwrap();
        assert_eq!(p.user.unwrap().as_str(), "alice");
        let p = principal(json!({"preferred_username": 42, "exp": NOW + 60}), &rules).unwrap();
        assert_eq!(p.user.unwrap().as_str(), "42");
        // Absent: a token that reads nobody's stream (not an error by itself).
        assert!(principal(json!({"sub": "alice", "exp": NOW + 60}), &rules).unwrap().user.is_none());
        for bad in [json!("a.b"), json!("*"), json!(""), json!(4.2), json!(true), json!(["alice"])] {
            let m = refusal(json!({"preferred_username": bad, "exp": NOW + 60}), &rules);
            assert!(m.contains("preferred_username"), "{bad}: {m}");
        }
    }

    #[test]
    fn bridge_claims_are_type_checked() {
        let rules = TokenRules::default();
        let p = principal(json!({"exp": NOW + 60, "rb_admin": true, "rb_scope": "publish presence"}), &rules).unwrap();
        assert!(p.admin && p.has_scope("publish") && p.has_scope("presence"));
        assert!(refusal(json!({"exp": NOW + 60, "rb_admin": "yes"}), &rules).contains("rb_admin"));
        assert!(refusal(json!({"exp": NOW + 60, "rb_scope": 7}), &rules).contains("rb_scope"));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(Verifier::from_secret(""), Err(KeyError::EmptySecret)));
        let short = "x".repeat(MIN_SECRET_BYTES - 1);
        let e = Verifier::from_secret(&short).unwrap_err();
        assert!(matches!(e, KeyError::ShortSecret { len: 31 }), "{e:?}");
        assert!(e.to_string().contains("brute-forced"), "{e}");
        assert!(Verifier::from_secret("x".repeat(MIN_SECRET_BYTES)).is_ok());
    }

    #[test]
    fn secret_file_loses_one_trailing_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        for (content, want) in [
            (format!("{SECRET}\n"), SECRET.to_owned()),
            (format!("{SECRET}\r\n"), SECRET.to_owned()),
            (SECRET.to_owned(), SECRET.to_owned()),
            (format!("{SECRET} \n\n"), format!("{SECRET} \n")),
        ] {
            let path = dir.path().join("secret");
            std::fs::write(&path, &content).unwrap();
            assert_eq!(read_secret_file(&path).unwrap(), want.as_bytes(), "{content:?}");
        }
        let path = dir.path().join("short");
        std::fs::write(&path, "too-short\n").unwrap();
        let args = SecretArgs { jwt_secret: None, jwt_secret_file: Some(path) };
        let e = load_secret(&args).unwrap_err();
        assert_eq!(e.flag, "--jwt-secret-file");
        let args = SecretArgs { jwt_secret: Some(SECRET.into()), jwt_secret_file: Some(dir.path().join("secret")) };
        assert!(load_secret(&args).is_err(), "both given");
    }

    fn hs256(claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(SECRET.as_bytes()))
            .unwrap()
    }

    #[test]
    fn audience_and_issuer_apply_to_a_shared_secret_too() {
        let rules = TokenRules {
            audience: vec!["rb".into(), "account".into()],
            issuer: Some("https://idp.example.com".into()),
            ..TokenRules::default()
        };
        let v = Verifier::from_secret(SECRET).unwrap().with_rules(rules);
        let exp = unix_now() + 600;
        let iss = "https://idp.example.com";
        assert!(v.verify(&hs256(&json!({"sub": "42", "exp": exp, "aud": "rb", "iss": iss}))).is_ok());
        assert!(v.verify(&hs256(&json!({"sub": "42", "exp": exp, "aud": ["x", "account"], "iss": iss}))).is_ok());
        let cases = [
            (json!({"sub": "42", "exp": exp, "aud": "other", "iss": iss}), "aud"),
            (json!({"sub": "42", "exp": exp, "iss": iss}), "aud"),
            (json!({"sub": "42", "exp": exp, "aud": 7, "iss": iss}), "aud"),
            (json!({"sub": "42", "exp": exp, "aud": "rb", "iss": "https://evil.example.com"}), "iss"),
            (json!({"sub": "42", "exp": exp, "aud": "rb"}), "iss"),
        ];
        for (claims, word) in cases {
            match v.verify(&hs256(&claims)) {
                Err(AuthError::Invalid(m)) => assert!(m.contains(word), "{claims}: {m}"),
                other => panic!("{claims}: {other:?}"),
            }
        }
        // Without configured rules, an `aud` for some other API does not get a token refused.
        let plain = Verifier::from_secret(SECRET).unwrap();
        assert!(plain.verify(&hs256(&json!({"sub": "42", "exp": exp, "aud": "other"}))).is_ok());
    }

    #[test]
    fn algorithm_errors_do_not_list_what_is_accepted() {
        let v = Verifier::from_secret(SECRET).unwrap();
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &json!({"sub": "42", "exp": unix_now() + 60}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        match v.verify(&t) {
            Err(AuthError::Invalid(m)) => assert_eq!(m, "token algorithm not accepted"),
            other => panic!("{other:?}"),
        }
    }
}
