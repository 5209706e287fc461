//! The state store, one capability per trait: mailbox configuration, message records, run
//! summaries, cursors, leases, subscriptions, alert claims, discovery rules and the event outbox. One table in DynamoDB, one
//! database locally; [`StateStore`] is all of them, for adapters and for the engine. Callers that
//! need less ask for less: the webhook holds a [`SubscriptionLookup`], the expiry check
//! [`MailboxConfigs`] and [`AlertClaims`].

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::discovery::{DiscoverRule, DiscoveryRun};
use crate::domain::event::MessageEvent;
use crate::domain::{
    Cursor, FolderKey, MailboxAddress, MailboxConfig, MessageId, MessageRecord, RunSummary,
    SubscriptionRecord,
};

/// Failure of the state store. `operation` says what was being done, for the operator; the
/// variant says what the caller can do about it ([`StoreError::is_retryable`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store asked to slow down (DynamoDB throttling, a busy SQLite database): the same call
    /// a little later can succeed.
    #[error("state store throttled during {operation}: {detail}")]
    Throttled {
        operation: &'static str,
        detail: String,
        /// The SDK's or the database's own error, for callers that inspect it ([`Self::cause`]).
        cause: Option<Cause>,
    },
    /// The store could not be reached or failed; a later attempt may succeed.
    #[error("state store unavailable during {operation}: {detail}")]
    Unavailable {
        operation: &'static str,
        detail: String,
        /// The SDK's or the database's own error, when there is one ([`Self::cause`]).
        cause: Option<Cause>,
    },
    /// Concurrent writers kept changing the item this call depends on.
    #[error("state store conflict during {operation}: {detail}")]
    Conflict {
        operation: &'static str,
        detail: String,
    },
    /// An item does not have the shape Mailroom writes: no retry helps; the item needs fixing.
    #[error("state store item is malformed ({operation}): {detail}")]
    Malformed {
        operation: &'static str,
        detail: String,
    },
}

/// The error underneath a [`StoreError`]. Kept, not chained as `source()`: `detail` already says
/// what it says (with the service's code), and a chain would print it twice.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

impl StoreError {
    /// A failure with no underlying error to keep (a read-back that found nothing, say).
    pub fn unavailable(operation: &'static str, detail: impl Into<String>) -> Self {
        Self::Unavailable {
            operation,
            detail: detail.into(),
            cause: None,
        }
    }

    /// The underlying error (an SDK error, a SQLite error), when there is one.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match self {
            Self::Throttled { cause, .. } | Self::Unavailable { cause, .. } => cause.as_deref(),
            _ => None,
        }
    }

    /// Whether trying the same call again later can help.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Malformed { .. })
    }
}

/// Result of the conditional create of a message record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The record did not exist and now does.
    Created,
    /// A record for this message already existed; it is returned unchanged.
    AlreadyStored(Box<MessageRecord>),
}

/// Result of trying to take a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    Acquired,
    HeldBy {
        owner: String,
        until: OffsetDateTime,
    },
}

/// Which mailbox folders to import, and how.
#[async_trait]
pub trait MailboxConfigs: Send + Sync {
    /// Creates or replaces the configuration of one mailbox folder.
    async fn put_mailbox(&self, config: &MailboxConfig) -> Result<(), StoreError>;
    /// Every configured mailbox folder, enabled or not, ordered by address then folder.
    async fn list_mailboxes(&self) -> Result<Vec<MailboxConfig>, StoreError>;
    /// The configured folders of one mailbox, enabled or not, ordered by folder: what a job
    /// reads, so a job costs the same with ten mailboxes configured or ten thousand.
    async fn mailbox_folders(
        &self,
        address: &MailboxAddress,
    ) -> Result<Vec<MailboxConfig>, StoreError>;
    /// Removes one mailbox folder's configuration; returns whether it existed.
    async fn remove_mailbox(&self, key: &FolderKey) -> Result<bool, StoreError>;
}

/// One record per stored message: the exactly-once gate (docs/import.md).
#[async_trait]
pub trait MessageRecords: Send + Sync {
    /// Creates the record unless one exists for (mailbox, message id): the exactly-once gate.
    async fn create_record(&self, record: &MessageRecord) -> Result<CreateOutcome, StoreError>;
    async fn get_record(
        &self,
        mailbox: &MailboxAddress,
        id: &MessageId,
    ) -> Result<Option<MessageRecord>, StoreError>;
    /// Marks an existing record `Done` (idempotent).
    async fn mark_done(&self, mailbox: &MailboxAddress, id: &MessageId) -> Result<(), StoreError>;
    /// Records of a mailbox still `Stored`: the after-import action may not have happened (a run
    /// stopped between storing and marking done). A run finishes these first, because in
    /// `move`/`delete` modes the message may already have left the folder the run lists.
    async fn pending_records(
        &self,
        mailbox: &MailboxAddress,
    ) -> Result<Vec<MessageRecord>, StoreError>;
    /// Every record of a mailbox (for status, verification and tests).
    async fn list_records(
        &self,
        mailbox: &MailboxAddress,
    ) -> Result<Vec<MessageRecord>, StoreError>;
}

