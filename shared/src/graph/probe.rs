//! Set-up probes for `mailroom doctor`: requests that prove a permission without changing
//! anything a person would notice.

use reqwest::Method;
use serde_json::json;

use super::client::{MailboxClient, Request};
use super::error::{GraphError, Operation};
use crate::domain::MessageId;

impl MailboxClient {
    /// Writes a message's `isRead` back with the value it already has: a write that Graph
    /// authorizes like any other (it needs Mail.ReadWrite, docs/graph.md §8) but that leaves the
    /// message as it was. Graph still bumps `lastModifiedDateTime`/`changeKey`, so the message
    /// may show up once more in a delta round as updated.
    pub async fn rewrite_read_flag(&self, id: &MessageId, is_read: bool) -> Result<(), GraphError> {
        let url = self.url(&["messages", id.as_str()], &[]);
        self.send(Request {
            // The same request as marking read, so a 403 names Mail.ReadWrite.
            operation: Operation::MarkRead,
            method: Method::PATCH,
            url,
            json: Some(json!({ "isRead": is_read })),
            max_page_size: None,
        })
        .await
    }
}
