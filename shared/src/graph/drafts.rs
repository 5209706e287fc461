//! Drafts, and sending them (docs/graph.md, "Sending"; docs/sending.md): what sending exactly
//! once per idempotency key is built from.
//!
//! `sendMail` is not idempotent, so Mailroom creates a draft, marks it with extended properties,
//! attaches files, sends the draft, and before any of that looks for the mark.

use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{MailboxClient, Request};
use super::error::{GraphError, Operation};
use super::model::Page;
use crate::domain::MessageId;
use crate::ports::ByteStream;

/// Mailroom's property set: a GUID of its own, so its named properties never meet another
/// application's ("String {GUID} Name …", the documented id format of a named property).
const PROPERTY_SET: &str = "{6b1c8d0e-4a7f-4f3e-9c55-2d8e1a7b3f60}";

/// A named extended property Mailroom puts on the drafts it creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DraftMark {
    /// Set when the draft is created: a draft with only this mark is unfinished (its
    /// attachments may be incomplete) and is deleted by a retry.
    Pending,
    /// Set once the draft is complete: a retry sends this draft instead of making another.
    Key,
}

impl DraftMark {
    /// The property's id.
    pub fn property_id(self) -> String {
        let name = match self {
            Self::Pending => "MailroomPendingKey",
            Self::Key => "MailroomIdempotencyKey",
        };
        format!("String {PROPERTY_SET} Name {name}")
    }
}

/// What a new draft holds.
#[derive(Debug, Clone)]
pub struct NewDraft<'a> {
    pub subject: &'a str,
    /// Graph's `contentType`: `Text` or `HTML`.
    pub content_type: &'a str,
    pub content: &'a str,
    pub to: &'a [String],
    pub cc: &'a [String],
    pub bcc: &'a [String],
    /// The idempotency key, put in [`DraftMark::Pending`].
    pub key: &'a str,
}

impl NewDraft<'_> {
    fn json(&self, reply: bool) -> Value {
        let recipients = |addresses: &[String]| -> Vec<Value> {
            addresses
                .iter()
                .map(|a| json!({ "emailAddress": { "address": a } }))
                .collect()
        };
        let mut message = json!({
            "body": { "contentType": self.content_type, "content": self.content },
            "singleValueExtendedProperties": [
                { "id": DraftMark::Pending.property_id(), "value": self.key }
            ],
        });
        // A reply takes its subject ("RE: …") and, unless given, its recipient from the original.
        if !reply || !self.to.is_empty() {
            message["toRecipients"] = json!(recipients(self.to));
        }
        if !reply {
            message["subject"] = json!(self.subject);
        }
        message["ccRecipients"] = json!(recipients(self.cc));
        message["bccRecipients"] = json!(recipients(self.bcc));
        message
    }
}

#[derive(Deserialize)]
struct Created {
    id: MessageId,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadSession {
    upload_url: String,
}

/// Attachments up to this size go in one request; larger ones through an upload session. Graph
/// takes a file under 3 MB in one POST and one of 3 MB or more only through an upload session,
/// and reads "MB" as MiB (docs/graph.md §12).
pub const ONE_REQUEST_MAX: u64 = 3 * 1024 * 1024 - 1;
/// Upload session chunks: a multiple of 320 KiB under Outlook's 4,000,000 bytes per request.
const CHUNK: usize = 320 * 1024 * 12;

impl MailboxClient {
    /// The ids of the messages in `folder` (an id or well-known name) whose `mark` is `value`.
    pub async fn find_marked(
        &self,
        folder: &str,
        mark: DraftMark,
        value: &str,
    ) -> Result<Vec<MessageId>, GraphError> {
        // OData string literals double their single quotes.
        let filter = format!(
            "singleValueExtendedProperties/Any(ep: ep/id eq '{}' and ep/value eq '{}')",
            mark.property_id(),
            value.replace('\'', "''")
        );
        let url = self.url(
            &["mailFolders", folder, "messages"],
            &[("$filter", &filter), ("$select", "id"), ("$top", "10")],
        );
        let page: Page<Created> = self.json(Request::get(Operation::FindMarked, url)).await?;
        Ok(page.value.into_iter().map(|m| m.id).collect())
    }