/// The summary of each mailbox's latest run, for `mailroom status`.
#[async_trait]
pub trait RunLog: Send + Sync {
    /// Replaces the summary of the mailbox's latest run.
    async fn put_run(&self, run: &RunSummary) -> Result<(), StoreError>;
    async fn last_run(&self, mailbox: &MailboxAddress) -> Result<Option<RunSummary>, StoreError>;
}

/// Where a folder's delta round stands (docs/import.md, "Cursors").
#[async_trait]
pub trait Cursors: Send + Sync {
    async fn get_cursor(&self, key: &FolderKey) -> Result<Option<Cursor>, StoreError>;
    async fn put_cursor(&self, key: &FolderKey, cursor: &Cursor) -> Result<(), StoreError>;
}

/// Leases: one runner per mailbox (and one subscription upkeep) at a time.
#[async_trait]
pub trait Leases: Send + Sync {
    /// Takes the lease `name` for `owner` until `until`, if it is free, expired (per `now`) or
    /// already held by `owner`.
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<LeaseOutcome, StoreError>;
    /// Releases the lease if `owner` holds it; otherwise does nothing.
    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError>;
}

/// What the webhook may read: one subscription record by id (a notification's lookup).
#[async_trait]
pub trait SubscriptionLookup: Send + Sync {
    /// The subscription record with Graph subscription id `id`.
    async fn get_subscription(&self, id: &str) -> Result<Option<SubscriptionRecord>, StoreError>;
}

/// The Graph subscriptions Mailroom keeps (docs/push.md).
#[async_trait]
pub trait Subscriptions: SubscriptionLookup {
    /// Creates or replaces the subscription record with `sub.id`.
    async fn put_subscription(&self, sub: &SubscriptionRecord) -> Result<(), StoreError>;
    /// Every subscription record, ordered by mailbox, folder, then id.
    async fn list_subscriptions(&self) -> Result<Vec<SubscriptionRecord>, StoreError>;
    /// The subscription records of one folder (normally one). Reads them all and keeps the
    /// folder's: a folder's upkeep is rare (every other day), so a store needs no index for it.
    async fn folder_subscriptions(
        &self,
        key: &FolderKey,
    ) -> Result<Vec<SubscriptionRecord>, StoreError> {
        let mut records = self.list_subscriptions().await?;
        records.retain(|r| r.key() == *key);
        Ok(records)
    }
    /// Removes the subscription record `id`; returns whether it existed.
    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError>;
}

/// Claims that make each credential alert go out once.
#[async_trait]
pub trait AlertClaims: Send + Sync {
    /// Claims the alert `alert_key` (e.g. `2026-12-01T00:00:00Z#14`: an expiry and a threshold)
    /// for `credential`, at `now`. Returns `true` only for the first caller: an alert is sent
    /// once even when a run is retried or two runs overlap.
    async fn claim_alert(
        &self,
        credential: &str,
        alert_key: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Gives a claim back (sending the alert failed), so the next run tries again.
    async fn release_alert(&self, credential: &str, alert_key: &str) -> Result<(), StoreError>;
    /// The alert keys claimed for `credential`, in ascending order.
    async fn list_alerts(&self, credential: &str) -> Result<Vec<String>, StoreError>;
}

/// The `[[discover]]` rules and the latest discovery of each (docs/discovery.md).
#[async_trait]
pub trait DiscoverRules: Send + Sync {
    /// Creates or replaces the rule with id `rule.id()`.
    async fn put_discover_rule(&self, rule: &DiscoverRule) -> Result<(), StoreError>;
    /// Every rule, ordered by id.
    async fn list_discover_rules(&self) -> Result<Vec<DiscoverRule>, StoreError>;
    /// Removes the rule `id` (and its latest run); returns whether it existed.
    async fn remove_discover_rule(&self, id: &str) -> Result<bool, StoreError>;
    /// Replaces the summary of the rule's latest discovery.
    async fn put_discovery_run(&self, run: &DiscoveryRun) -> Result<(), StoreError>;
    async fn last_discovery_run(&self, rule: &str) -> Result<Option<DiscoveryRun>, StoreError>;
}

/// Events of stored messages not yet published: the outbox (docs/events.md). An event is put
/// while its message is stored and deleted once published, so a crash in between republishes it.
#[async_trait]
pub trait EventOutbox: Send + Sync {
    /// Creates or replaces the outbox entry of `event.message_id` in `event.mailbox`.
    async fn put_event(&self, event: &MessageEvent) -> Result<(), StoreError>;
    /// The mailbox's events waiting to be published, ordered by message id.
    async fn pending_events(
        &self,
        mailbox: &MailboxAddress,
    ) -> Result<Vec<MessageEvent>, StoreError>;
    /// Removes the outbox entry (idempotent).
    async fn delete_event(
        &self,
        mailbox: &MailboxAddress,
        message_id: &MessageId,
    ) -> Result<(), StoreError>;
}

/// Every capability of the state store: what an adapter implements and the engine holds.
pub trait StateStore:
    MailboxConfigs
    + MessageRecords
    + RunLog
    + Cursors
    + Leases
    + Subscriptions
    + AlertClaims
    + DiscoverRules
    + EventOutbox
{
}

impl<T> StateStore for T where
    T: MailboxConfigs
        + MessageRecords
        + RunLog
        + Cursors
        + Leases
        + Subscriptions
        + AlertClaims
        + DiscoverRules
        + EventOutbox
{
}
