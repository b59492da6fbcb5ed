//! Identity: JSON Web Tokens and the ways requests prove who they are.
//!
//! [`JwtAuth`] builds its HS256 keys once and issues and verifies access tokens
//! (secret `JWT_SECRET`) and refresh tokens (secret `REFRESH_SECRET`, with a
//! `jti` that the store consumes on rotation). [`JwtAuthenticator`] implements
//! the core's [`Authenticator`] port for socket handshakes, and [`AuthUser`] is
//! the actix extractor for `Authorization: Bearer` on HTTP routes. Both make
//! sure a `sub` seen for the first time gets a user record, because tokens
//! issued by another service with the same secret are accepted as they are.

use crate::accounts::username_base;
use crate::error::ApiError;
use crate::settings::AuthSettings;
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::future::LocalBoxFuture;
use huddle_actors::auth::{AuthFailure, Authenticator, Identity};
use huddle_actors::ids::{new_id, UserId};
use huddle_actors::model::{RefreshTokenRecord, User};
use huddle_actors::store::DocumentStore;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Longest `sub` accepted: ids are store keys and room names.
const MAX_SUBJECT_LEN: usize = 128;

/// The `typ` claim of refresh tokens, so a refresh token is never taken for an
/// access token even when an operator uses one secret for both.
const REFRESH_TYP: &str = "refresh";

/// The claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Display name; optional in tokens from other services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issue time, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Token type; only refresh tokens set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
}

/// The claims of a refresh token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshClaims {
    /// The user id.
    pub sub: String,
    /// Token id: the key of its [`RefreshTokenRecord`].
    pub jti: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issue time, seconds since the Unix epoch.
    pub iat: u64,
    /// Always `"refresh"`.
    pub typ: String,
}

/// Issues and verifies tokens; keys are built once at startup.
pub struct JwtAuth {
    access_encoding: EncodingKey,
    access_decoding: DecodingKey,
    refresh_encoding: EncodingKey,
    refresh_decoding: DecodingKey,
    validation: Validation,
    access_ttl_secs: u64,
    refresh_ttl_secs: u64,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("access_ttl_secs", &self.access_ttl_secs)
            .field("refresh_ttl_secs", &self.refresh_ttl_secs)
            .finish_non_exhaustive()
    }
}

impl JwtAuth {
    /// Builds the keys from the (already checked) secrets.
    pub fn new(settings: &AuthSettings) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // An expired token is refused at once: no grace period.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Tokens from other services may carry an audience we know nothing
        // about; the shared secret is what makes them trusted.
        validation.validate_aud = false;
        JwtAuth {
            access_encoding: EncodingKey::from_secret(settings.jwt_secret.as_bytes()),
            access_decoding: DecodingKey::from_secret(settings.jwt_secret.as_bytes()),
            refresh_encoding: EncodingKey::from_secret(settings.refresh_secret.as_bytes()),
            refresh_decoding: DecodingKey::from_secret(settings.refresh_secret.as_bytes()),
            validation,
            access_ttl_secs: settings.access_ttl_secs,
            refresh_ttl_secs: settings.refresh_ttl_secs,
        }
    }

    /// Access token lifetime in seconds (the `expiresIn` clients may show).
    pub fn access_ttl_secs(&self) -> u64 {
        self.access_ttl_secs
    }

    /// Signs an access token for `user`: HS256 with `sub`, `name`, `exp`, `iat`.
    pub fn issue_access(&self, user: &User) -> String {
        let now = now_secs();
        let claims = Claims {
            sub: user.id.0.clone(),
            name: Some(user.name.clone()),
            exp: now + self.access_ttl_secs,
            iat: Some(now),
            typ: None,
        };
        sign(&claims, &self.access_encoding)
    }

    /// Signs a refresh token for `user` and returns it with the record the
    /// store must keep for it (rotation consumes that record).
    pub fn issue_refresh(&self, user: &User) -> (String, RefreshTokenRecord) {
        let now = now_secs();
        let claims = RefreshClaims {
            sub: user.id.0.clone(),
            jti: new_id(),
            exp: now + self.refresh_ttl_secs,
            iat: now,
            typ: REFRESH_TYP.to_owned(),
        };
        let token = sign(&claims, &self.refresh_encoding);
        let expires_at = i64::try_from(claims.exp)
            .ok()
            .and_then(|secs| DateTime::<Utc>::from_timestamp(secs, 0))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let record = RefreshTokenRecord {
            jti: claims.jti,
            user_id: user.id.clone(),
            expires_at,
        };
        (token, record)
    }

    /// Verifies an access token: expired → `Expired`, anything else wrong →
    /// `Unauthorized`.
    pub fn verify_access(&self, token: &str) -> Result<Claims, AuthFailure> {
        let claims = decode::<Claims>(token.trim(), &self.access_decoding, &self.validation)
            .map_err(map_jwt_error)?
            .claims;
        if claims.typ.as_deref() == Some(REFRESH_TYP) || !valid_subject(&claims.sub) {
            return Err(AuthFailure::Unauthorized);
        }
        Ok(claims)
    }

    /// Verifies a refresh token's signature, type and expiry. Whether it was
    /// already used is the store's business (`take_refresh_token`).
    pub fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, AuthFailure> {
        let claims =
            decode::<RefreshClaims>(token.trim(), &self.refresh_decoding, &self.validation)
                .map_err(map_jwt_error)?
                .claims;
        if claims.typ != REFRESH_TYP || !valid_subject(&claims.sub) || claims.jti.is_empty() {
            return Err(AuthFailure::Unauthorized);
        }
        Ok(claims)
    }
}

