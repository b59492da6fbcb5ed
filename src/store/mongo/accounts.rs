//! Accounts in the MongoDB store: users kept unique by the `_id`, `email`
//! and `username` indexes, and refresh tokens taken once with
//! `findOneAndDelete`.
//!
//! A duplicate-key error does not say reliably which index refused the
//! insert (MongoDB names it in `keyPattern`, other wire-compatible servers do
//! not), so the store looks the conflicting field up instead of parsing the
//! error: that is both portable and exact.

use super::*;
use huddle_actors::store::AccountStore;

/// What a rejected user insert collided with.
enum Taken {
    Id(User),
    Email,
    Username,
}

impl MongoStore {
    async fn find_user(&self, filter: Document, what: &str) -> StoreResult<Option<User>> {
        let found = self
            .users
            .find_one(filter)
            .await
            .ctx(format!("finding a user by {what}"))?;
        Ok(found.map(User::from))
    }

    /// After a duplicate key on inserting `user`: which unique field is
    /// taken. `None` when none is (the other record is gone again).
    async fn what_is_taken(&self, user: &User) -> StoreResult<Option<Taken>> {
        if let Some(existing) = self.user_by_id(&user.id).await? {
            return Ok(Some(Taken::Id(existing)));
        }
        if let Some(email) = &user.email {
            if self.user_by_email(email).await?.is_some() {
                return Ok(Some(Taken::Email));
            }
        }
        if self.user_by_username(&user.username).await?.is_some() {
            return Ok(Some(Taken::Username));
        }
        Ok(None)
    }

    /// Inserts `user`; `Ok(None)` on a duplicate key.
    async fn try_insert_user(&self, user: &User) -> StoreResult<Option<()>> {
        match self.users.insert_one(UserDoc::from(user)).await {
            Ok(_) => Ok(Some(())),
            Err(e) if is_duplicate_key(&e) => Ok(None),
            Err(e) => Err(StoreError::backend("inserting a user", e)),
        }
    }
}

/// How many username variants `ensure_user` tries before giving up.
const MAX_USERNAME_VARIANTS: u64 = 10_000;

#[async_trait]
impl AccountStore for MongoStore {
    async fn create_user(&self, user: User) -> StoreResult<User> {
        // Retried only if the record we collided with vanished in between.
        for _ in 0..3 {
            if self.try_insert_user(&user).await?.is_some() {
                return Ok(user);
            }
            match self.what_is_taken(&user).await? {
                Some(Taken::Id(_)) => {
                    return Err(StoreError::Conflict(format!(
                        "user id {} already exists",
                        user.id
                    )))
                }
                Some(Taken::Email) => {
                    return Err(StoreError::Conflict("email already registered".into()))
                }
                Some(Taken::Username) => {
                    return Err(StoreError::Conflict("username already taken".into()))
                }
                None => continue,
            }
        }
        Err(StoreError::Conflict(
            "user collides with a record that keeps changing".into(),
        ))
    }

    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<User>> {
        self.find_user(doc! { "_id": id.as_str() }, "id").await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        self.find_user(doc! { "email": email }, "email").await
    }

    async fn user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        self.find_user(doc! { "username": username }, "username")
            .await
    }

    async fn ensure_user(&self, user: User) -> StoreResult<User> {
        // Fast path: nearly every call is for a user we already know.
        if let Some(existing) = self.user_by_id(&user.id).await? {
            return Ok(existing);
        }
        let base = user.username.clone();
        let mut user = user;
        let mut n = 1;
        let mut unexplained = 0;
        loop {
            if self.try_insert_user(&user).await?.is_some() {
                return Ok(user);
            }
            match self.what_is_taken(&user).await? {
                // Someone created it since the read above: never overwrite.
                Some(Taken::Id(existing)) => return Ok(existing),
                Some(Taken::Email) => {
                    return Err(StoreError::Conflict("email already registered".into()))
                }
                Some(Taken::Username) => {
                    n += 1;
                    if n > MAX_USERNAME_VARIANTS {
                        return Err(StoreError::Conflict(format!(
                            "no free variant of username {base}"
                        )));
                    }
                    user.username = format!("{base}-{n}");
                }
                None => {
                    unexplained += 1;
                    if unexplained >= 3 {
                        return Err(StoreError::Conflict(
                            "user collides with a record that keeps changing".into(),
                        ));
                    }
                }
            }
        }
    }

    async fn put_refresh_token(&self, record: RefreshTokenRecord) -> StoreResult<()> {
        // Replace, as the embedded store's insert does: a jti is random, so
        // a second put of one is the same record.
        self.refresh_tokens
            .replace_one(
                doc! { "_id": record.jti.as_str() },
                RefreshTokenDoc::from(&record),
            )
            .upsert(true)
            .await
            .ctx("storing a refresh token")?;
        Ok(())
    }

    async fn take_refresh_token(&self, jti: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        let taken = self
            .refresh_tokens
            .find_one_and_delete(doc! { "_id": jti })
            .await
            .ctx("taking a refresh token")?;
        Ok(taken.map(RefreshTokenRecord::from))
    }

    async fn purge_refresh_tokens(&self, expired_before: DateTime<Utc>) -> StoreResult<u64> {
        let deleted = self
            .refresh_tokens
            .delete_many(doc! { "expiresAt": { "$lt": to_bson_time(expired_before) } })
            .await
            .ctx("purging refresh tokens")?;
        Ok(deleted.deleted_count)
    }
}
