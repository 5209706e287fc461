//! Ports: the capabilities the engine needs from the outside world, as small async traits.
//!
//! Adapters implement them for AWS (DynamoDB, S3, Secrets Manager, SQS, SNS) and for local mode.
//! SDK types never cross these traits; adapters turn SDK errors into the meanings below.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use time::OffsetDateTime;

use crate::credentials::AppCredential;
use crate::domain::{
    Cursor, FolderKey, MailboxAddress, MailboxConfig, MessageId, MessageRecord, RunSummary,
    SubscriptionRecord,
};
use crate::expiry::Alert;

/// A stream of bytes, such as a message's raw MIME on its way from Graph to a blob store.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Failure of the state store. `operation` says what was being done, for the operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("state store unavailable during {operation}: {detail}")]
    Unavailable {
        operation: &'static str,
        detail: String,
    },
    #[error("state store item is malformed ({operation}): {detail}")]
    Malformed {
        operation: &'static str,
        detail: String,
    },
}

/// Failure of the blob store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    #[error("reading the message body for '{key}' failed: {source}")]
    Source {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("blob store failed to {operation} '{key}': {detail}")]
    Unavailable {
        operation: &'static str,
        key: String,
        detail: String,
    },
}

/// Failure to read a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    #[error("credential '{name}' not found: {hint}")]
    NotFound { name: String, hint: String },
    #[error("credential '{name}' is malformed: {detail}")]
    Malformed { name: String, detail: String },
    #[error("credential '{name}' could not be read: {detail}")]
    Unavailable { name: String, detail: String },
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

/// Mailbox configuration, message records, cursors and leases. One table in DynamoDB; one
/// database locally.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Creates or replaces the configuration of one mailbox folder.
    async fn put_mailbox(&self, config: &MailboxConfig) -> Result<(), StoreError>;
    /// Every configured mailbox folder, enabled or not, ordered by address then folder.
    async fn list_mailboxes(&self) -> Result<Vec<MailboxConfig>, StoreError>;
    /// Removes one mailbox folder's configuration; returns whether it existed.
    async fn remove_mailbox(&self, key: &FolderKey) -> Result<bool, StoreError>;

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

    /// Replaces the summary of the mailbox's latest run.
    async fn put_run(&self, run: &RunSummary) -> Result<(), StoreError>;
    async fn last_run(&self, mailbox: &MailboxAddress) -> Result<Option<RunSummary>, StoreError>;

    async fn get_cursor(&self, key: &FolderKey) -> Result<Option<Cursor>, StoreError>;
    async fn put_cursor(&self, key: &FolderKey, cursor: &Cursor) -> Result<(), StoreError>;

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

    /// Creates or replaces the subscription record with `sub.id`.
    async fn put_subscription(&self, sub: &SubscriptionRecord) -> Result<(), StoreError>;
    /// The subscription record with Graph subscription id `id` (a notification's lookup).
    async fn get_subscription(&self, id: &str) -> Result<Option<SubscriptionRecord>, StoreError>;
    /// Every subscription record, ordered by mailbox, folder, then id.
    async fn list_subscriptions(&self) -> Result<Vec<SubscriptionRecord>, StoreError>;
    /// Removes the subscription record `id`; returns whether it existed.
    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError>;

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

/// A state store, concrete or shared as `Arc<dyn StateStore>`: lets a narrow view of the store
/// (what one function may do, e.g. `push::SubscriptionLookup`) be implemented once for both.
pub trait AsStateStore: Send + Sync {
    fn state_store(&self) -> &dyn StateStore;
}

impl<T: StateStore> AsStateStore for T {
    fn state_store(&self) -> &dyn StateStore {
        self
    }
}

impl AsStateStore for std::sync::Arc<dyn StateStore> {
    fn state_store(&self) -> &dyn StateStore {
        self.as_ref()
    }
}

