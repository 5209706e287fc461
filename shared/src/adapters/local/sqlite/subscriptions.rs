//! Subscription records; the webhook reads them by id.

use async_trait::async_trait;

use super::*;
use crate::ports::{SubscriptionLookup, Subscriptions};

#[async_trait]
impl SubscriptionLookup for SqliteStateStore {
    async fn get_subscription(&self, id: &str) -> Result<Option<SubscriptionRecord>, StoreError> {
        const OPERATION: &str = "get subscription";
        let id = id.to_owned();
        self.run(OPERATION, move |c| {
            let mut subscriptions = select_subscriptions(
                c,
                &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ?1"),
                [&id],
                OPERATION,
            )?;
            Ok(subscriptions.pop())
        })
        .await
    }
}

#[async_trait]
impl Subscriptions for SqliteStateStore {
    async fn put_subscription(&self, sub: &SubscriptionRecord) -> Result<(), StoreError> {
        const OPERATION: &str = "put subscription";
        let sub = sub.clone();
        self.run(OPERATION, move |c| {
            let expires_at = sortable_utc(sub.expires_at, "expires_at", OPERATION)?;
            let created_at = sortable_utc(sub.created_at, "created_at", OPERATION)?;
            c.execute(
                &format!(
                    "INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS})
                     VALUES (:id, :mailbox, :folder, :credential, :client_state, :expires_at,
                             :notification_url, :created_at)
                     ON CONFLICT (id) DO UPDATE SET
                         mailbox = excluded.mailbox,
                         folder = excluded.folder,
                         credential = excluded.credential,
                         client_state = excluded.client_state,
                         expires_at = excluded.expires_at,
                         notification_url = excluded.notification_url,
                         created_at = excluded.created_at"
                ),
                named_params! {
                    ":id": sub.id,
                    ":mailbox": sub.mailbox.as_str(),
                    ":folder": sub.folder,
                    ":credential": sub.credential,
                    ":client_state": sub.client_state.expose(),
                    ":expires_at": expires_at,
                    ":notification_url": sub.notification_url,
                    ":created_at": created_at,
                },
            )
            .map_err(sql_error(OPERATION))?;
            Ok(())
        })
        .await
    }

    async fn list_subscriptions(&self) -> Result<Vec<SubscriptionRecord>, StoreError> {
        const OPERATION: &str = "list subscriptions";
        self.run(OPERATION, move |c| {
            // BINARY collation compares UTF-8 bytes, the same order as Rust's `String`.
            select_subscriptions(
                c,
                &format!(
                    "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY mailbox, folder, id"
                ),
                [],
                OPERATION,
            )
        })
        .await
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError> {
        const OPERATION: &str = "delete subscription";
        let id = id.to_owned();
        self.run(OPERATION, move |c| {
            let deleted = c
                .execute("DELETE FROM subscriptions WHERE id = ?1", [&id])
                .map_err(sql_error(OPERATION))?;
            Ok(deleted > 0)
        })
        .await
    }
}
