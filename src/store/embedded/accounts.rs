//! Accounts in the embedded store: users with their email and username
//! indexes, and take-once refresh tokens.

use super::*;
use async_trait::async_trait;
use chrono::DateTime;
use huddle_actors::store::AccountStore;

#[async_trait]
impl AccountStore for EmbeddedStore {
    async fn create_user(&self, user: User) -> StoreResult<User> {
        self.write("create_user", move |txn| {
            insert_user(txn, &user)?;
            Ok(user.clone())
        })
        .await
    }

    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<User>> {
        let id = id.clone();
        self.read("user_by_id", move |txn| {
            let users = txn.open_table(USERS).ctx("open users")?;
            get_json(&users, id.as_str())
        })
        .await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let email = email.to_owned();
        self.read("user_by_email", move |txn| {
            user_by_index(txn, USERS_BY_EMAIL, &email)
        })
        .await
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        let username = username.to_owned();
        self.read("user_by_username", move |txn| {
            user_by_index(txn, USERS_BY_USERNAME, &username)
        })
        .await
    }

    async fn ensure_user(&self, user: User) -> StoreResult<User> {
        // Fast path: nearly every call is for a user we already know, and a
        // read needs no writer lock and no fsync.
        if let Some(existing) = self.user_by_id(&user.id).await? {
            return Ok(existing);
        }
        self.write("ensure_user", move |txn| {
            let mut user = user.clone();
            {
                let users = txn.open_table(USERS).ctx("open users")?;
                // Someone may have created it since the read above.
                if let Some(existing) = get_json::<User>(&users, user.id.as_str())? {
                    return Ok(existing);
                }
                let by_username = txn
                    .open_table(USERS_BY_USERNAME)
                    .ctx("open users_by_username")?;
                let base = user.username.clone();
                let mut n = 1u64;
                while by_username
                    .get(user.username.as_str())
                    .ctx("reading username")?
                    .is_some()
                {
                    n += 1;
                    user.username = format!("{base}-{n}");
                }
            }
            insert_user(txn, &user)?;
            Ok(user)
        })
        .await
    }

    async fn put_refresh_token(&self, record: RefreshTokenRecord) -> StoreResult<()> {
        self.write("put_refresh_token", move |txn| {
            let mut tokens = txn.open_table(REFRESH_TOKENS).ctx("open refresh_tokens")?;
            tokens
                .insert(record.jti.as_str(), encode(&record)?.as_slice())
                .ctx("writing refresh token")?;
            Ok(())
        })
        .await
    }

    async fn take_refresh_token(&self, jti: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        let jti = jti.to_owned();
        self.write("take_refresh_token", move |txn| {
            let mut tokens = txn.open_table(REFRESH_TOKENS).ctx("open refresh_tokens")?;
            let removed = tokens.remove(jti.as_str()).ctx("removing refresh token")?;
            removed.map(|guard| decode(guard.value())).transpose()
        })
        .await
    }

    async fn purge_refresh_tokens(&self, expired_before: DateTime<Utc>) -> StoreResult<u64> {
        self.purge_json(
            "purging refresh tokens",
            REFRESH_TOKENS,
            move |r: &RefreshTokenRecord| r.expires_at < expired_before,
        )
        .await
    }
}
