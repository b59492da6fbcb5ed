//! Accounts for deployments without their own identity service: registration,
//! login and refresh-token rotation (contract section 2).
//!
//! This module owns the rules: input validation (email shape, lengths),
//! argon2id password hashing on a blocking thread, case-insensitive unique
//! emails, unique lower-case usernames (from the request, else derived from
//! the email), and one-use refresh tokens consumed through the store. The HTTP
//! handlers in `http::accounts` only translate JSON to and from these calls.

use crate::auth::JwtAuth;
use crate::error::ApiError;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::Utc;
use huddle_actors::auth::AuthFailure;
use huddle_actors::ids::{new_id, UserId};
use huddle_actors::model::User;
use huddle_actors::store::{DocumentStore, StoreError};
use std::sync::{Arc, OnceLock};

/// Longest accepted email (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest accepted password, in bytes (hashing cost must stay bounded).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest username, in characters.
pub const MAX_USERNAME_CHARS: usize = 32;
/// Longest derived username stem, leaving room for a `-N` suffix.
const USERNAME_STEM_CHARS: usize = 24;

/// What can go wrong with an account operation.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Input breaks a rule; the message says which.
    #[error("{0}")]
    Invalid(String),
    /// Another account has this email.
    #[error("an account with this email already exists")]
    EmailTaken,
    /// Another account has this username.
    #[error("this username is taken")]
    UsernameTaken,
    /// Wrong email or password (deliberately not saying which).
    #[error("invalid email or password")]
    InvalidCredentials,
    /// The refresh token is invalid, unknown or already used.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// The refresh token has expired.
    #[error("refresh token expired")]
    RefreshTokenExpired,
    /// Hashing failed or its blocking task died.
    #[error("password hashing failed")]
    Hashing(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store failed.
    #[error("account store failure")]
    Store(#[from] StoreError),
}

impl From<AccountError> for ApiError {
    fn from(err: AccountError) -> Self {
        match err {
            AccountError::Invalid(msg) => ApiError::BadRequest(msg),
            e @ (AccountError::EmailTaken | AccountError::UsernameTaken) => {
                ApiError::Conflict(e.to_string())
            }
            e @ (AccountError::InvalidCredentials | AccountError::InvalidRefreshToken) => {
                ApiError::Unauthorized(e.to_string())
            }
            AccountError::RefreshTokenExpired => ApiError::TokenExpired,
            AccountError::Store(store) => store.into(),
            e @ AccountError::Hashing(_) => ApiError::internal("accounts", e),
        }
    }
}

/// A registration request, as validated by [`Accounts::register`].
#[derive(Clone, Debug)]
pub struct Registration {
    /// Email; compared case-insensitively.
    pub email: String,
    /// Plain password (at least 8 characters).
    pub password: String,
    /// Display name.
    pub name: String,
    /// Wanted username; derived from the email when absent.
    pub username: Option<String>,
}

/// A signed-in user with fresh tokens.
#[derive(Clone, Debug)]
pub struct Session {
    /// The account.
    pub user: User,
    /// Access token (HS256, `JWT_SECRET`).
    pub access_token: String,
    /// One-use refresh token (HS256, `REFRESH_SECRET`).
    pub refresh_token: String,
}

/// Account operations over the store and the token keys.
#[derive(Clone)]
pub struct Accounts {
    store: Arc<dyn DocumentStore>,
    jwt: Arc<JwtAuth>,
}

impl Accounts {
    /// Builds the service.
    pub fn new(store: Arc<dyn DocumentStore>, jwt: Arc<JwtAuth>) -> Self {
        Accounts { store, jwt }
    }

    /// Creates an account and signs it in.
    pub async fn register(&self, reg: Registration) -> Result<Session, AccountError> {
        let email = normalize_email(&reg.email)?;
        validate_password(&reg.password)?;
        let name = normalize_name(&reg.name)?;
        let requested = reg
            .username
            .as_deref()
            .map(normalize_username)
            .transpose()?;

        if self.store.user_by_email(&email).await?.is_some() {
            return Err(AccountError::EmailTaken);
        }
        if let Some(wanted) = &requested {
            if self.store.user_by_username(wanted).await?.is_some() {
                return Err(AccountError::UsernameTaken);
            }
        }

        let password_hash = hash_password(reg.password).await?;
        let stem = username_base(email.split('@').next().unwrap_or_default());

        // A concurrent registration may take the email or the username between
        // our checks and the insert; the store's uniqueness rules decide.
        let mut attempt = 0u32;
        let user = loop {
            let username = match &requested {
                Some(wanted) => wanted.clone(),
                None => self.free_username(&stem, attempt).await?,
            };
            let candidate = User {
                id: UserId(new_id()),
                email: Some(email.clone()),
                name: name.clone(),
                username,
                password_hash: Some(password_hash.clone()),
                created_at: Utc::now(),
            };
            match self.store.create_user(candidate).await {
                Ok(user) => break user,
                Err(StoreError::Conflict(what)) => {
                    if self.store.user_by_email(&email).await?.is_some() {
                        return Err(AccountError::EmailTaken);
                    }
                    if requested.is_some() || attempt >= 4 {
                        log::debug!("register conflict: {what}");
                        return Err(AccountError::UsernameTaken);
                    }
                    attempt += 1;
                }
                Err(other) => return Err(other.into()),
            }
        };
        self.session(user).await
    }

    /// Signs in with email and password. Unknown email and wrong password give
    /// the same error, in about the same time.
    pub async fn login(&self, email: &str, password: &str) -> Result<Session, AccountError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(AccountError::InvalidCredentials);
        }
        let user = match normalize_email(email) {
            Ok(email) => self.store.user_by_email(&email).await?,
            Err(_) => None,
        };
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        let ok = verify_password(password.to_owned(), hash).await?;
        match user {
            Some(user) if ok => self.session(user).await,
            _ => Err(AccountError::InvalidCredentials),
        }
    }

    /// Exchanges a refresh token for new tokens; the old refresh token is
    /// consumed and never works again.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Session, AccountError> {
        let claims = self
            .jwt
            .verify_refresh(refresh_token)
            .map_err(|failure| match failure {
                AuthFailure::Expired => AccountError::RefreshTokenExpired,
                _ => AccountError::InvalidRefreshToken,
            })?;
        let record = self
            .store
            .take_refresh_token(&claims.jti)
            .await?
            .ok_or(AccountError::InvalidRefreshToken)?;
        if record.user_id.as_str() != claims.sub {
            return Err(AccountError::InvalidRefreshToken);
        }
        if record.expires_at <= Utc::now() {
            return Err(AccountError::RefreshTokenExpired);
        }
        let user = self
            .store
            .user_by_id(&record.user_id)
            .await?
            .ok_or(AccountError::InvalidRefreshToken)?;
        self.session(user).await
    }

    async fn session(&self, user: User) -> Result<Session, AccountError> {
        let access_token = self.jwt.issue_access(&user);
        let (refresh_token, record) = self.jwt.issue_refresh(&user);
        self.store.put_refresh_token(record).await?;
        Ok(Session {
            user,
            access_token,
            refresh_token,
        })
    }

    /// A username based on `stem` that no one has yet: `stem`, `stem-2`, ...
    /// and, after that, `stem-` plus random hex (also on retries after a race).
    async fn free_username(&self, stem: &str, attempt: u32) -> Result<String, AccountError> {
        if attempt == 0 {
            for n in 1..=20u32 {
                let candidate = if n == 1 {
                    stem.to_owned()
                } else {
                    format!("{stem}-{n}")
                };
                if self.store.user_by_username(&candidate).await?.is_none() {
                    return Ok(candidate);
                }
            }
        }
        let suffix = &new_id()[..6];
        Ok(format!("{stem}-{suffix}"))
    }
}

