//! Ports: the capabilities the engine needs from the outside world, as small async traits.
//!
//! Adapters implement them for AWS (DynamoDB, S3, Secrets Manager, SQS, SNS) and for local mode.
//! SDK types never cross these traits; adapters turn SDK errors into the meanings below. The state
//! store is split by capability (`state.rs`): each caller asks only for what it uses. The ports
//! speak the domain's types and import nothing else of the crate.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::domain::alert::Alert;
use crate::domain::credential::AppCredential;
use crate::domain::event::{MessageEvent, RawLocation};
use crate::domain::job::SyncJob;

mod state;

pub use crate::domain::credential::{SecretError, SignInStore};
pub use state::{
    AlertClaims, Cause, CreateOutcome, Cursors, DiscoverRules, EventOutbox, LeaseOutcome, Leases,
    MailboxConfigs, MessageRecords, RunLog, StateStore, StoreError, SubscriptionLookup,
    Subscriptions,
};

/// A stream of bytes, such as a message's raw MIME on its way from Graph to a blob store.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

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
    /// Where the object under `key` is, for a reader outside Mailroom (the stored event).
    fn location(&self, key: &str) -> RawLocation;
}

/// The largest attachment Mailroom sends: Exchange Online's largest message (150 MB), which
/// an upload session can carry (docs/graph.md, "Sending").
pub const MAX_ATTACHMENT_BYTES: u64 = 150 * 1024 * 1024;

/// Failure to read an attachment of a send request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachmentError {
    #[error("attachment '{reference}' was not found ({detail}); nothing was sent")]
    NotFound { reference: String, detail: String },
    #[error("attachment '{reference}' could not be read: {detail}")]
    Unavailable { reference: String, detail: String },
    #[error(
        "attachment '{reference}' is {size} bytes; the largest Mailroom sends is 150 MB (Exchange Online's message size limit); nothing was sent"
    )]
    TooLarge { reference: String, size: u64 },
}

impl AttachmentError {
    /// Only an unreadable attachment may be readable later.
    pub fn retry_can_help(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// An attachment, ready to be read.
pub struct OpenedAttachment {
    /// Its file name, as the recipient sees it.
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub body: ByteStream,
}

impl std::fmt::Debug for OpenedAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedAttachment")
            .field("name", &self.name)
            .field("content_type", &self.content_type)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Where the attachments of send requests come from: files locally, a bucket on AWS.
#[async_trait]
pub trait AttachmentSource: Send + Sync {
    /// Opens the attachment `reference` (a path, an object key).
    async fn open(&self, reference: &str) -> Result<OpenedAttachment, AttachmentError>;
}

/// Failure to publish an event; the event stays in the outbox and the next run tries again.
#[derive(Debug, Clone, thiserror::Error)]
#[error("publishing the event through {channel} failed: {detail}")]
pub struct PublishError {
    pub channel: &'static str,
    pub detail: String,
}

/// Where the events of stored messages go: EventBridge in AWS, an HTTP endpoint locally
/// (docs/events.md).
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes `events`; one result per event, in order. An event whose result is `Ok` was
    /// accepted; the others are published again later.
    async fn publish(&self, events: &[MessageEvent]) -> Vec<Result<(), PublishError>>;
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

    /// Enqueues several jobs, as [`Self::enqueue`] would one by one; returns each job that could
    /// not be queued with why (the others are queued). Adapters with a batch call override it.
    async fn enqueue_all(&self, jobs: &[SyncJob]) -> Vec<(SyncJob, QueueError)> {
        let mut failed = Vec::new();
        for job in jobs {
            if let Err(e) = self.enqueue(job).await {
                failed.push((job.clone(), e));
            }
        }
        failed
    }
}
