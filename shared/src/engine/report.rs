//! What a run did, per folder and mailbox: returned by the Lambda function, printed by the CLI.

use serde::Serialize;
use time::OffsetDateTime;

use crate::domain::MailboxAddress;

/// The outcome of one message in one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Stored now: blob written and record created.
    Imported { bytes: u64 },
    /// A record already existed (an earlier run stored it); the after-import action was completed.
    AlreadyStored,
    /// Already stored and done: nothing to do (delta modes see messages again after updates).
    Unchanged,
    /// The message disappeared from the mailbox before it could be fetched.
    Vanished,
    /// Could not be imported in this run; the next run tries again.
    Failed { error: String },
}

/// One mailbox folder's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FolderReport {
    pub folder: String,
    pub action: String,
    pub imported: u64,
    pub already_stored: u64,
    pub unchanged: u64,
    pub vanished: u64,
    pub failed: u64,
    pub bytes: u64,
    /// New work stopped because the deadline came; the rest is for the next run.
    pub stopped_at_deadline: bool,
    /// Why the folder stopped early, if it did.
    pub error: Option<String>,
}

impl FolderReport {
    pub(crate) fn count(&mut self, outcome: &MessageOutcome) {
        match outcome {
            MessageOutcome::Imported { bytes } => {
                self.imported += 1;
                self.bytes += bytes;
            }
            MessageOutcome::AlreadyStored => self.already_stored += 1,
            MessageOutcome::Unchanged => self.unchanged += 1,
            MessageOutcome::Vanished => self.vanished += 1,
            MessageOutcome::Failed { .. } => self.failed += 1,
        }
    }
}

/// How a mailbox's run went overall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MailboxStatus {
    /// Every folder finished (possibly with some messages left for the next run at the deadline).
    Ok,
    /// At least one folder stopped on an error or some messages failed.
    Failed,
    /// Another runner holds the mailbox's lease; this run left it alone.
    Busy,
    /// The mailbox's delegated credential needs its person to sign in again
    /// (`mailroom credentials login NAME`); nothing of it can be imported until then.
    NeedsSignIn,
}

impl MailboxStatus {
    /// The name `status` and the run summary show.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Busy => "busy",
            Self::NeedsSignIn => "needs sign-in",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MailboxReport {
    pub mailbox: MailboxAddress,
    pub status: MailboxStatus,
    pub folders: Vec<FolderReport>,
    /// A mailbox-wide problem (lease, state store), if any.
    pub error: Option<String>,
    /// The events of stored messages this run published (with an event publisher).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<super::EventsReport>,
}

impl MailboxReport {
    pub fn imported(&self) -> u64 {
        self.folders.iter().map(|f| f.imported).sum()
    }

    pub fn failed(&self) -> u64 {
        self.folders.iter().map(|f| f.failed).sum()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    pub mailboxes: Vec<MailboxReport>,
}

impl RunReport {
    pub fn imported(&self) -> u64 {
        self.mailboxes.iter().map(MailboxReport::imported).sum()
    }

    pub fn failed_mailboxes(&self) -> usize {
        self.mailboxes
            .iter()
            .filter(|m| matches!(m.status, MailboxStatus::Failed | MailboxStatus::NeedsSignIn))
            .count()
    }
}
