//! The event of every stored message (docs/events.md): prepared into the state store's outbox
//! while the message is stored, published once its record is done, then cleared.
//!
//! A crash anywhere in between loses nothing: an event still in the outbox is published by the
//! mailbox's next run, with the same id (at least once; consumers deduplicate on the id).

use serde::Serialize;

use super::{Engine, ImportError, Step};
use crate::domain::event::{self, AttachmentInfo, MessageEvent};
use crate::domain::{FolderKey, MailboxAddress, MessageRecord, RecordState};
use crate::graph::{MailboxClient, MessageSummary};

/// What a mailbox run's event pass did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct EventsReport {
    /// Events published (and cleared from the outbox).
    pub published: u64,
    /// Events left in the outbox for the next run, because publishing failed.
    pub unpublished: u64,
    /// Why publishing failed, if it did.
    pub error: Option<String>,
}

impl Engine {
    /// The event of `m`, about to be stored as `record` (its Graph summary is at hand only now).
    /// Lists the message's attachments when it has any: one request.
    pub(super) async fn prepare_event(
        &self,
        graph: &MailboxClient,
        m: &MessageSummary,
        record: &MessageRecord,
    ) -> Result<MessageEvent, ImportError> {
        let attachments = if m.has_attachments == Some(true) {
            graph
                .attachments(&m.id)
                .await?
                .into_iter()
                .map(|a| AttachmentInfo {
                    name: a.name.unwrap_or_default(),
                    size: a.size,
                    content_type: a.content_type,
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(MessageEvent {
            version: MessageEvent::VERSION,
            id: MessageEvent::id_of(&record.mailbox, &record.message_id),
            mailbox: record.mailbox.clone(),
            folder: record.folder.clone(),
            message_id: record.message_id.clone(),
            internet_message_id: record.internet_message_id.clone(),
            conversation_id: m.conversation_id.clone(),
            subject: record.subject.clone(),
            from: record.from.clone(),
            to: m.to_addresses(),
            cc: m.cc_addresses(),
            received_at: record.received_at,
            stored_at: record.imported_at,
            size: record.size,
            sha256: record.sha256.clone(),
            attachments,
            preview: event::preview(m.body_preview.as_deref().unwrap_or_default()),
            raw: self.blobs.location(&record.blob_key),
        })
    }

    /// Publishes the mailbox's events whose messages are done, and clears them from the outbox.
    /// An event whose record is still `stored` waits for it; one whose record does not exist
    /// (the run that prepared it stopped before storing, and this one did not store the message)
    /// is dropped: the run that stores the message prepares it again. Call it holding the
    /// mailbox's lease.
    pub(super) async fn publish_events(
        &self,
        mailbox: &MailboxAddress,
    ) -> Result<EventsReport, ImportError> {
        let mut report = EventsReport::default();
        let Some(publisher) = &self.events else {
            return Ok(report);
        };
        let mut ready = Vec::new();
        for event in self.state.pending_events(mailbox).await? {
            match self.state.get_record(mailbox, &event.message_id).await? {
                Some(record) if record.state == RecordState::Done => ready.push(event),
                Some(_) => {}
                None => {
                    tracing::debug!(message_id = %event.message_id, "event of a message not stored: dropped");
                    self.state.delete_event(mailbox, &event.message_id).await?;
                }
            }
        }
        for chunk in ready.chunks(PUBLISH_CHUNK) {
            for event in chunk {
                self.before_event(Step::PublishEvent, event)?;
            }
            let results = publisher.publish(chunk).await;
            for (event, result) in chunk.iter().zip(results) {
                match result {
                    Ok(()) => {
                        self.before_event(Step::ClearEvent, event)?;
                        self.state.delete_event(mailbox, &event.message_id).await?;
                        report.published += 1;
                    }
                    Err(e) => {
                        report.unpublished += 1;
                        report.error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
        }
        if let Some(error) = &report.error {
            tracing::warn!(published = report.published, unpublished = report.unpublished, %error, "some events were not published; the next run publishes them");
        } else if report.published > 0 {
            tracing::info!(published = report.published, "events published");
        }
        Ok(report)
    }

    fn before_event(&self, step: Step, event: &MessageEvent) -> Result<(), ImportError> {
        let key = FolderKey {
            mailbox: event.mailbox.clone(),
            folder: event.folder.clone(),
        };
        Ok(self.observer.before(step, &key, Some(&event.message_id))?)
    }
}

/// Events handed to the publisher at once (EventBridge takes ten a request; the adapter splits).
const PUBLISH_CHUNK: usize = 100;