fn valid_subject(sub: &str) -> bool {
    !sub.is_empty() && sub.len() <= MAX_SUBJECT_LEN && !sub.chars().any(char::is_control)
}

fn map_jwt_error(err: jsonwebtoken::errors::Error) -> AuthFailure {
    match err.kind() {
        ErrorKind::ExpiredSignature => AuthFailure::Expired,
        _ => AuthFailure::Unauthorized,
    }
}

fn sign<T: Serialize>(claims: &T, key: &EncodingKey) -> String {
    // HMAC accepts keys of any length and our claims always serialize, so
    // signing cannot fail; a failure would be a bug in this module.
    encode(&Header::new(Algorithm::HS256), claims, key)
        .expect("HS256 signing of plain claims with an HMAC key cannot fail")
}

fn now_secs() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or(0)
}

/// The core's [`Authenticator`] port, implemented with [`JwtAuth`] and the
/// document store.
#[derive(Clone)]
pub struct JwtAuthenticator {
    jwt: Arc<JwtAuth>,
    store: Arc<dyn DocumentStore>,
}

impl JwtAuthenticator {
    /// Combines the token keys with the store that keeps user records.
    pub fn new(jwt: Arc<JwtAuth>, store: Arc<dyn DocumentStore>) -> Self {
        JwtAuthenticator { jwt, store }
    }

    /// The identity of already verified claims, creating the user record when
    /// the `sub` is new (name from the token). Store failure → `Unavailable`.
    pub async fn identity(&self, claims: &Claims) -> Result<Identity, AuthFailure> {
        let name = claims
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| n.chars().take(100).collect::<String>())
            .unwrap_or_else(|| claims.sub.clone());
        let candidate = User {
            id: UserId(claims.sub.clone()),
            email: None,
            username: username_base(&name),
            name,
            password_hash: None,
            created_at: Utc::now(),
        };
        let user = self.store.ensure_user(candidate).await.map_err(|err| {
            log::error!(
                "ensure_user for a verified token failed: {}",
                crate::error::cause_chain(&err)
            );
            AuthFailure::Unavailable
        })?;
        Ok(Identity {
            user_id: user.id,
            name: user.name,
        })
    }
}

#[async_trait]
impl Authenticator for JwtAuthenticator {
    async fn authenticate(&self, token: &str) -> Result<Identity, AuthFailure> {
        let claims = self.jwt.verify_access(token)?;
        self.identity(&claims).await
    }
}

