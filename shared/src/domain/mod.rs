//! Domain types: what a mailbox configuration, a stored message and a cursor are.
//!
//! Nothing here knows about AWS, SQLite or HTTP; adapters map these types to their storage.

pub mod alert;
pub mod credential;
pub mod event;
pub mod job;
pub mod send;
pub mod signature;

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A problem with a configuration value, naming the field and what is allowed. The value is
/// shown through [`shown`]: it may come from a mailbox or the directory, not only from the
/// person reading the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} '{}': {expected}", shown(value))]
pub struct InvalidValue {
    pub field: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// The Unicode characters that reorder how text is displayed without being visible themselves
/// (the Bidi_Control property: U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069). A
/// subject such as `invoice\u{202E}fdp.exe` shows as `invoiceexe.pdf`.
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// `text` as it may be printed to a terminal or a plain-text log: control characters (escape
/// sequences, carriage returns, NUL) and bidi controls are written as `\u{…}`, so text from a
/// mailbox (a subject, a folder name, an address) cannot move the cursor, recolour the screen
/// or reorder what is shown. Everything else, emoji and other scripts among it, is kept.
pub fn shown(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || is_bidi_control(c);
    if !text.contains(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            let _ = write!(out, "\\u{{{:X}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A mailbox's SMTP address (a user principal name works too), stored lowercased because
/// Exchange compares addresses case-insensitively. It names the mailbox's directory in the blob
/// store ([`blob_key`]), so it holds no character a path or a terminal would read specially.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MailboxAddress(String);

impl MailboxAddress {
    /// The longest address: RFC 5321 limits a path to 256 octets, two of them the angle
    /// brackets. It also keeps the address, a directory name in the blob store, within the 255
    /// bytes file systems allow a name.
    pub const MAX_BYTES: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let address = raw.trim().to_ascii_lowercase();
        let valid = match address.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && address.len() <= Self::MAX_BYTES
                    // No address has these (RFC 5322, RFC 6531); each would be read specially
                    // in a path (`/`, `\`), a key or a terminal.
                    && !address.contains(|c: char| {
                        c.is_whitespace()
                            || c.is_control()
                            || is_bidi_control(c)
                            || matches!(c, '/' | '\\' | '#')
                    })
                    && address.matches('@').count() == 1
            }
            None => false,
        };
        if valid {
            Ok(Self(address))
        } else {
            Err(InvalidValue {
                field: "mailbox address",
                value: raw.to_owned(),
                expected: "an email address such as reports@contoso.com",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MailboxAddress {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<MailboxAddress> for String {
    fn from(value: MailboxAddress) -> Self {
        value.0
    }
}

impl fmt::Display for MailboxAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message's immutable id (docs/graph.md §2): the key of a stored message. It survives moves
/// between folders of the same mailbox, which is what makes "store once, then move" safe.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(String);

impl MessageId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What happens to a message in the mailbox once it is safely stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum AfterImport {
    /// Move it to `processed_folder` (a folder path such as `Inbox/Processed`). Needs Mail.ReadWrite.
    Move { processed_folder: String },
    /// Mark it read and leave it where it is. Needs Mail.ReadWrite.
    MarkRead,
    /// Move it to Deleted Items, where a person can still recover it. Needs Mail.ReadWrite.
    Delete,
    /// Leave it untouched: a read-only archive. Mail.Read is enough.
    None,
}

impl AfterImport {
    /// The names users write in configuration.
    pub const NAMES: &'static str = "move, mark_read, delete, none";

    /// Builds an action from its configuration name and, for `move`, the processed folder.
    pub fn from_parts(name: &str, processed_folder: Option<&str>) -> Result<Self, InvalidValue> {
        let processed = processed_folder.map(str::trim).filter(|s| !s.is_empty());
        match (name.trim().to_ascii_lowercase().as_str(), processed) {
            ("move", Some(folder)) => Ok(Self::Move {
                processed_folder: folder.to_owned(),
            }),
            ("move", None) => Err(InvalidValue {
                field: "processed_folder",
                value: String::new(),
                expected: "a folder path such as Inbox/Processed (required when action = move)",
            }),
            ("mark_read", _) => Ok(Self::MarkRead),
            ("delete", _) => Ok(Self::Delete),
            ("none", _) => Ok(Self::None),
            _ => Err(InvalidValue {
                field: "action",
                value: name.to_owned(),
                expected: "one of move, mark_read, delete, none",
            }),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Move { .. } => "move",
            Self::MarkRead => "mark_read",
            Self::Delete => "delete",
            Self::None => "none",
        }
    }

    pub fn processed_folder(&self) -> Option<&str> {
        match self {
            Self::Move { processed_folder } => Some(processed_folder),
            _ => None,
        }
    }

    /// Whether the action changes the mailbox, and so needs Mail.ReadWrite.
    pub fn writes(&self) -> bool {
        !matches!(self, Self::None)
    }

    /// Whether the folder is read with a delta query. In `move` and `delete` modes the folder
    /// itself is the work queue: what is still there is still to do (docs/import.md, "Cursors").
    pub fn uses_delta(&self) -> bool {
        matches!(self, Self::MarkRead | Self::None)
    }
}

impl fmt::Display for AfterImport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Move { processed_folder } => write!(f, "move to '{processed_folder}'"),
            other => f.write_str(other.name()),
        }
    }
}

/// One watched mailbox folder: the unit of configuration and of import.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxConfig {
    pub address: MailboxAddress,
    /// Folder path, e.g. `Inbox/Backup Reports` or a well-known name such as `inbox`.
    pub folder: String,
    #[serde(flatten)]
    pub action: AfterImport,
    /// Name of the credential (a Secrets Manager secret id, or a `[credential.NAME]` locally).
    pub credential: String,
    pub enabled: bool,
    /// The `[[discover]]` rule that added this folder ([`crate::discovery::DiscoverRule::id`]);
    /// `None` for a folder configured by hand. Discovery enables and disables only its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered_by: Option<String>,
}

impl MailboxConfig {
    /// The folder name that stands for every folder of the mailbox (`folder = "*"`).
    pub const EVERY_FOLDER: &str = "*";

    pub fn key(&self) -> FolderKey {
        FolderKey {
            mailbox: self.address.clone(),
            folder: self.folder.clone(),
        }
    }

    /// Whether this archives every folder of the mailbox (`folder = "*"`).
    pub fn is_every_folder(&self) -> bool {
        self.folder == Self::EVERY_FOLDER
    }

    /// The cursor key of folder `id` found by `folder = "*"`: `*#{id}`, by id, so a renamed or
    /// moved folder keeps its cursor (folder ids are stable, docs/graph.md §3). A configured
    /// path would have to be a top-level folder named `*#` followed by that id to share it.
    pub fn every_folder_key(&self, id: &str) -> FolderKey {
        FolderKey {
            mailbox: self.address.clone(),
            folder: format!("{}#{id}", Self::EVERY_FOLDER),
        }
    }
}

/// Identifies one mailbox folder: the scope of a cursor.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FolderKey {
    pub mailbox: MailboxAddress,
    pub folder: String,
}

impl fmt::Display for FolderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.mailbox, self.folder)
    }
}