    /// Creates a draft in Drafts; returns its id.
    pub async fn create_draft(&self, draft: &NewDraft<'_>) -> Result<MessageId, GraphError> {
        let url = self.url(&["messages"], &[]);
        let created: Created = self
            .json(Request {
                operation: Operation::CreateDraft,
                method: Method::POST,
                url,
                json: Some(draft.json(false)),
                max_page_size: None,
            })
            .await?;
        Ok(created.id)
    }

    /// Creates a draft replying to `original` (`createReply`: it threads with it); returns its id.
    pub async fn create_reply(
        &self,
        original: &MessageId,
        draft: &NewDraft<'_>,
    ) -> Result<MessageId, GraphError> {
        let url = self.url(&["messages", original.as_str(), "createReply"], &[]);
        let created: Created = self
            .json(Request {
                operation: Operation::CreateReply,
                method: Method::POST,
                url,
                json: Some(json!({ "message": draft.json(true) })),
                max_page_size: None,
            })
            .await?;
        Ok(created.id)
    }

    /// Sets `mark` on a draft to `value`.
    pub async fn mark_draft(
        &self,
        id: &MessageId,
        mark: DraftMark,
        value: &str,
    ) -> Result<(), GraphError> {
        let url = self.url(&["messages", id.as_str()], &[]);
        self.send(Request {
            operation: Operation::UpdateDraft,
            method: Method::PATCH,
            url,
            json: Some(json!({
                "singleValueExtendedProperties": [{ "id": mark.property_id(), "value": value }]
            })),
            max_page_size: None,
        })
        .await
    }

    /// Attaches a file of `size` bytes to a draft: in one request up to [`ONE_REQUEST_MAX`],
    /// through an upload session beyond.
    pub async fn attach(
        &self,
        draft: &MessageId,
        name: &str,
        content_type: &str,
        size: u64,
        body: ByteStream,
    ) -> Result<(), GraphError> {
        if size <= ONE_REQUEST_MAX {
            let bytes = collect(body, size).await?;
            let url = self.url(&["messages", draft.as_str(), "attachments"], &[]);
            return self
                .send(Request {
                    operation: Operation::AddAttachment,
                    method: Method::POST,
                    url,
                    json: Some(json!({
                        "@odata.type": "#microsoft.graph.fileAttachment",
                        "name": name,
                        "contentType": content_type,
                        "contentBytes": base64::engine::general_purpose::STANDARD.encode(&bytes),
                    })),
                    max_page_size: None,
                })
                .await;
        }
        let url = self.url(
            &[
                "messages",
                draft.as_str(),
                "attachments",
                "createUploadSession",
            ],
            &[],
        );
        let session: UploadSession = self
            .json(Request {
                operation: Operation::UploadAttachment,
                method: Method::POST,
                url,
                json: Some(json!({
                    "AttachmentItem": {
                        "attachmentType": "file",
                        "name": name,
                        "size": size,
                        "contentType": content_type,
                    }
                })),
                max_page_size: None,
            })
            .await?;
        self.upload(&session.upload_url, size, body).await
    }

    /// PUTs `body` to an upload session's URL in [`CHUNK`]s. The URL carries its own
    /// authorization: no token goes with it (docs/graph.md, "Sending").
    async fn upload(
        &self,
        upload_url: &str,
        size: u64,
        mut body: ByteStream,
    ) -> Result<(), GraphError> {
        let operation = Operation::UploadAttachment;
        let url = self.upload_url(upload_url)?;
        let mut buffer: Vec<u8> = Vec::with_capacity(CHUNK);
        let mut sent: u64 = 0;
        loop {
            let next = body.next().await;
            let done = next.is_none();
            if let Some(chunk) = next {
                let chunk = chunk.map_err(|e| GraphError::Transport {
                    operation: operation.name(),
                    attempts: 1,
                    detail: format!("reading the attachment: {e}"),
                })?;
                buffer.extend_from_slice(&chunk);
            }
            while buffer.len() >= CHUNK || (done && !buffer.is_empty()) {
                let take = buffer.len().min(CHUNK);
                let piece = Bytes::copy_from_slice(&buffer[..take]);
                buffer.drain(..take);
                let end = sent + take as u64 - 1;
                self.put_chunk(&url, piece, sent, end, size).await?;
                sent = end + 1;
            }
            if done {
                break;
            }
        }
        if sent != size {
            return Err(GraphError::Transport {
                operation: operation.name(),
                attempts: 1,
                detail: format!("the attachment had {sent} bytes, not the {size} announced"),
            });
        }
        Ok(())
    }

