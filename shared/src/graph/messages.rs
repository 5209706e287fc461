//! Messages: listing, delta, raw MIME and the after-import actions (docs/graph.md §2, §4, §5).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use reqwest::Method;
use serde_json::json;

use super::client::{MailboxClient, PagesRead, Reply, Request};
use super::error::{GraphError, Operation};
use super::limiter::Permit;
use super::model::{Attachment, MessageSummary, Page};
use crate::domain::MessageId;
use crate::ports::ByteStream;

/// Where a delta round continues from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaStart<'a> {
    /// A new round from scratch for this folder id.
    Initial { folder_id: &'a str },
    /// A saved `@odata.nextLink` or `@odata.deltaLink`, followed verbatim.
    Link(&'a str),
}

impl MailboxClient {
    /// The first page of a folder's messages, oldest first, `page_size` at most (1–1000).
    ///
    /// Only the first page: in `move`/`delete` modes the folder shrinks as Mailroom works, so a
    /// `$skip`-based nextLink would skip messages (docs/graph.md §2). Callers list again instead.
    pub async fn first_messages(
        &self,
        folder_id: &str,
        page_size: u32,
    ) -> Result<Page<MessageSummary>, GraphError> {
        let top = page_size.clamp(1, 1000).to_string();
        let url = self.url(
            &["mailFolders", folder_id, "messages"],
            &[
                ("$select", MessageSummary::SELECT),
                ("$top", &top),
                ("$orderby", "receivedDateTime asc"),
            ],
        );
        self.json(Request::get(Operation::ListMessages, url)).await
    }

    /// The `top` newest messages of a folder (an id or well-known name), newest first.
    pub async fn newest_messages(
        &self,
        folder: &str,
        top: u32,
    ) -> Result<Page<MessageSummary>, GraphError> {
        let top = top.clamp(1, 1000).to_string();
        let url = self.url(
            &["mailFolders", folder, "messages"],
            &[
                ("$select", MessageSummary::SELECT),
                ("$top", &top),
                ("$orderby", "receivedDateTime desc"),
            ],
        );
        self.json(Request::get(Operation::ListMessages, url)).await
    }

    /// Follows a listing's `@odata.nextLink` verbatim.
    pub async fn next_messages(&self, link: &str) -> Result<Page<MessageSummary>, GraphError> {
        let url = self.trusted_link(Operation::ListMessages, link)?;
        self.json(Request::get(Operation::ListMessages, url)).await
    }

    /// One page of a delta round. Pages end with a nextLink (continue, even if empty) or a
    /// deltaLink (round complete).
    pub async fn delta_page(
        &self,
        start: DeltaStart<'_>,
        page_size: u32,
    ) -> Result<Page<MessageSummary>, GraphError> {
        let url = match start {
            DeltaStart::Initial { folder_id } => self.url(
                &["mailFolders", folder_id, "messages", "delta"],
                &[("$select", MessageSummary::SELECT)],
            ),
            DeltaStart::Link(link) => self.trusted_link(Operation::Delta, link)?,
        };
        let mut request = Request::get(Operation::Delta, url);
        request.max_page_size = Some(page_size.clamp(1, 1000));
        self.json(request).await
    }

    /// The message's raw MIME (`$value`) as a stream. The stream holds the request's in-flight
    /// slot until it ends, so a download counts against the mailbox's 4 like Graph counts it.
    pub async fn mime(&self, id: &MessageId) -> Result<ByteStream, GraphError> {
        let url = self.url(&["messages", id.as_str(), "$value"], &[]);
        match self
            .execute(Request::get(Operation::GetMime, url), true)
            .await?
        {
            Reply::Stream(response, permit) => {
                let expected = response.content_length();
                Ok(Box::pin(MimeStream {
                    inner: Box::pin(response.bytes_stream()),
                    permit: Some(permit),
                    expected,
                    received: 0,
                }))
            }
            Reply::Body(body) => Ok(Box::pin(futures::stream::iter([Ok(body)]))),
        }
    }

    /// The message's attachments: names, sizes and types, not their bytes (docs/graph.md §2).
    pub async fn attachments(&self, id: &MessageId) -> Result<Vec<Attachment>, GraphError> {
        let url = self.url(
            &["messages", id.as_str(), "attachments"],
            &[("$select", "name,size,contentType")],
        );
        let mut read = PagesRead::default();
        read.visit(Operation::ListAttachments, &url)?;
        let mut page: Page<Attachment> = self
            .json(Request::get(Operation::ListAttachments, url))
            .await?;
        let mut attachments = std::mem::take(&mut page.value);
        // Graph documents no paging for a message's attachments; a nextLink is followed anyway.
        while let Some(link) = page.next_link.take() {
            let url = self.trusted_link(Operation::ListAttachments, &link)?;
            read.visit(Operation::ListAttachments, &url)?;
            page = self
                .json(Request::get(Operation::ListAttachments, url))
                .await?;
            attachments.append(&mut page.value);
        }
        Ok(attachments)
    }

    /// Moves a message to a folder (id or well-known name). With immutable ids the id does not
    /// change, so a repeated move of a message already there is harmless.
    pub async fn move_message(&self, id: &MessageId, destination: &str) -> Result<(), GraphError> {
        let url = self.url(&["messages", id.as_str(), "move"], &[]);
        self.send(Request {
            operation: Operation::MoveMessage,
            method: Method::POST,
            url,
            json: Some(json!({ "destinationId": destination })),
            max_page_size: None,
        })
        .await
    }

    pub async fn mark_read(&self, id: &MessageId) -> Result<(), GraphError> {
        let url = self.url(&["messages", id.as_str()], &[]);
        self.send(Request {
            operation: Operation::MarkRead,
            method: Method::PATCH,
            url,
            json: Some(json!({ "isRead": true })),
            max_page_size: None,
        })
        .await
    }
}

/// A MIME download: yields the body's chunks, checks the length against `Content-Length` and
/// releases the in-flight slot as soon as the body is done.
struct MimeStream {
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    permit: Option<Permit>,
    expected: Option<u64>,
    received: u64,
}

impl Stream for MimeStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.permit.is_none() {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                self.received += chunk.len() as u64;
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.permit = None;
                Poll::Ready(Some(Err(std::io::Error::other(format!(
                    "message download failed: {}",
                    super::auth::describe(&e)
                )))))
            }
            Poll::Ready(None) => {
                self.permit = None;
                match self.expected {
                    Some(expected) if expected != self.received => {
                        Poll::Ready(Some(Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!(
                                "message download ended after {} of {expected} bytes",
                                self.received
                            ),
                        ))))
                    }
                    _ => Poll::Ready(None),
                }
            }
        }
    }
}