/// Where a stored message is in its life: `Stored` once record and blob exist, `Done` once the
/// after-import action has been carried out too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    Stored,
    Done,
}

impl RecordState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "stored" => Some(Self::Stored),
            "done" => Some(Self::Done),
            _ => None,
        }
    }
}

/// The record of one imported message. Created once, conditionally, after its MIME is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub mailbox: MailboxAddress,
    pub message_id: MessageId,
    /// The configured folder path the message was imported from.
    pub folder: String,
    pub internet_message_id: Option<String>,
    pub subject: Option<String>,
    /// Sender address.
    pub from: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// Size of the raw MIME in bytes.
    pub size: u64,
    /// SHA-256 of the raw MIME, hex.
    pub sha256: String,
    pub blob_key: String,
    #[serde(with = "time::serde::rfc3339")]
    pub imported_at: OffsetDateTime,
    pub state: RecordState,
}

/// How the latest run of a mailbox went, for `mailroom status`. Kept as one opaque document per
/// mailbox: nothing queries inside it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    pub mailbox: MailboxAddress,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    /// `ok` or `failed`.
    pub status: String,
    pub imported: u64,
    pub failed: u64,
    /// The first error of the run, if any.
    pub error: Option<String>,
}

impl RunSummary {
    /// The stored form (JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }
}

