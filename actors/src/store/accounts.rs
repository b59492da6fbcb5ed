//! Accounts: users and the server-side records of refresh tokens.

use super::StoreResult;
use crate::ids::UserId;
use crate::model::{RefreshTokenRecord, User};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Users and refresh tokens.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// Creates a user. `email` and `username` are stored lower-cased by the
    /// caller; a duplicate email or username is `Conflict`.
    async fn create_user(&self, user: User) -> StoreResult<User>;
    /// The user with this id.
    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<User>>;
    /// The user with this (lower-cased) email.
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    /// The user with this (lower-cased) username.
    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>>;
    /// Returns the user with `user.id`, creating it from `user` when absent
    /// (tokens from another service name users we have never seen). If the
    /// username is taken by someone else, the store picks a free variant
    /// (`name`, `name-2`, ...). Never overwrites an existing user.
    async fn ensure_user(&self, user: User) -> StoreResult<User>;

    /// Records an issued refresh token.
    async fn put_refresh_token(&self, record: RefreshTokenRecord) -> StoreResult<()>;
    /// Atomically removes and returns the record for `jti`; `None` when it
    /// is unknown or was already consumed. Two concurrent calls for one `jti`
    /// never both get `Some`.
    async fn take_refresh_token(&self, jti: &str) -> StoreResult<Option<RefreshTokenRecord>>;
    /// Deletes the refresh-token records that expired before
    /// `expired_before` (their tokens are refused on their own `exp` anyway);
    /// how many went.
    async fn purge_refresh_tokens(&self, expired_before: DateTime<Utc>) -> StoreResult<u64>;
}
