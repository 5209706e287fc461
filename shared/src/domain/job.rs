//! Sync jobs: what the webhook asks the import function to do for one mailbox folder.

use time::OffsetDateTime;

use super::{FolderKey, MailboxAddress};

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

/// A queue message whose body is not a sync job (it ends in the dead-letter queue).
#[derive(Debug, thiserror::Error)]
#[error("the message body is not a sync job: {0}")]
pub struct NotAJob(pub serde_json::Error);

/// One message of a queue batch, in delivery order.
#[derive(Debug)]
pub struct QueuedJob {
    /// The queue's id for the message (reported back when it failed).
    pub id: String,
    /// Its FIFO message group (the mailbox).
    pub group: String,
    /// The job, or why the body is not one.
    pub job: Result<SyncJob, NotAJob>,
}