/// Progress through a delta round of one folder (docs/graph.md §5).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The `@odata.deltaLink` of the last complete round: everything before it is stored.
    pub delta_link: Option<String>,
    /// The `@odata.nextLink` to resume the current round from: everything on earlier pages is stored.
    pub next_link: Option<String>,
}

/// The shared secret Graph echoes in every change notification of a subscription
/// (`clientState`): random per subscription, compared in constant time, never shown in `Debug`.
#[derive(Clone)]
pub struct ClientState(secrecy::SecretString);

impl ClientState {
    /// A fresh random value: 64 hex characters (two v4 UUIDs, 244 random bits), under Graph's
    /// limit of 128.
    pub fn generate() -> Self {
        let value = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        Self(value.into())
    }

    /// A stored value, read back.
    pub fn from_stored(value: impl Into<String>) -> Self {
        Self(value.into().into())
    }

    /// The value, for storing it and for sending it to Graph.
    pub fn expose(&self) -> &str {
        use secrecy::ExposeSecret;
        self.0.expose_secret()
    }

    /// Whether `presented` (from a notification) is this value, in time independent of where
    /// they differ.
    pub fn matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.expose().as_bytes().ct_eq(presented.as_bytes()))
    }
}

impl PartialEq for ClientState {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other.expose())
    }
}
impl Eq for ClientState {}

impl fmt::Debug for ClientState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientState(<redacted>)")
    }
}

/// A Graph change-notification subscription Mailroom holds for one mailbox folder. Looked up by
/// `id` when a notification arrives; listed by the scheduled run to renew, recreate or remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionRecord {
    /// Graph's subscription id.
    pub id: String,
    pub mailbox: MailboxAddress,
    /// The configured folder path (as in [`MailboxConfig::folder`]).
    pub folder: String,
    /// The credential it was made with: needed to delete it once the folder is no longer
    /// configured.
    pub credential: String,
    pub client_state: ClientState,
    /// When Graph will drop the subscription unless it is renewed (what Graph returned).
    pub expires_at: OffsetDateTime,
    /// The URL Graph posts change notifications to.
    pub notification_url: String,
    pub created_at: OffsetDateTime,
}

impl SubscriptionRecord {
    pub fn key(&self) -> FolderKey {
        FolderKey {
            mailbox: self.mailbox.clone(),
            folder: self.folder.clone(),
        }
    }
}

/// The longest message id a blob key spells out (encoded). File systems allow a name 255 bytes;
/// the local store writes `.{name}.tmp-{32 hex digits}` beside the file first
/// (`shared/src/adapters/local/files.rs`), 38 bytes more than the name with its `.eml`, so the
/// id gets 213 at most. Graph's ids are about 150 characters.
const MAX_KEY_ID_BYTES: usize = 200;

/// What a too-long id keeps of its encoded form, before `~` and the digest's 32 hex digits.
const KEPT_ID_BYTES: usize = 160;