    async fn put_chunk(
        &self,
        url: &reqwest::Url,
        piece: Bytes,
        start: u64,
        end: u64,
        size: u64,
    ) -> Result<(), GraphError> {
        let operation = Operation::UploadAttachment;
        let response = self
            .http()
            .put(url.clone())
            .header(
                reqwest::header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{size}"),
            )
            .body(piece)
            .send()
            .await
            .map_err(|e| GraphError::Transport {
                operation: operation.name(),
                attempts: 1,
                detail: e.to_string(),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let detail = response.text().await.unwrap_or_default();
        Err(GraphError::Api {
            operation: operation.name(),
            status: status.as_u16(),
            code: String::new(),
            message: detail.chars().take(300).collect(),
            client_request_id: String::new(),
        })
    }

    /// Sends a draft (`POST …/send`): Graph answers 202 and moves it to Sent Items.
    pub async fn send_draft(&self, id: &MessageId) -> Result<(), GraphError> {
        let url = self.url(&["messages", id.as_str(), "send"], &[]);
        self.send(Request {
            operation: Operation::SendDraft,
            method: Method::POST,
            url,
            json: None,
            max_page_size: None,
        })
        .await
    }

    /// Deletes a message (an unfinished draft). Already gone counts as deleted.
    pub async fn delete_message(&self, id: &MessageId) -> Result<(), GraphError> {
        let url = self.url(&["messages", id.as_str()], &[]);
        match self
            .send(Request {
                operation: Operation::DeleteMessage,
                method: Method::DELETE,
                url,
                json: None,
                max_page_size: None,
            })
            .await
        {
            Err(GraphError::NotFound { .. }) => Ok(()),
            other => other,
        }
    }
}

impl MailboxClient {
    /// An upload session's URL, as Graph gave it: on another host than Graph's (Outlook's), so
    /// it must be `https://`; the sandbox's, on Graph's own origin, may be `http://`.
    fn upload_url(&self, link: &str) -> Result<reqwest::Url, GraphError> {
        let malformed = |detail: &str| GraphError::MalformedResponse {
            operation: Operation::UploadAttachment.name(),
            detail: format!("the upload session's URL {detail}"),
        };
        let url = reqwest::Url::parse(link).map_err(|_| malformed("is not a URL"))?;
        let graph = &self.client.inner.config.graph_url;
        if url.scheme() == "https" || url.origin() == graph.origin() {
            Ok(url)
        } else {
            Err(malformed("is not https://"))
        }
    }

    fn http(&self) -> &reqwest::Client {
        &self.client.inner.http
    }
}

/// The whole of a small attachment, checked against its announced size.
async fn collect(mut body: ByteStream, size: u64) -> Result<Vec<u8>, GraphError> {
    let mut bytes = Vec::with_capacity(size as usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| GraphError::Transport {
            operation: Operation::AddAttachment.name(),
            attempts: 1,
            detail: format!("reading the attachment: {e}"),
        })?;
        bytes.extend_from_slice(&chunk);
    }
    if bytes.len() as u64 != size {
        return Err(GraphError::Transport {
            operation: Operation::AddAttachment.name(),
            attempts: 1,
            detail: format!(
                "the attachment had {} bytes, not the {size} announced",
                bytes.len()
            ),
        });
    }
    Ok(bytes)
}
