//! The import engine: pure logic over the ports and the Graph client. It does not know whether a
//! Lambda function, the CLI or a test called it.
//!
//! - [`Engine::run`] imports every enabled mailbox folder (mailboxes in parallel, bounded);
//! - [`Engine::discover`] applies the `[[discover]]` rules (`discover.rs`);
//! - `mailbox.rs` holds one mailbox's lease and connects to Graph, re-reading a rejected secret once;
//! - `folder.rs` is the per-folder algorithm (docs/import.md);
//! - `message.rs` stores one message: MIME → blob → record → action → done.

mod discover;
mod events;
mod folder;
mod jobs;
mod mailbox;
mod message;
mod report;
mod send;
mod subscriptions;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::credentials::Credentials;
use crate::domain::{FolderKey, MailboxAddress, MailboxConfig, MessageId};
use crate::graph::{GraphClient, GraphError};
use crate::ports::{BlobError, BlobStore, EventPublisher, SecretError, StateStore, StoreError};

pub use crate::domain::job::QueuedJob;
pub use discover::{DiscoveryReport, RuleChanges, RuleError, RuleReport};
pub use events::EventsReport;
#[cfg(feature = "local")]
pub use jobs::run_local_jobs;
pub use jobs::{FanOut, JobOutcome, run_batch};
pub use report::{FolderReport, MailboxReport, MailboxStatus, MessageOutcome, RunReport};
pub use send::{SendError, SendOutcome};
pub use subscriptions::{PushOptions, SubscriptionReport};

/// Knobs of the engine. The defaults suit both a Lambda run and the CLI.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Messages per listing or delta page.
    pub page_size: u32,
    /// Messages worked on at once per folder. More than Graph's 4 slots, so the slots stay busy
    /// while other messages are being written to the blob and state stores.
    pub message_concurrency: usize,
    /// Mailboxes imported at once.
    pub mailbox_parallelism: usize,
    /// How long a mailbox job of the fan-out works before it queues its continuation, so one
    /// mailbox's backlog never holds a consumer for long.
    pub job_slice: Duration,
    /// Attempts per message within a run for transient failures (a cut-off download, say).
    pub message_attempts: u32,
    /// How long a lease outlives the deadline: covers work still finishing after it.
    pub lease_margin: Duration,
    /// Identifies this runner in leases.
    pub owner: String,
    /// Keep Graph subscriptions for push (a public webhook URL is configured); `None` polls only.
    pub push: Option<PushOptions>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            page_size: 100,
            message_concurrency: 16,
            mailbox_parallelism: 4,
            job_slice: Duration::from_secs(300),
            message_attempts: 3,
            lease_margin: Duration::from_secs(120),
            owner: format!("mailroom-{}", uuid::Uuid::new_v4()),
            push: None,
        }
    }
}

/// The steps of importing one message, in order, plus saving a delta cursor. An
/// [`ImportObserver`] may stop the run before any of them (tests inject crashes this way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    FetchMime,
    WriteBlob,
    /// Put the message's event in the outbox (with an event publisher only).
    WriteEvent,
    CreateRecord,
    AfterImportAction,
    MarkDone,
    SaveCursor,
    /// Publish a done message's event (with an event publisher only).
    PublishEvent,
    /// Clear a published event from the outbox.
    ClearEvent,
    /// Sending (`Engine::send`): create the draft, attach one file, mark the draft finished,
    /// send it.
    CreateDraft,
    Attach,
    FinishDraft,
    SendDraft,
}

impl Step {
    pub const ALL: [Step; 9] = [
        Step::FetchMime,
        Step::WriteBlob,
        Step::WriteEvent,
        Step::CreateRecord,
        Step::AfterImportAction,
        Step::MarkDone,
        Step::SaveCursor,
        Step::PublishEvent,
        Step::ClearEvent,
    ];

    /// The steps of a send, in order.
    pub const SEND: [Step; 4] = [
        Step::CreateDraft,
        Step::Attach,
        Step::FinishDraft,
        Step::SendDraft,
    ];

    /// A step only an engine with an event publisher takes.
    pub fn is_event_step(self) -> bool {
        matches!(
            self,
            Step::WriteEvent | Step::PublishEvent | Step::ClearEvent
        )
    }
}

/// Returned by an observer to stop the run on the spot, as if the process died.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("run interrupted before {0:?}")]
pub struct Interrupted(pub Step);