/// Lower-cases and checks an email: `local@domain.tld`, at most 254 bytes, no
/// spaces or control characters.
pub fn normalize_email(raw: &str) -> Result<String, AccountError> {
    let invalid = || AccountError::Invalid("email is not a valid address".to_owned());
    let email = raw.trim().to_lowercase();
    if email.is_empty() {
        return Err(AccountError::Invalid("email is required".to_owned()));
    }
    if email.len() > MAX_EMAIL_LEN {
        return Err(AccountError::Invalid(format!(
            "email is longer than {MAX_EMAIL_LEN} characters"
        )));
    }
    let (local, domain) = email.rsplit_once('@').ok_or_else(invalid)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !"@,;:<>()[]\\\"".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if local_ok && domain_ok {
        Ok(email)
    } else {
        Err(invalid())
    }
}

/// Checks a password's length: at least 8 characters, at most 1024 bytes.
pub fn validate_password(password: &str) -> Result<(), AccountError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccountError::Invalid(format!(
            "password must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::Invalid(format!(
            "password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Trims and checks a display name: 1 to 100 characters, no control characters.
pub fn normalize_name(raw: &str) -> Result<String, AccountError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(AccountError::Invalid("name is required".to_owned()));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AccountError::Invalid(format!(
            "name must be at most {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(AccountError::Invalid(
            "name must not contain control characters".to_owned(),
        ));
    }
    Ok(name.to_owned())
}

