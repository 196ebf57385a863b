//! JWT authentication (DESIGN.md section 2).
//!
//! The token is looked for in `Authorization: Bearer`, then `?access_token=`, then the
//! `rb_token` cookie. Its text is never logged and never echoed in an error.

use std::collections::BTreeSet;
use std::path::Path;

use axum::http::{header, HeaderMap};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use realtime_bridge_wire::UserId;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::AppError;

/// Scope that allows `POST /v1/publish`.
pub const SCOPE_PUBLISH: &str = "publish";
/// Scope that allows `GET /v1/presence/{userId}`.
pub const SCOPE_PRESENCE: &str = "presence";

/// A key could not be loaded at start-up.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not a PEM public key of a supported type (RSA, EC P-256/P-384, Ed25519)")]
    UnsupportedKey { path: String },
    #[error("the secret is empty")]
    EmptySecret,
}

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `--no-auth`: every request is let through (loopback only, checked at start-up).
    Disabled,
    /// Verify JWTs with one key.
    Jwt(Box<Verifier>),
}

/// A decoding key with the validation rules that go with its type.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    /// Restricted to the key's algorithm family, so an HS256 token can't be verified
    /// with an RSA public key used as an HMAC secret (the classic key-confusion attack).
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("algorithms", &self.validation.algorithms).finish_non_exhaustive()
    }
}

impl Verifier {
    /// HS256 with a shared secret.
    pub fn from_secret(secret: &str) -> Result<Self, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        Ok(Self::new(DecodingKey::from_secret(secret.as_bytes()), &[Algorithm::HS256]))
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
        let mut validation = Validation::new(algs[0]);
        validation.algorithms = algs.to_vec();
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // No audience is configured, so none is checked (otherwise tokens carrying
        // an `aud` for another service would all be refused).
        validation.validate_aud = false;
        validation.leeway = 30;
        Self { key, validation }
    }

    /// Checks signature, algorithm and expiry, and returns who the token speaks for.
    pub fn verify(&self, token: &str) -> Result<Principal, AppError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
            AppError::Unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => "token expired".into(),
                ErrorKind::ImmatureSignature => "token not valid yet (nbf)".into(),
                ErrorKind::InvalidSignature => "token signature is invalid".into(),
                ErrorKind::InvalidAlgorithm => {
                    format!("token algorithm not accepted (this bridge accepts {:?})", self.validation.algorithms)
                }
                ErrorKind::MissingRequiredClaim(c) => format!("token has no {c} claim"),
                ErrorKind::InvalidSubject => "token sub claim is invalid".into(),
                ErrorKind::Json(_) => "token claims are malformed (exp must be a number, sub a string)".into(),
                _ => "token is malformed".into(),
            })
        })?;
        let claims = data.claims;
        let sub = match claims.sub {
            Some(s) => Some(UserId::parse(&s).map_err(|e| AppError::Unauthorized(format!("token sub claim {e}")))?),
            None => None,
        };
        Ok(Principal {
            sub,
            admin: claims.rb_admin,
            scopes: claims.rb_scope.0,
            expires_at: claims.exp.saturating_add(self.validation.leeway),
        })
    }
}

/// The claims the bridge reads. Unknown claims are ignored.
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
pub struct Principal {
    pub sub: Option<UserId>,
    /// `rb_admin: true`: may read any user's stream. It grants nothing else: publishing and
    /// presence need their own scope, so a support console's token cannot publish.
    pub admin: bool,
    pub scopes: BTreeSet<String>,
    /// The last Unix second the token is accepted (`exp` plus the leeway): an open stream
    /// ends after it (`end` / `token_expired`).
    pub expires_at: u64,
}

impl Principal {
    /// Whether this principal may read `user`'s stream.
    pub fn may_read(&self, user: &UserId) -> bool {
        self.admin || self.sub.as_ref() == Some(user)
    }

    /// Whether the token's `rb_scope` claim lists `scope` (admin does not imply any).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
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
    /// Authenticates a request. `Ok(None)` means auth is disabled.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
        places: TokenPlaces,
    ) -> Result<Option<Principal>, AppError> {
        let Self::Jwt(verifier) = self else { return Ok(None) };
        let token = find_token(headers, query_token, places)?.ok_or_else(|| {
            AppError::Unauthorized(match places {
                TokenPlaces::Header => "missing token: send Authorization: Bearer <jwt>".into(),
                TokenPlaces::HeaderQueryCookie => "missing token: send Authorization: Bearer <jwt>, the access_token query parameter or the rb_token cookie".into(),
            })
        })?;
        verifier.verify(token).map(Some)
    }

    /// Requires `scope` (publish, presence) from a token in the `Authorization` header.
    /// Disabled auth lets everything through.
    pub async fn require_scope(&self, headers: &HeaderMap, scope: &str) -> Result<(), AppError> {
        match self.authenticate(headers, None, TokenPlaces::Header).await? {
            Some(p) if !p.has_scope(scope) => {
                Err(AppError::Forbidden(format!("token lacks the {scope:?} scope (claim rb_scope)")))
            }
            _ => Ok(()),
        }
    }
}

/// Finds the token: header first, then (where allowed) query, then cookie.
///
/// `Ok(None)`: no token where this endpoint looks. A malformed `Authorization` header is an
/// error, never a reason to look further.
pub fn find_token<'a>(
    headers: &'a HeaderMap,
    query_token: Option<&'a str>,
    places: TokenPlaces,
) -> Result<Option<&'a str>, AppError> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| AppError::Unauthorized("Authorization header is not ASCII".into()))?;
        let (scheme, token) = v.split_once(' ').unwrap_or((v, ""));
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AppError::Unauthorized("Authorization header must be `Bearer <jwt>`".into()));
        }
        return Ok(Some(token.trim()));
    }
    if places == TokenPlaces::Header {
        return Ok(None);
    }
    if let Some(t) = query_token.filter(|t| !t.is_empty()) {
        return Ok(Some(t));
    }
    for v in headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
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
pub fn sign_hs256(secret: &str, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
}

/// Seconds since the Unix epoch, for `exp`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
