//! The event Mailroom publishes for every stored message (docs/events.md; the JSON Schema is
//! docs/message-stored.schema.json).
//!
//! An event is prepared while the message is stored and kept in the state store's outbox until
//! it is published, so a crash between storing and publishing republishes it on the next run.
//! Delivery is at least once; [`MessageEvent::id`] is stable (the same message always gets the
//! same id), so a consumer deduplicates on it.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{MailboxAddress, MessageId, is_bidi_control};

/// The `detail-type` on EventBridge.
pub const DETAIL_TYPE: &str = "Message Stored";
/// The `source` on EventBridge.
pub const SOURCE: &str = "mailroom";
/// The longest preview an event carries, in characters (Graph's `bodyPreview` holds at most 255).
pub const PREVIEW_CHARS: usize = 255;

/// One stored message, for the applications around the mailbox. Version 1 of the payload; a
/// change that removes or retypes a field bumps [`MessageEvent::version`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageEvent {
    /// The payload's version: 1.
    pub version: u32,
    /// Stable per message: consumers deduplicate on it.
    pub id: String,
    pub mailbox: MailboxAddress,
    /// The folder path it was imported from.
    pub folder: String,
    /// Graph's immutable id: the key of the stored message.
    pub message_id: MessageId,
    pub internet_message_id: Option<String>,
    pub conversation_id: Option<String>,
    pub subject: Option<String>,
    pub from: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub stored_at: OffsetDateTime,
    /// Size of the raw MIME in bytes.
    pub size: u64,
    /// SHA-256 of the raw MIME, hex.
    pub sha256: String,
    pub attachments: Vec<AttachmentInfo>,
    /// The start of the body as plain text, at most [`PREVIEW_CHARS`] characters, control
    /// characters removed.
    pub preview: String,
    /// Where the raw `.eml` is.
    pub raw: RawLocation,
}

/// An attachment's name and size; the bytes are in the raw message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentInfo {
    pub name: String,
    pub size: u64,
    pub content_type: Option<String>,
}

/// Where a stored message's raw MIME is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawLocation {
    /// An S3 object.
    S3 { bucket: String, key: String },
    /// A file of the local blob store.
    File { file: String },
    /// Somewhere only the store knows (the in-memory store of tests).
    Key { key: String },
}

impl MessageEvent {
    pub const VERSION: u32 = 1;

    /// The event id of a message: 32 hex digits of the SHA-256 of its mailbox and immutable id.
    /// The same message always gets the same id, whichever run or runner publishes it.
    pub fn id_of(mailbox: &MailboxAddress, message_id: &MessageId) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("{}\n{}", mailbox, message_id.as_str()).as_bytes());
        hex::encode(&digest[..16])
    }
}

/// `text` as an event preview: control characters (bidi controls among them) become spaces, runs
/// of whitespace one space, and at most [`PREVIEW_CHARS`] characters remain.
pub fn preview(text: &str) -> String {
    let mut out = String::new();
    let mut space = false;
    for c in text.chars() {
        let c = if c.is_control() || is_bidi_control(c) {
            ' '
        } else {
            c
        };
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
    }
    // Cut after a space, the preview would end with it.
    let mut preview: String = out.chars().take(PREVIEW_CHARS).collect();
    preview.truncate(preview.trim_end().len());
    preview
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_stable_and_differs_per_mailbox_and_message() {
        let a = MailboxAddress::parse("a@contoso.com").unwrap();
        let b = MailboxAddress::parse("b@contoso.com").unwrap();
        let m = MessageId::new("AAMkAD1");
        let n = MessageId::new("AAMkAD2");
        assert_eq!(MessageEvent::id_of(&a, &m), MessageEvent::id_of(&a, &m));
        assert_eq!(MessageEvent::id_of(&a, &m).len(), 32);
        assert_ne!(MessageEvent::id_of(&a, &m), MessageEvent::id_of(&b, &m));
        assert_ne!(MessageEvent::id_of(&a, &m), MessageEvent::id_of(&a, &n));
    }

    /// The JSON Schema in docs/ names exactly the fields an event has, all of them required.
    #[test]
    fn the_documented_schema_matches_the_payload() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/message-stored.schema.json")).unwrap();
        let event = MessageEvent {
            version: MessageEvent::VERSION,
            id: MessageEvent::id_of(
                &MailboxAddress::parse("a@contoso.com").unwrap(),
                &MessageId::new("AAMkAD1"),
            ),
            mailbox: MailboxAddress::parse("a@contoso.com").unwrap(),
            folder: "Inbox".into(),
            message_id: MessageId::new("AAMkAD1"),
            internet_message_id: None,
            conversation_id: None,
            subject: None,
            from: None,
            to: vec![],
            cc: vec![],
            received_at: OffsetDateTime::UNIX_EPOCH,
            stored_at: OffsetDateTime::UNIX_EPOCH,
            size: 1,
            sha256: "0".repeat(64),
            attachments: vec![AttachmentInfo {
                name: "a.pdf".into(),
                size: 1,
                content_type: None,
            }],
            preview: String::new(),
            raw: RawLocation::S3 {
                bucket: "b".into(),
                key: "k".into(),
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let names = |v: &serde_json::Value| -> Vec<String> {
            let mut n: Vec<String> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect();
            n.sort();
            n
        };
        assert_eq!(keys(&json), keys(&schema["properties"]));
        assert_eq!(keys(&json), names(&schema["required"]));
        let attachment = &schema["properties"]["attachments"]["items"];
        assert_eq!(
            keys(&json["attachments"][0]),
            keys(&attachment["properties"])
        );
        assert_eq!(keys(&json["raw"]), ["bucket", "key"]);
    }

    #[test]
    fn a_preview_is_one_line_without_controls_and_bounded() {
        assert_eq!(
            preview("  Hello\r\n\tworld \u{202E}gnp.exe "),
            "Hello world gnp.exe"
        );
        assert_eq!(preview(&"é".repeat(400)).chars().count(), PREVIEW_CHARS);
        assert_eq!(preview(""), "");
    }
}
