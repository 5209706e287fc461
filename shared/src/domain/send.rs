//! A request to send mail from a configured mailbox (docs/sending.md): what an application puts
//! on the outbox, and what `mailroom send` builds from its flags.
//!
//! Sending is exactly once per [`SendRequest::idempotency_key`]: the engine marks the draft it
//! creates with the key, and a retry looks for the key before it creates anything.

use serde::{Deserialize, Serialize};

use super::{InvalidValue, MailboxAddress, MessageId};

/// The longest idempotency key taken, in bytes: it is stored in an extended property and
/// matched in a `$filter`.
pub const MAX_KEY_BYTES: usize = 200;
/// The most recipients one request may name (to, cc and bcc together). Exchange Online's default
/// recipient limit per message is 500.
pub const MAX_RECIPIENTS: usize = 500;
/// The largest body taken, in bytes. A draft is created with one JSON request, and Graph refuses
/// requests over 4 MB (docs/graph.md, "Sending"); attachments go separately.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendRequest {
    /// The mailbox it is sent from: one Mailroom is configured for.
    pub from: MailboxAddress,
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    #[serde(default)]
    pub bcc: Vec<String>,
    pub subject: String,
    pub body: Body,
    /// Files to attach: paths locally, object keys of the attachments bucket on AWS.
    #[serde(default)]
    pub attachments: Vec<String>,
    /// The immutable id of a stored message of `from` to reply to: the reply threads with it.
    #[serde(default)]
    pub reply_to: Option<MessageId>,
    /// Sends with the same key send once.
    pub idempotency_key: String,
}

/// A message body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "contentType", content = "content")]
pub enum Body {
    Text(String),
    Html(String),
}

impl Body {
    pub fn content(&self) -> &str {
        match self {
            Self::Text(s) | Self::Html(s) => s,
        }
    }

    /// Graph's `contentType`.
    pub fn content_type(&self) -> &'static str {
        match self {
            Self::Text(_) => "Text",
            Self::Html(_) => "HTML",
        }
    }
}

impl SendRequest {
    /// Every recipient, checked: at least one (a reply has the original's sender), each an
    /// email address, no more than [`MAX_RECIPIENTS`].
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let recipients = self.to.len() + self.cc.len() + self.bcc.len();
        if recipients == 0 && self.reply_to.is_none() {
            return Err(InvalidValue {
                field: "recipients",
                value: String::new(),
                expected: "at least one address in to, cc or bcc (or replyTo, a reply to its sender)",
            });
        }
        if recipients > MAX_RECIPIENTS {
            return Err(InvalidValue {
                field: "recipients",
                value: recipients.to_string(),
                expected: "at most 500 addresses in to, cc and bcc together",
            });
        }
        for address in self.to.iter().chain(&self.cc).chain(&self.bcc) {
            MailboxAddress::parse(address).map_err(|_| InvalidValue {
                field: "recipient",
                value: address.clone(),
                expected: "an email address such as someone@contoso.com",
            })?;
        }
        let key = self.idempotency_key.trim();
        if key.is_empty() || key.len() > MAX_KEY_BYTES || key.chars().any(char::is_control) {
            return Err(InvalidValue {
                field: "idempotency key",
                value: self.idempotency_key.clone(),
                expected: "1 to 200 bytes of text without control characters",
            });
        }
        if self.body.content().len() > MAX_BODY_BYTES {
            return Err(InvalidValue {
                field: "body",
                value: format!("{} bytes", self.body.content().len()),
                expected: "at most 3 MB (Graph takes a request of up to 4 MB; attach larger content)",
            });
        }
        if self.subject.chars().any(|c| c.is_control()) {
            return Err(InvalidValue {
                field: "subject",
                value: self.subject.escape_debug().to_string(),
                expected: "one line of text without control characters",
            });
        }
        Ok(())
    }
}

/// A MIME type from a file name's extension: the common ones, else `application/octet-stream`.
pub fn content_type_of(name: &str) -> &'static str {
    let extension = std::path::Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "pdf" => "application/pdf",
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "xml" => "application/xml",
        "zip" => "application/zip",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "eml" => "message/rfc822",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> SendRequest {
        SendRequest {
            from: MailboxAddress::parse("ops@contoso.com").unwrap(),
            to: vec!["someone@fabrikam.com".into()],
            cc: vec![],
            bcc: vec![],
            subject: "Hello".into(),
            body: Body::Text("Hi".into()),
            attachments: vec![],
            reply_to: None,
            idempotency_key: "k-1".into(),
        }
    }

    #[test]
    fn a_request_reads_as_documented() {
        let json = r#"{"from":"ops@contoso.com","to":["a@b.com"],"subject":"S",
            "body":{"contentType":"html","content":"<p>x</p>"},"idempotencyKey":"k"}"#;
        let parsed: SendRequest = serde_json::from_str(json).unwrap();
        assert_eq!(parsed.body, Body::Html("<p>x</p>".into()));
        assert!(parsed.validate().is_ok());
        let typo = json.replace("\"to\"", "\"too\"");
        assert!(serde_json::from_str::<SendRequest>(&typo).is_err());
    }

    #[test]
    fn bad_requests_name_what_is_wrong() {
        let err = |f: fn(&mut SendRequest)| {
            let mut r = request();
            f(&mut r);
            r.validate().unwrap_err().to_string()
        };
        assert!(err(|r| r.to.clear()).contains("at least one address"));
        let mut reply = request();
        reply.to.clear();
        reply.reply_to = Some(MessageId::new("AAMkAD1"));
        assert!(
            reply.validate().is_ok(),
            "a reply goes to the original's sender"
        );
        assert!(err(|r| r.to = vec!["not an address".into()]).contains("'not an address'"));
        assert!(err(|r| r.idempotency_key = " ".into()).contains("idempotency key"));
        assert!(err(|r| r.idempotency_key = "k".repeat(201)).contains("1 to 200 bytes"));
        assert!(
            err(|r| r.body = Body::Html("x".repeat(MAX_BODY_BYTES + 1))).contains("at most 3 MB")
        );
        assert!(err(|r| r.subject = "a\r\nBcc: x@y.com".into()).contains("subject"));
        assert!(request().validate().is_ok());
    }
}