/// Claims already verified earlier in this request (by the rate-limit
/// middleware), kept in the request extensions so they are checked once.
#[derive(Clone, Debug)]
pub(crate) struct VerifiedClaims(pub Result<Claims, AuthFailure>);

/// The token of an `Authorization: Bearer <token>` header, if any.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The authenticated caller of an HTTP route. Missing or invalid token → 401
/// `unauthorized`; expired → 401 `token_expired`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthUser {
    /// The token's `sub`.
    pub user_id: UserId,
    /// The user's display name.
    pub name: String,
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer_token(req).map(str::to_owned);
        let cached = req.extensions().get::<VerifiedClaims>().cloned();
        Box::pin(async move {
            let state = state.ok_or_else(|| {
                ApiError::internal("AuthUser", "AppState is not registered as app data")
            })?;
            let token =
                token.ok_or_else(|| ApiError::Unauthorized("missing bearer token".to_owned()))?;
            let claims = match cached {
                Some(VerifiedClaims(result)) => result?,
                None => state.jwt.verify_access(&token)?,
            };
            let identity = state.authenticator.identity(&claims).await?;
            Ok(AuthUser {
                user_id: identity.user_id,
                name: identity.name,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AuthSettings {
        AuthSettings {
            jwt_secret: "a".repeat(40),
            refresh_secret: "b".repeat(40),
            access_ttl_secs: 900,
            refresh_ttl_secs: 3600,
        }
    }

    fn user() -> User {
        User {
            id: UserId::from("u1"),
            email: Some("a@example.com".into()),
            name: "Ann".into(),
            username: "ann".into(),
            password_hash: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn access_tokens_round_trip() {
        let jwt = JwtAuth::new(&settings());
        let token = jwt.issue_access(&user());
        let claims = jwt.verify_access(&token).unwrap();
        assert_eq!(claims.sub, "u1");
        assert_eq!(claims.name.as_deref(), Some("Ann"));
        assert_eq!(claims.exp, claims.iat.unwrap() + 900);
    }

    #[test]
    fn expired_and_foreign_tokens_are_refused() {
        let jwt = JwtAuth::new(&settings());
        let past = now_secs() - 1;
        let expired = sign(
            &Claims {
                sub: "u1".into(),
                name: None,
                exp: past,
                iat: None,
                typ: None,
            },
            &EncodingKey::from_secret("a".repeat(40).as_bytes()),
        );
        assert_eq!(jwt.verify_access(&expired), Err(AuthFailure::Expired));
        let other_secret = sign(
            &Claims {
                sub: "u1".into(),
                name: None,
                exp: past + 1000,
                iat: None,
                typ: None,
            },
            &EncodingKey::from_secret(b"another secret entirely, 32+ bytes"),
        );
        assert_eq!(
            jwt.verify_access(&other_secret),
            Err(AuthFailure::Unauthorized)
        );
        assert_eq!(jwt.verify_access("garbage"), Err(AuthFailure::Unauthorized));
    }

    #[test]
    fn refresh_tokens_are_not_access_tokens() {
        let mut same = settings();
        same.refresh_secret = same.jwt_secret.clone();
        let jwt = JwtAuth::new(&same);
        let (refresh, record) = jwt.issue_refresh(&user());
        assert_eq!(jwt.verify_access(&refresh), Err(AuthFailure::Unauthorized));
        let claims = jwt.verify_refresh(&refresh).unwrap();
        assert_eq!(claims.jti, record.jti);
        assert_eq!(record.user_id, UserId::from("u1"));
        let access = jwt.issue_access(&user());
        assert_eq!(jwt.verify_refresh(&access), Err(AuthFailure::Unauthorized));
    }

    #[test]
    fn refresh_tokens_need_the_refresh_secret() {
        let jwt = JwtAuth::new(&settings());
        let access = jwt.issue_access(&user());
        assert_eq!(jwt.verify_refresh(&access), Err(AuthFailure::Unauthorized));
    }
}