/// Where raw MIME goes: S3 in AWS, a directory locally.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores `body` under `key`, replacing any object there. The body is consumed as a stream
    /// and never held whole in memory. On error nothing is left visible under `key` that was not
    /// there before (a replaced object may be either version).
    async fn put(&self, key: &str, body: ByteStream) -> Result<(), BlobError>;
    /// Size of the object under `key`, if there is one.
    async fn size(&self, key: &str) -> Result<Option<u64>, BlobError>;
    /// Reads the object under `key` as a stream.
    async fn get(&self, key: &str) -> Result<ByteStream, BlobError>;
}

/// Reads app credentials by name (a Secrets Manager secret id, or a local credential name).
/// Implementations read through on every call; [`crate::credentials::Credentials`] caches.
#[async_trait]
pub trait SecretSource: Send + Sync {
    async fn fetch(&self, name: &str) -> Result<AppCredential, SecretError>;
}

/// Failure to deliver an alert.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AlertError {
    #[error("sending the alert through {channel} failed: {detail}")]
    Failed {
        channel: &'static str,
        detail: String,
    },
}

/// Where credential alerts go: an SNS topic, mail through Graph, standard output locally. An
/// alert names the credential, its app, the expiry and what to do, never a secret value.
#[async_trait]
pub trait Alerter: Send + Sync {
    async fn send(&self, alert: &Alert) -> Result<(), AlertError>;
}

/// What a sync job asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Import what is new in the folder now (a change notification arrived).
    Sync,
    /// Read the folder in full, ignoring any saved delta cursor (a `missed` lifecycle event:
    /// Graph dropped notifications). Creates no duplicates: stored messages are skipped.
    FullResync,
    /// Renew, reauthorize or recreate the folder's subscription (a `reauthorizationRequired` or
    /// `subscriptionRemoved` lifecycle event). Needs Graph credentials, so the import function
    /// does it, not the webhook.
    Resubscribe,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::FullResync => "full_resync",
            Self::Resubscribe => "resubscribe",
        }
    }
}

/// A job for one mailbox folder, queued by the webhook and run by the import function.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncJob {
    pub mailbox: MailboxAddress,
    pub folder: String,
    pub kind: JobKind,
}

impl SyncJob {
    /// Identical jobs enqueued within one window of this many seconds (aligned to the Unix epoch)
    /// may be collapsed into one.
    pub const DEDUPLICATION_WINDOW_SECONDS: i64 = 10;

    pub fn key(&self) -> FolderKey {
        FolderKey {
            mailbox: self.mailbox.clone(),
            folder: self.folder.clone(),
        }
    }

    /// The job's deduplication id at `now`: the SHA-256 (hex, 64 characters) of the job and of
    /// the [`Self::DEDUPLICATION_WINDOW_SECONDS`] window `now` falls in. Equal jobs in one window
    /// share an id; the same job in the next window gets a new one, so it is enqueued again.
    pub fn deduplication_id(&self, now: OffsetDateTime) -> String {
        use sha2::{Digest, Sha256};
        let window = now
            .unix_timestamp()
            .div_euclid(Self::DEDUPLICATION_WINDOW_SECONDS);
        // Unambiguous: an address holds no whitespace, the kind and window are fixed words, and
        // the folder (which may hold anything) comes last.
        let key = format!(
            "{}\n{}\n{window}\n{}",
            self.mailbox.as_str(),
            self.kind.as_str(),
            self.folder
        );
        hex::encode(Sha256::digest(key.as_bytes()))
    }
}

/// Failure of the job queue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    #[error("job queue unavailable during {operation}: {detail}")]
    Unavailable {
        operation: &'static str,
        detail: String,
    },
}

/// Where sync jobs wait for the import function: an SQS FIFO queue in AWS, memory locally.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Enqueues a job. Jobs of one mailbox stay in order (FIFO group = mailbox); identical jobs
    /// enqueued close together (within one [`SyncJob::DEDUPLICATION_WINDOW_SECONDS`] window) may
    /// be collapsed into one (deduplication).
    async fn enqueue(&self, job: &SyncJob) -> Result<(), QueueError>;
}
