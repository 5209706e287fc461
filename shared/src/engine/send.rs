//! Sending from a configured mailbox, exactly once per idempotency key (docs/sending.md).
//!
//! `sendMail` is not idempotent, so a send is a draft Mailroom can find again:
//!
//! 1. a message in Sent Items or the Outbox marked with the key: sent already, done;
//! 2. a finished draft (marked with the key): a crash came between finishing and sending it;
//!    send it;
//! 3. unfinished drafts (only the pending mark): a crash came while attaching; delete them;
//! 4. create the draft (or the reply) with the pending mark, attach the files, mark it finished,
//!    send it.
//!
//! Each step before the send can be repeated; the send is the one step that cannot, and every
//! retry looks for its result first. The window that remains is in docs/sending.md.

use super::{Engine, ImportError, Interrupted, Step};
use crate::domain::send::SendRequest;
use crate::domain::{FolderKey, InvalidValue, MailboxAddress, MessageId};
use crate::graph::{DraftMark, GraphError, NewDraft};
use crate::ports::{AttachmentError, AttachmentSource, OpenedAttachment, StoreError};

/// How a send went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Sent now; the draft's id (Graph keeps it once sent).
    Sent { message: MessageId },
    /// A message with this idempotency key was sent before: nothing was sent now.
    AlreadySent,
}

/// Why a send failed. Nothing was sent, whatever the error (a retry finds any draft left).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the send request is not valid: {0}")]
    Invalid(#[from] InvalidValue),
    #[error(
        "{from} is not a configured mailbox, so Mailroom has no credential to send from it; configured: {configured}"
    )]
    UnknownMailbox {
        from: MailboxAddress,
        configured: String,
    },
    #[error(
        "the message to reply to ({id}) is not in {mailbox}: it was deleted, or the id is not one of its stored messages"
    )]
    ReplyToUnknown {
        mailbox: MailboxAddress,
        id: MessageId,
    },
    #[error(transparent)]
    Attachment(#[from] AttachmentError),
    #[error(transparent)]
    Import(#[from] ImportError),
}

impl From<GraphError> for SendError {
    fn from(e: GraphError) -> Self {
        Self::Import(ImportError::Graph(e))
    }
}

impl From<StoreError> for SendError {
    fn from(e: StoreError) -> Self {
        Self::Import(ImportError::Store(e))
    }
}

impl From<Interrupted> for SendError {
    fn from(e: Interrupted) -> Self {
        Self::Import(ImportError::Interrupted(e))
    }
}

impl SendError {
    /// Whether trying again later can succeed without a person fixing the request or the set-up
    /// (for the outbox queue: retry, or the dead-letter queue with the reason).
    pub fn retry_can_help(&self) -> bool {
        match self {
            Self::Invalid(_) | Self::UnknownMailbox { .. } | Self::ReplyToUnknown { .. } => false,
            Self::Attachment(e) => e.retry_can_help(),
            // Graph refused the request itself (a message over the mailbox's size limit, a
            // recipient it rejects): the same request is refused again. Throttling (429) and
            // timeouts (408) are not Api errors, and 5xx can pass.
            Self::Import(ImportError::Graph(GraphError::Api { status, .. })) => {
                !(400..500).contains(status)
            }
            Self::Import(e) => e.retry_can_help(),
        }
    }
}

impl Engine {
    /// Sends `request` from its mailbox, once per idempotency key; attachment references are
    /// resolved by `attachments`.
    pub async fn send(
        &self,
        request: &SendRequest,
        attachments: &dyn AttachmentSource,
    ) -> Result<SendOutcome, SendError> {
        request.validate()?;
        // Every attachment is found before anything is created: a missing one sends nothing.
        let mut opened: Vec<OpenedAttachment> = Vec::new();
        for reference in &request.attachments {
            opened.push(attachments.open(reference).await?);
        }
        let config = match self
            .state
            .mailbox_folders(&request.from)
            .await?
            .into_iter()
            .next()
        {
            Some(config) => config,
            None => {
                let mut configured: Vec<String> = self
                    .state
                    .list_mailboxes()
                    .await?
                    .into_iter()
                    .map(|c| c.address.to_string())
                    .collect();
                configured.dedup();
                return Err(SendError::UnknownMailbox {
                    from: request.from.clone(),
                    configured: if configured.is_empty() {
                        "none".into()
                    } else {
                        configured.join(", ")
                    },
                });
            }
        };
        let graph = self.connect(&config).await?;
        let key = request.idempotency_key.trim();
        let step = |step: Step| -> Result<(), Interrupted> {
            let at = FolderKey {
                mailbox: request.from.clone(),
                folder: "sentitems".into(),
            };
            self.observer.before(step, &at, None)
        };

        for folder in ["sentitems", "outbox"] {
            if !graph
                .find_marked(folder, DraftMark::Key, key)
                .await?
                .is_empty()
            {
                tracing::info!(from = %request.from, folder, "a message with this idempotency key was sent before; not sending again");
                return Ok(SendOutcome::AlreadySent);
            }
        }
        if let Some(draft) = graph
            .find_marked("drafts", DraftMark::Key, key)
            .await?
            .into_iter()
            .next()
        {
            tracing::info!(from = %request.from, "sending the finished draft an earlier attempt left");
            step(Step::SendDraft)?;
            graph.send_draft(&draft).await?;
            return Ok(SendOutcome::Sent { message: draft });
        }
        for unfinished in graph.find_marked("drafts", DraftMark::Pending, key).await? {
            tracing::info!(from = %request.from, draft = %unfinished, "deleting an unfinished draft an earlier attempt left");
            graph.delete_message(&unfinished).await?;
        }

        let new = NewDraft {
            subject: &request.subject,
            content_type: request.body.content_type(),
            content: request.body.content(),
            to: &request.to,
            cc: &request.cc,
            bcc: &request.bcc,
            key,
        };
        step(Step::CreateDraft)?;
        let draft = match &request.reply_to {
            None => graph.create_draft(&new).await?,
            Some(original) => match graph.create_reply(original, &new).await {
                Err(GraphError::NotFound { .. }) => {
                    return Err(SendError::ReplyToUnknown {
                        mailbox: request.from.clone(),
                        id: original.clone(),
                    });
                }
                other => other?,
            },
        };
        for attachment in opened {
            step(Step::Attach)?;
            graph
                .attach(
                    &draft,
                    &attachment.name,
                    &attachment.content_type,
                    attachment.size,
                    attachment.body,
                )
                .await?;
        }
        step(Step::FinishDraft)?;
        graph.mark_draft(&draft, DraftMark::Key, key).await?;
        step(Step::SendDraft)?;
        graph.send_draft(&draft).await?;
        tracing::info!(from = %request.from, message = %draft, "sent");
        Ok(SendOutcome::Sent { message: draft })
    }
}