/// The object key of a message's raw MIME: deterministic, so a re-run after a crash overwrites the
/// same object instead of leaving a second copy. Immutable ids are base64 with `/` and `+`; the
/// URL-safe alphabet keeps the key one path segment.
///
/// The id comes from Graph, so the key must be safe whatever it holds: any character outside
/// base64's alphabet (`.`, `\`, `%`, NUL and other controls, bidi marks, any non-ASCII) is
/// percent-encoded as its UTF-8 bytes (`%2E`), so the file name is never `.` or `..`, holds no
/// separator and shows as written; Graph's own ids are unchanged, and so are their keys. An
/// id longer than [`MAX_KEY_ID_BYTES`] encoded keeps its first [`KEPT_ID_BYTES`] and ends with
/// `~` and 32 hex digits of its SHA-256 (`~` is always encoded otherwise, so the two forms never
/// meet).
/// With a [`MailboxAddress`] (at most 254 bytes) the key stays well within S3's 1,024 bytes.
pub fn blob_key(mailbox: &MailboxAddress, id: &MessageId, received_at: OffsetDateTime) -> String {
    let mut safe_id = String::with_capacity(id.as_str().len());
    for c in id.as_str().chars() {
        match c {
            '/' => safe_id.push('_'),
            '+' => safe_id.push('-'),
            c if c.is_ascii_alphanumeric() || matches!(c, '=' | '-' | '_') => safe_id.push(c),
            c => {
                for byte in c.encode_utf8(&mut [0; 4]).bytes() {
                    let _ = write!(safe_id, "%{byte:02X}");
                }
            }
        }
    }
    if safe_id.len() > MAX_KEY_ID_BYTES {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(id.as_str().as_bytes());
        // ASCII only by now: any byte offset is a character boundary.
        safe_id.truncate(KEPT_ID_BYTES);
        safe_id.push('~');
        safe_id.push_str(&hex::encode(&digest[..16]));
    }
    let date = received_at.to_offset(time::UtcOffset::UTC).date();
    format!(
        "{mailbox}/{:04}/{:02}/{:02}/{safe_id}.eml",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// A complete record for adapter unit tests (every optional field but the subject set).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn sample_record(received_at: OffsetDateTime) -> MessageRecord {
    MessageRecord {
        mailbox: MailboxAddress::parse("a@contoso.com").unwrap(),
        message_id: MessageId::new("AAMk/1+="),
        folder: "Inbox".into(),
        internet_message_id: Some("<1@contoso.com>".into()),
        subject: None,
        from: Some("b@contoso.com".into()),
        received_at,
        size: 1234,
        sha256: "ab".repeat(32),
        blob_key: "a@contoso.com/2025/03/05/AAMk_1-=.eml".into(),
        imported_at: time::macros::datetime!(2025-03-05 01:31 UTC),
        state: RecordState::Stored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_lowercased_and_validated() {
        let a = MailboxAddress::parse(" Reports@Contoso.COM ").unwrap();
        assert_eq!(a.as_str(), "reports@contoso.com");
        for bad in [
            "",
            "reports",
            "@contoso.com",
            "a@b",
            "a b@c.com",
            "a@b@c.com",
            "a/b@c.com",
            "a\\b@c.com",
            "a\u{0}b@c.com",
            "a\u{1b}[2Jb@c.com",
            "a\u{202E}b@c.com",
        ] {
            let err = MailboxAddress::parse(bad).unwrap_err();
            assert!(err.to_string().contains("reports@contoso.com"), "{err}");
        }
    }

    #[test]
    fn action_parsing_names_what_is_allowed() {
        assert_eq!(
            AfterImport::from_parts("move", Some("Inbox/Processed")).unwrap(),
            AfterImport::Move {
                processed_folder: "Inbox/Processed".into()
            }
        );
        assert_eq!(
            AfterImport::from_parts("MARK_READ", None).unwrap(),
            AfterImport::MarkRead
        );
        let err = AfterImport::from_parts("archive", None).unwrap_err();
        assert!(err.to_string().contains("move, mark_read, delete, none"));
        let err = AfterImport::from_parts("move", Some(" ")).unwrap_err();
        assert_eq!(err.field, "processed_folder");
    }

    #[test]
    fn blob_keys_are_deterministic_single_segment_names() {
        let mailbox = MailboxAddress::parse("a@contoso.com").unwrap();
        let id = MessageId::new("AAMk/a+b=");
        let at = time::macros::datetime!(2025-03-04 23:30 -02:00);
        let key = blob_key(&mailbox, &id, at);
        assert_eq!(key, "a@contoso.com/2025/03/05/AAMk_a-b=.eml");
        assert_eq!(key, blob_key(&mailbox, &id, at));
    }

    #[test]
    fn shown_text_escapes_controls_and_bidi_marks_and_keeps_the_rest() {
        assert_eq!(shown("Backup OK 😀 Grüße"), "Backup OK 😀 Grüße");
        assert_eq!(
            shown("a\u{1b}[2J\u{202E}b\r\n"),
            "a\\u{1B}[2J\\u{202E}b\\u{D}\\u{A}"
        );
    }

    #[test]
    fn mailbox_config_round_trips_through_json() {
        let config = MailboxConfig {
            address: MailboxAddress::parse("a@contoso.com").unwrap(),
            folder: "Inbox/Reports".into(),
            action: AfterImport::Move {
                processed_folder: "Inbox/Done".into(),
            },
            credential: "contoso".into(),
            enabled: true,
            discovered_by: None,
        };
        let json = serde_json::to_string(&config).unwrap();
        assert!(json.contains(r#""action":"move""#), "{json}");
        assert_eq!(
            serde_json::from_str::<MailboxConfig>(&json).unwrap(),
            config
        );
    }
}