/// Watches an import: progress for the CLI, fault injection for tests. Both methods default to
/// doing nothing.
pub trait ImportObserver: Send + Sync {
    /// Called before each step; an `Err` abandons the run immediately, leaving state exactly as
    /// a crash at that point would.
    fn before(
        &self,
        _step: Step,
        _key: &FolderKey,
        _id: Option<&MessageId>,
    ) -> Result<(), Interrupted> {
        Ok(())
    }
    /// Called once per message when its outcome in this run is known.
    fn settled(&self, _key: &FolderKey, _outcome: &MessageOutcome) {}
}

/// The observer that observes nothing.
pub struct NoObserver;
impl ImportObserver for NoObserver {}

/// Why a folder (or a message) could not be imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    #[error("Graph listed message {id} without {field}")]
    MissingField { id: MessageId, field: &'static str },
}

impl ImportError {
    /// Worth another attempt at the same message in this run.
    fn is_transient(&self) -> bool {
        match self {
            Self::Blob(BlobError::Source { .. }) => true,
            Self::Graph(GraphError::Transport { .. } | GraphError::Throttled { .. }) => true,
            Self::Graph(GraphError::Api { status, .. }) => *status >= 500,
            _ => false,
        }
    }

    /// Whether a later attempt of the same work can get past this, without a person changing
    /// something (a permission, a folder, a secret, a malformed item).
    pub fn retry_can_help(&self) -> bool {
        match self {
            Self::Graph(e) => !e.is_fatal_for_mailbox(),
            Self::Store(e) => e.is_retryable(),
            Self::Secret(e) => matches!(e, SecretError::Unavailable { .. }),
            Self::Blob(_) | Self::Interrupted(_) => true,
            Self::MissingField { .. } => false,
        }
    }

    /// No other message of the folder can succeed either: stop the folder and report this.
    fn stops_folder(&self) -> bool {
        match self {
            Self::Graph(e) => e.is_fatal_for_mailbox(),
            Self::Store(_) | Self::Secret(_) | Self::Interrupted(_) => true,
            Self::Blob(BlobError::Unavailable { .. }) => true,
            _ => false,
        }
    }
}

/// Everything the engine works with. Entry points build one per process and share it.
pub struct Engine {
    pub state: Arc<dyn StateStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub credentials: Arc<Credentials>,
    pub graph: GraphClient,
    pub clock: Arc<dyn Clock>,
    pub observer: Arc<dyn ImportObserver>,
    /// Where the event of each stored message goes; `None` publishes none (and keeps no outbox).
    pub events: Option<Arc<dyn EventPublisher>>,
    pub options: EngineOptions,
    /// Set to stop starting new work (a shutdown): messages in flight finish, cursors are saved,
    /// leases are released, as at a deadline.
    pub stop: CancellationToken,
}

impl Engine {
    /// Imports every enabled mailbox folder (or only those of `only`), stopping new work at
    /// `stop_at`. Mailboxes run in parallel up to `mailbox_parallelism`; one failing mailbox never
    /// stops the others.
    pub async fn run(
        &self,
        stop_at: OffsetDateTime,
        only: Option<&MailboxAddress>,
    ) -> Result<RunReport, StoreError> {
        let started = self.clock.now();
        let configs = self.state.list_mailboxes().await?;
        let groups = group_by_mailbox(
            configs
                .into_iter()
                .filter(|c| c.enabled && only.is_none_or(|address| &c.address == address)),
        );
        let mailboxes = futures::stream::iter(groups)
            .map(|(address, configs)| self.import_mailbox(address, configs, stop_at))
            .buffer_unordered(self.options.mailbox_parallelism.max(1))
            .collect::<Vec<_>>()
            .await;
        let mut report = RunReport {
            started_at: started,
            finished_at: self.clock.now(),
            mailboxes,
        };
        report.mailboxes.sort_by(|a, b| a.mailbox.cmp(&b.mailbox));
        Ok(report)
    }
}

/// Folders of the same mailbox run one after another under one lease: Graph's limits are per
/// mailbox.
fn group_by_mailbox(
    configs: impl Iterator<Item = MailboxConfig>,
) -> Vec<(MailboxAddress, Vec<MailboxConfig>)> {
    let mut groups: std::collections::BTreeMap<MailboxAddress, Vec<MailboxConfig>> =
        Default::default();
    for config in configs {
        groups
            .entry(config.address.clone())
            .or_default()
            .push(config);
    }
    groups.into_iter().collect()
}
