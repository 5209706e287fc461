//! One message: fetch MIME → write blob → create record → after-import action → mark done.
//!
//! Each step is idempotent, so a crash between any two of them loses nothing and stores nothing
//! twice: the blob key is deterministic (a re-run overwrites it), the record is created
//! conditionally (a re-run finds it and goes straight to the action), and the actions are safe to
//! repeat (immutable ids survive a move).

use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use sha2::{Digest, Sha256};

use super::report::MessageOutcome;
use super::{Engine, ImportError, Step};
use crate::domain::{FolderKey, MailboxConfig, MessageId, MessageRecord, RecordState, blob_key};
use crate::graph::{GraphError, MailboxClient, MessageSummary};
use crate::ports::{ByteStream, CreateOutcome};

/// The after-import action with its destination resolved to a folder id.
#[derive(Debug, Clone)]
pub(super) enum Action {
    MoveTo(String),
    MarkRead,
    None,
}

/// Everything needed to import the messages of one folder.
pub(super) struct FolderRun<'a> {
    pub engine: &'a Engine,
    pub graph: &'a MailboxClient,
    pub config: &'a MailboxConfig,
    pub key: FolderKey,
    pub action: Action,
}

impl FolderRun<'_> {
    fn before(&self, step: Step, id: &MessageId) -> Result<(), ImportError> {
        Ok(self.engine.observer.before(step, &self.key, Some(id))?)
    }

    /// Imports one message, trying again (up to the configured attempts) after transient
    /// failures such as a download cut short. Errors that stop the folder are returned; other
    /// failures become [`MessageOutcome::Failed`].
    pub(super) async fn import_message(
        &self,
        m: &MessageSummary,
    ) -> Result<MessageOutcome, ImportError> {
        let attempts = self.engine.options.message_attempts.max(1);
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            match self.attempt(m).await {
                Ok(outcome) => break outcome,
                Err(e) if e.stops_folder() => return Err(e),
                Err(e) if e.is_transient() && attempt < attempts => {
                    tracing::debug!(message_id = %m.id, attempt, error = %e, "retrying message");
                }
                Err(e) => {
                    tracing::warn!(message_id = %m.id, error = %e, "message not imported; the next run tries again");
                    break MessageOutcome::Failed {
                        error: e.to_string(),
                    };
                }
            }
        };
        self.engine.observer.settled(&self.key, &outcome);
        Ok(outcome)
    }

    async fn attempt(&self, m: &MessageSummary) -> Result<MessageOutcome, ImportError> {
        let engine = self.engine;
        let mailbox = &self.config.address;
        let existing = engine.state.get_record(mailbox, &m.id).await?;
        let outcome = match existing {
            // Delta modes see a message again after any change (marking it read is one); once
            // done, it stays done. In move/delete modes a done message still in the folder was put
            // back or a move was lost: act again, never store again.
            Some(record)
                if record.state == RecordState::Done && self.config.action.uses_delta() =>
            {
                return Ok(MessageOutcome::Unchanged);
            }
            Some(record) => {
                self.finish(&m.id, record.state).await?;
                return Ok(MessageOutcome::AlreadyStored);
            }
            None => self.store(m).await?,
        };
        self.finish(&m.id, RecordState::Stored).await?;
        Ok(outcome)
    }

    /// Fetch → blob → conditional record. Returns `Imported`, or `AlreadyStored` when another
    /// runner won the race to create the record.
    async fn store(&self, m: &MessageSummary) -> Result<MessageOutcome, ImportError> {
        let engine = self.engine;
        let mailbox = &self.config.address;
        let received_at = m
            .received_date_time
            .ok_or_else(|| ImportError::MissingField {
                id: m.id.clone(),
                field: "receivedDateTime",
            })?;
        let key = blob_key(mailbox, &m.id, received_at);

        self.before(Step::FetchMime, &m.id)?;
        let body = match self.graph.mime(&m.id).await {
            Ok(body) => body,
            Err(GraphError::NotFound { .. }) => return Ok(MessageOutcome::Vanished),
            Err(e) => return Err(e.into()),
        };
        let (body, digest) = digesting(body);
        self.before(Step::WriteBlob, &m.id)?;
        engine.blobs.put(&key, body).await?;
        let (size, sha256) = digest
            .lock()
            .map(|d| (d.size, hex::encode(d.sha.clone().finalize())))
            .unwrap_or_default();

        let record = MessageRecord {
            mailbox: mailbox.clone(),
            message_id: m.id.clone(),
            folder: self.config.folder.clone(),
            internet_message_id: m.internet_message_id.clone(),
            subject: m.subject.clone(),
            from: m.from_address(),
            received_at,
            size,
            sha256,
            blob_key: key,
            imported_at: engine.clock.now(),
            state: RecordState::Stored,
        };
        if engine.events.is_some() {
            // Before the record: a stored message always has its event in the outbox.
            let event = engine.prepare_event(self.graph, m, &record).await?;
            self.before(Step::WriteEvent, &m.id)?;
            engine.state.put_event(&event).await?;
        }
        self.before(Step::CreateRecord, &m.id)?;
        Ok(match engine.state.create_record(&record).await? {
            CreateOutcome::Created => MessageOutcome::Imported { bytes: size },
            CreateOutcome::AlreadyStored(_) => MessageOutcome::AlreadyStored,
        })
    }

    /// Finishes a record an earlier run stored but did not mark done: its action may or may not
    /// have happened, and in `move`/`delete` modes the message may no longer be in the folder.
    pub(super) async fn finish_stored(
        &self,
        id: &MessageId,
    ) -> Result<MessageOutcome, ImportError> {
        let outcome = match self.finish(id, RecordState::Stored).await {
            Ok(()) => MessageOutcome::AlreadyStored,
            Err(e) if e.stops_folder() => return Err(e),
            Err(e) => MessageOutcome::Failed {
                error: e.to_string(),
            },
        };
        self.engine.observer.settled(&self.key, &outcome);
        Ok(outcome)
    }

    /// After-import action, then mark the record done.
    async fn finish(&self, id: &MessageId, state: RecordState) -> Result<(), ImportError> {
        self.before(Step::AfterImportAction, id)?;
        let acted = match &self.action {
            Action::MoveTo(destination) => self.graph.move_message(id, destination).await,
            Action::MarkRead => self.graph.mark_read(id).await,
            Action::None => Ok(()),
        };
        match acted {
            // Gone from the mailbox (a person deleted it): it is stored, so it is done.
            Ok(()) | Err(GraphError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if state != RecordState::Done {
            self.before(Step::MarkDone, id)?;
            self.engine
                .state
                .mark_done(&self.config.address, id)
                .await?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Digesting {
    sha: Sha256,
    size: u64,
}

/// Passes a stream through while computing its size and SHA-256.
fn digesting(body: ByteStream) -> (ByteStream, Arc<Mutex<Digesting>>) {
    let digest = Arc::new(Mutex::new(Digesting::default()));
    let sink = digest.clone();
    let body = body.inspect_ok(move |chunk| {
        if let Ok(mut d) = sink.lock() {
            d.sha.update(chunk);
            d.size += chunk.len() as u64;
        }
    });
    (Box::pin(body), digest)
}
