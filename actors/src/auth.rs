//! The authentication port. The socket handshake asks an [`Authenticator`]
//! before any namespace is joined; `src/auth.rs` implements it with JWTs.

use crate::ids::UserId;
use async_trait::async_trait;

/// Who a verified token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`.
    pub user_id: UserId,
    /// Display name (from the user record, else the token's `name`, else the id).
    pub name: String,
}

/// Why a token was refused; maps to the contract's error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No token, or a token that does not verify → `unauthorized`.
    #[error("missing or invalid token")]
    Unauthorized,
    /// A token whose `exp` has passed → `token_expired`.
    #[error("token expired")]
    Expired,
    /// The identity backend failed (store down) → `internal`.
    #[error("authentication backend unavailable")]
    Unavailable,
}

impl AuthFailure {
    /// The contract's error code for this failure.
    pub fn code(self) -> &'static str {
        match self {
            AuthFailure::Unauthorized => "unauthorized",
            AuthFailure::Expired => "token_expired",
            AuthFailure::Unavailable => "internal",
        }
    }
}

/// Verifies access tokens for socket connections.
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Verifies `token` and returns the identity it carries, making sure the
    /// user has a record (tokens from another service may name new users).
    async fn authenticate(&self, token: &str) -> Result<Identity, AuthFailure>;
}