/// Lower-cases and checks a requested username: 1 to 32 of `[a-z0-9_.-]`.
pub fn normalize_username(raw: &str) -> Result<String, AccountError> {
    let username = raw.trim().to_lowercase();
    let len = username.chars().count();
    if len == 0 || len > MAX_USERNAME_CHARS {
        return Err(AccountError::Invalid(format!(
            "username must have 1 to {MAX_USERNAME_CHARS} characters"
        )));
    }
    if !username.chars().all(is_username_char) {
        return Err(AccountError::Invalid(
            "username may contain only a-z, 0-9, '_', '.' and '-'".to_owned(),
        ));
    }
    Ok(username)
}

fn is_username_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-')
}

/// A username stem from free text (an email's local part, a display name):
/// lower-cased, restricted to `[a-z0-9_.-]`, at most 24 characters, `user`
/// when nothing is left. Not necessarily free; callers add a suffix.
pub fn username_base(text: &str) -> String {
    let stem: String = text
        .to_lowercase()
        .chars()
        .map(|c| if c.is_whitespace() { '.' } else { c })
        .filter(|c| is_username_char(*c))
        .take(USERNAME_STEM_CHARS)
        .collect();
    let stem = stem.trim_matches(|c| c == '.' || c == '-');
    if stem.is_empty() {
        "user".to_owned()
    } else {
        stem.to_owned()
    }
}

fn hashing_error(e: impl std::fmt::Display) -> AccountError {
    AccountError::Hashing(e.to_string().into())
}

/// Hashes a password with argon2id (default parameters, random salt) on a
/// blocking thread, returning the PHC string.
pub async fn hash_password(password: String) -> Result<String, AccountError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(hashing_error)
    })
    .await
    .map_err(hashing_error)?
}

/// Checks a password against a PHC hash on a blocking thread. With no hash
/// (unknown user, or an account without a password) a dummy hash is checked
/// anyway so the answer takes as long, and the result is `false`.
pub async fn verify_password(password: String, hash: Option<String>) -> Result<bool, AccountError> {
    tokio::task::spawn_blocking(move || {
        let real = hash.is_some();
        let phc = match hash {
            Some(h) => h,
            None => dummy_hash()?.to_owned(),
        };
        let parsed = PasswordHash::new(&phc).map_err(hashing_error)?;
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(real && matches)
    })
    .await
    .map_err(hashing_error)?
}

fn dummy_hash() -> Result<&'static str, AccountError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let salt = SaltString::generate(&mut OsRng);
    let hash = Argon2::default()
        .hash_password(b"not a real password", &salt)
        .map_err(hashing_error)?
        .to_string();
    Ok(DUMMY.get_or_init(|| hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_lower_cased_and_checked() {
        assert_eq!(
            normalize_email("  Ann.Lee+x@Example.COM ").unwrap(),
            "ann.lee+x@example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "ann@@example.com",
            "an n@example.com",
            "ann@exa_mple.com",
            "ann@.example.com",
            "ann@example..com",
            "ann@-example.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(normalize_email(&long).is_err());
    }

    #[test]
    fn passwords_names_and_usernames_are_bounded() {
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("12345678").is_ok());
        assert!(
            validate_password("ééééééé").is_err(),
            "counted in characters"
        );
        assert!(validate_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
        assert_eq!(normalize_name("  Ann  ").unwrap(), "Ann");
        assert!(normalize_name("   ").is_err());
        assert!(normalize_name(&"n".repeat(101)).is_err());
        assert!(normalize_name("a\u{0}b").is_err());
        assert_eq!(normalize_username("Ann_Lee").unwrap(), "ann_lee");
        assert!(normalize_username("ann lee").is_err());
        assert!(normalize_username(&"a".repeat(33)).is_err());
    }

    #[test]
    fn username_base_is_restricted() {
        assert_eq!(username_base("Ann.Lee+work"), "ann.leework");
        assert_eq!(username_base("Zoë Smith"), "zo.smith");
        assert_eq!(username_base("+++"), "user");
        assert_eq!(username_base(&"x".repeat(50)).len(), 24);
    }

    #[actix_web::test]
    async fn hashes_verify() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse".into(), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!verify_password("wrong horse".into(), Some(hash))
            .await
            .unwrap());
        assert!(!verify_password("anything".into(), None).await.unwrap());
    }
}
