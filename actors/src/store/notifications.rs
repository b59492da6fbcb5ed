//! Notifications: stored per user, with an unread count kept in step.

use super::StoreResult;
use crate::ids::{NotificationId, UserId};
use crate::model::{NewNotification, Notification, Page};
use async_trait::async_trait;

/// A user's notifications.
#[async_trait]
pub trait NotificationStore: Send + Sync + 'static {
    /// Stores an unread notification, then deletes the user's oldest
    /// notifications beyond the newest `keep` (read or not; 0 keeps them
    /// all), so what anyone can make for a user stays bounded. A store may
    /// delete only so many per call (a list from before the limit then
    /// shrinks over several), and a failure to delete does not fail the
    /// call. Returns it with the user's unread count, which includes it and
    /// no longer counts the deleted ones.
    async fn create_notification(
        &self,
        new: NewNotification,
        keep: usize,
    ) -> StoreResult<(Notification, u64)>;
    /// The user's notifications, newest first; only unread ones when
    /// `unread_only`.
    async fn notifications(
        &self,
        user: &UserId,
        unread_only: bool,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Notification>>;
    /// Marks one of the user's notifications read; returns the unread count.
    /// `NotFound` when it does not exist or belongs to someone else.
    async fn mark_notification_read(&self, user: &UserId, id: &NotificationId) -> StoreResult<u64>;
    /// Marks all the user's notifications read; returns how many changed.
    async fn mark_all_notifications_read(&self, user: &UserId) -> StoreResult<u64>;
    /// The user's unread count.
    async fn unread_count(&self, user: &UserId) -> StoreResult<u64>;
}
