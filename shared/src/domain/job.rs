//! Sync jobs: what the webhook asks the import function to do for one mailbox folder, and what
//! the scheduled run asks for each mailbox (docs/architecture.md, "Fan-out").

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
    /// Bring the folder's subscription in line with its configuration: create it, renew it if
    /// due, remove it if the folder is no longer subscribed. The scheduled run queues one for
    /// each folder whose subscription is due, so upkeep fans out as imports do.
    Subscription,
    /// Import every enabled folder of the mailbox (`folder` is empty): the scheduled run, fanned
    /// out one job per mailbox, and the continuation of such a job that ran out of time.
    Mailbox,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::FullResync => "full_resync",
            Self::Resubscribe => "resubscribe",
            Self::Subscription => "subscription",
            Self::Mailbox => "mailbox",
        }
    }
}

/// A job for one mailbox folder, queued by the webhook and run by the import function.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncJob {
    pub mailbox: MailboxAddress,
    pub folder: String,
    pub kind: JobKind,
    /// For a [`JobKind::Mailbox`] job, which slice of the mailbox's work it is: 0 from the
    /// scheduled run, one more for each continuation. Part of the deduplication id, so a
    /// continuation is never taken for a repeat of the job that queued it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub slice: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl SyncJob {
    /// The job that imports every enabled folder of `mailbox` ([`JobKind::Mailbox`]).
    pub fn mailbox(mailbox: MailboxAddress) -> Self {
        Self {
            mailbox,
            folder: String::new(),
            kind: JobKind::Mailbox,
            slice: 0,
        }
    }

    /// The job that keeps one folder's subscription ([`JobKind::Subscription`]).
    pub fn subscription(key: FolderKey) -> Self {
        Self {
            mailbox: key.mailbox,
            folder: key.folder,
            kind: JobKind::Subscription,
            slice: 0,
        }
    }

    /// The job that carries on where this one stopped.
    pub fn continuation(&self) -> Self {
        Self {
            slice: self.slice.saturating_add(1),
            ..self.clone()
        }
    }

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
        // Unambiguous: an address holds no whitespace, the kind, window and slice are fixed words
        // or numbers, and
        // the folder (which may hold anything) comes last.
        let key = format!(
            "{}\n{}\n{window}\n{}\n{}",
            self.mailbox.as_str(),
            self.kind.as_str(),
            self.slice,
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
