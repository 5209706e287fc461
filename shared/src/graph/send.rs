//! `sendMail` (docs/graph.md §4): a plain-text message from a mailbox, for alerts. Needs Mail.Send.

use reqwest::Method;
use serde_json::json;

use super::client::{MailboxClient, Request};
use super::error::{GraphError, Operation};
use crate::domain::MailboxAddress;

impl MailboxClient {
    /// Sends a plain-text message from this mailbox to `to`, not saved to Sent Items. Graph
    /// answers 202: the message is queued, not yet delivered.
    pub async fn send_mail(
        &self,
        to: &[MailboxAddress],
        subject: &str,
        text: &str,
    ) -> Result<(), GraphError> {
        let recipients: Vec<_> = to
            .iter()
            .map(|address| json!({ "emailAddress": { "address": address.as_str() } }))
            .collect();
        let url = self.url(&["sendMail"], &[]);
        self.send(Request {
            operation: Operation::SendMail,
            method: Method::POST,
            url,
            json: Some(json!({
                "message": {
                    "subject": subject,
                    "body": { "contentType": "Text", "content": text },
                    "toRecipients": recipients,
                },
                "saveToSentItems": false,
            })),
            max_page_size: None,
        })
        .await
    }
}
