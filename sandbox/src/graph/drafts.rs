//! Drafts (docs/graph.md section 12): `POST …/messages` and `POST …/mailFolders/{id}/messages`
//! (<https://learn.microsoft.com/graph/api/user-post-messages>), the message properties a client
//! may give there, in PATCH (<https://learn.microsoft.com/graph/api/message-update>) and in
//! createReply's `message`, and createReply / createReplyAll
//! (<https://learn.microsoft.com/graph/api/message-createreply>,
//! <https://learn.microsoft.com/graph/api/message-createreplyall>).

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use super::messages::{MESSAGE_TYPE, entity_reply, json_object, resolve};
use super::{Ctx, GraphError, Reply, attachments, folders};
use crate::state::{ExtendedProperty, MailboxState, Message};
use crate::world::{Address, AttachmentSpec, NewMessage};

/// `body` of a message: `contentType` text or html, and `content`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Body {
    pub(crate) html: bool,
    pub(crate) content: String,
}

impl Body {
    /// The plain-text form (the `text/plain` part of the MIME, `bodyPreview`).
    pub(crate) fn text(&self) -> String {
        if self.html {
            text_of_html(&self.content)
        } else {
            self.content.clone()
        }
    }
}

/// The message properties a request gave (absent ones are `None`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Fields {
    pub(crate) subject: Option<String>,
    pub(crate) body: Option<Body>,
    pub(crate) to: Option<Vec<Address>>,
    pub(crate) cc: Option<Vec<Address>>,
    pub(crate) bcc: Option<Vec<Address>>,
    pub(crate) reply_to: Option<Vec<Address>>,
    pub(crate) importance: Option<&'static str>,
    pub(crate) is_read: Option<bool>,
    pub(crate) internet_message_id: Option<String>,
    pub(crate) extended: Vec<ExtendedProperty>,
    /// Only when creating a draft: "you can include an attachment to the message".
    pub(crate) attachments: Vec<AttachmentSpec>,
}

impl Fields {
    /// Whether the request changes a property the update reference marks "Updatable only if
    /// isDraft = true": body, internetMessageId, replyTo, subject.
    pub(crate) fn touches_draft_only(&self) -> bool {
        self.subject.is_some()
            || self.body.is_some()
            || self.reply_to.is_some()
            || self.internet_message_id.is_some()
    }

    /// Whether applying the properties would change the message (the ignored ones do not).
    pub(crate) fn changes_anything(&self) -> bool {
        self.touches_draft_only()
            || self.is_read.is_some()
            || self.importance.is_some()
            || self.to.is_some()
            || self.cc.is_some()
            || self.bcc.is_some()
            || !self.extended.is_empty()
            || !self.attachments.is_empty()
    }

    /// Applies the properties to a stored message (PATCH of a draft, or of the properties any
    /// message may change).
    pub(crate) fn apply(self, m: &mut Message) {
        if let Some(s) = self.subject {
            m.subject = s;
        }
        if let Some(b) = self.body {
            m.body_text = b.text();
            m.body_html = b.html.then_some(b.content);
        }
        if let Some(to) = self.to {
            m.to = to;
        }
        if let Some(cc) = self.cc {
            m.cc = cc;
        }
        if let Some(bcc) = self.bcc {
            m.bcc = bcc;
        }
        if let Some(r) = self.reply_to {
            m.reply_to = r;
        }
        if let Some(i) = self.importance {
            m.importance = i;
        }
        if let Some(r) = self.is_read {
            m.is_read = r;
        }
        if let Some(id) = self.internet_message_id {
            m.internet_message_id = id;
        }
        for p in self.extended {
            m.set_extended_property(p);
        }
        m.attachments.extend(self.attachments);
        m.has_attachments = !m.attachments.is_empty();
    }

    /// Applies the properties to a message about to be created.
    fn apply_new(self, m: &mut NewMessage) {
        if let Some(s) = self.subject {
            m.subject = s;
        }
        if let Some(b) = self.body {
            m.body_text = Some(b.text());
            m.extra.body_html = b.html.then_some(b.content);
        }
        if let Some(to) = self.to {
            m.to = to;
        }
        if let Some(cc) = self.cc {
            m.cc = cc;
        }
        if let Some(bcc) = self.bcc {
            m.extra.bcc = bcc;
        }
        if let Some(r) = self.reply_to {
            m.extra.reply_to = r;
        }
        if let Some(i) = self.importance {
            m.importance = i;
        }
        if let Some(r) = self.is_read {
            m.is_read = r;
        }
        if self.internet_message_id.is_some() {
            m.internet_message_id = self.internet_message_id;
        }
        for p in self.extended {
            match m
                .extra
                .extended
                .iter_mut()
                .find(|e| crate::state::extended_ids_match(&e.id, &p.id))
            {
                Some(e) => e.value = p.value,
                None => m.extra.extended.push(p),
            }
        }
        m.attachments.extend(self.attachments);
    }
}

/// Where the properties come from: they differ a little.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Creating a draft (or createReply's `message`): attachments may come along.
    Create,
    /// PATCH.
    Update,
}

/// Message properties accepted and not modelled by the sandbox (they change nothing).
const IGNORED: &[&str] = &[
    "categories",
    "flag",
    "inferenceClassification",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "from",
    "sender",
];

/// Message properties Graph accepts that the sandbox does not implement (501).
const NOT_MODELLED: &[&str] = &[
    "multiValueExtendedProperties",
    "internetMessageHeaders",
    "extensions",
    "mentions",
];

fn unknown_property(k: &str) -> GraphError {
    GraphError::body_read(format!(
        "The property '{k}' does not exist on type '{MESSAGE_TYPE}'. Make sure to only use property names that are defined by the type or mark the type as open type."
    ))
}

/// Reads the message properties of a request body.
pub(crate) fn parse_fields(
    map: &Map<String, Value>,
    purpose: Purpose,
) -> Result<Fields, GraphError> {
    let mut f = Fields::default();
    for (k, v) in map {
        if k.starts_with('@') {
            continue;
        }
        let is = |name: &str| k.eq_ignore_ascii_case(name);
        if is("subject") {
            f.subject = Some(string(v, "subject")?);
        } else if is("body") {
            f.body = Some(body(v)?);
        } else if is("toRecipients") {
            f.to = Some(recipients(v, k)?);
        } else if is("ccRecipients") {
            f.cc = Some(recipients(v, k)?);
        } else if is("bccRecipients") {
            f.bcc = Some(recipients(v, k)?);
        } else if is("replyTo") {
            f.reply_to = Some(recipients(v, k)?);
        } else if is("importance") {
            f.importance = Some(importance(v)?);
        } else if is("isRead") {
            f.is_read = Some(v.as_bool().ok_or_else(|| {
                GraphError::body_read(
                    "Cannot convert the literal to the expected type 'Edm.Boolean'.",
                )
            })?);
        } else if is("internetMessageId") {
            f.internet_message_id = Some(string(v, "internetMessageId")?);
        } else if is("singleValueExtendedProperties") {
            f.extended = extended_properties(v)?;
        } else if is("attachments") && purpose == Purpose::Create {
            f.attachments = v
                .as_array()
                .ok_or_else(|| GraphError::body_read("'attachments' must be an array."))?
                .iter()
                .map(attachments::file_attachment)
                .collect::<Result<_, _>>()?;
        } else if IGNORED.iter().any(|n| is(n)) {
        } else if NOT_MODELLED.iter().any(|n| is(n)) {
            return Err(GraphError::not_implemented(k));
        } else {
            return Err(unknown_property(k));
        }
    }
    Ok(f)
}

fn string(v: &Value, name: &str) -> Result<String, GraphError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        _ => Err(GraphError::body_read(format!(
            "Cannot convert the value of '{name}' to the expected type 'Edm.String'."
        ))),
    }
}

fn body(v: &Value) -> Result<Body, GraphError> {
    let Value::Object(b) = v else {
        return Err(GraphError::body_read(
            "'body' must be an itemBody object: {\"contentType\": \"text\"|\"html\", \"content\": \"...\"}.",
        ));
    };
    let content_type = b
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("contentType"))
        .and_then(|(_, v)| v.as_str())
        .unwrap_or("text");
    let html = match content_type.to_ascii_lowercase().as_str() {
        "html" => true,
        // The docs' own example sends an empty contentType (message: update).
        "text" | "" => false,
        other => {
            return Err(GraphError::body_read(format!(
                "The value '{other}' is not a valid bodyType: use 'text' or 'html'."
            )));
        }
    };
    let content = b
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content"))
        .map(|(_, v)| string(v, "content"))
        .transpose()?
        .unwrap_or_default();
    Ok(Body { html, content })
}

/// A `recipient` collection: `[{"emailAddress": {"address": "…", "name": "…"}}]`.
fn recipients(v: &Value, name: &str) -> Result<Vec<Address>, GraphError> {
    let invalid = || {
        GraphError::body_read(format!(
            "'{name}' must be an array of recipients: [{{\"emailAddress\": {{\"address\": \"...\"}}}}]."
        ))
    };
    if v.is_null() {
        return Ok(Vec::new());
    }
    v.as_array()
        .ok_or_else(invalid)?
        .iter()
        .map(|r| {
            let e = r.get("emailAddress").ok_or_else(invalid)?;
            let address = e
                .get("address")
                .and_then(Value::as_str)
                .ok_or_else(invalid)?;
            let display = e.get("name").and_then(Value::as_str).unwrap_or(address);
            Ok(Address::new(display, address))
        })
        .collect()
}

fn importance(v: &Value) -> Result<&'static str, GraphError> {
    match v.as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("low") => Ok("low"),
        Some("normal") => Ok("normal"),
        Some("high") => Ok("high"),
        _ => Err(GraphError::body_read(
            "The value of 'importance' must be low, normal or high.",
        )),
    }
}

/// `singleValueExtendedProperties`: `[{"id": "…", "value": "…"}]`. A value that is not a
/// string is refused with Exchange's `ErrorInvalidExtendedPropertyValue` and an id of none of
/// the documented forms with `ErrorInvalidExtendedProperty` (both are Exchange response codes,
/// <https://learn.microsoft.com/exchange/client-developer/web-service-reference/responsecode>;
/// Graph documents no error here, and no status: the sandbox answers 400).
fn extended_properties(v: &Value) -> Result<Vec<ExtendedProperty>, GraphError> {
    let list = v.as_array().ok_or_else(|| {
        GraphError::body_read("'singleValueExtendedProperties' must be an array of {id, value}.")
    })?;
    list.iter()
        .map(|p| {
            let id = p
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| valid_extended_id(id))
                .ok_or_else(|| {
                    GraphError::new(
                        StatusCode::BAD_REQUEST,
                        "ErrorInvalidExtendedProperty",
                        "The extended property id is not of a supported format: '{type} {guid} Name {name}', '{type} {guid} Id {id}' or '{type} {proptag}'.",
                    )
                })?;
            let value = p.get("value").and_then(Value::as_str).ok_or_else(|| {
                GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "ErrorInvalidExtendedPropertyValue",
                    "The extended property value must be a string.",
                )
            })?;
            Ok(ExtendedProperty {
                id: id.to_owned(),
                value: value.to_owned(),
            })
        })
        .collect()
}

/// The three id formats of the extended properties overview
/// (<https://learn.microsoft.com/graph/api/resources/extended-properties-overview>).
fn valid_extended_id(id: &str) -> bool {
    let words: Vec<&str> = id.split_whitespace().collect();
    let guid = |g: &str| g.starts_with('{') && g.ends_with('}') && g.len() == 38;
    match words.as_slice() {
        [_kind, tag] => tag.starts_with("0x") || tag.starts_with("0X"),
        [_kind, g, key, _rest @ ..] => {
            guid(g) && (key.eq_ignore_ascii_case("Name") || key.eq_ignore_ascii_case("Id"))
        }
        _ => false,
    }
}

/// A body in MIME format (`Content-Type: text/plain`, base64): the documented 400 for one that
/// is not base64, else 501 (the sandbox creates drafts from JSON only).
fn mime_body(body: &[u8]) -> GraphError {
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if STANDARD.decode(compact).is_err() {
        return GraphError::new(
            StatusCode::BAD_REQUEST,
            "ErrorMimeContentInvalidBase64String",
            "Invalid base64 string for MIME content.",
        );
    }
    GraphError::not_implemented("drafts in MIME format")
}

fn is_mime(ctx: &Ctx) -> bool {
    ctx.content_type.as_deref().is_some_and(|t| {
        t.trim_start()
            .to_ascii_lowercase()
            .starts_with("text/plain")
    })
}

/// A new draft of the mailbox owner: "isRead": true, "isDraft": true, no recipients unless
/// given, an empty body unless given.
fn new_draft(mb: &MailboxState, subject: &str) -> NewMessage {
    let mut m = NewMessage::new(subject)
        .from(&mb.display_name, &mb.address)
        .is_read(true);
    m.extra.is_draft = true;
    m
}

/// `POST …/messages` → 201 with the draft, "By default, this operation saves the draft in the
/// Drafts folder"; `POST …/mailFolders/{id}/messages` saves it in that folder. Like any new
/// message of a folder it shows in listings, delta and change notifications.
pub(crate) fn create(
    mb: &mut MailboxState,
    ctx: &Ctx,
    folder: Option<&str>,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<Reply, GraphError> {
    if is_mime(ctx) {
        return Err(mime_body(body));
    }
    let fields = parse_fields(&json_object(body)?, Purpose::Create)?;
    let folder = match folder {
        Some(f) => folders::resolve(mb, f)?,
        None => drafts_folder(mb)?,
    };
    let mut m = new_draft(mb, "");
    fields.apply_new(&mut m);
    let key = mb.insert(folder, &m, now);
    entity_reply(mb, ctx, key, StatusCode::CREATED, None)
}

pub(crate) fn drafts_folder(mb: &MailboxState) -> Result<usize, GraphError> {
    mb.folder_by_id_or_name("drafts")
        .ok_or_else(GraphError::item_not_found)
}

/// createReply's and createReplyAll's JSON body: `comment` and `message`, both optional.
fn reply_body(ctx: &Ctx, body: &[u8]) -> Result<(Option<String>, Fields), GraphError> {
    if is_mime(ctx) {
        return Err(mime_body(body));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((None, Fields::default()));
    }
    let map = json_object(body)?;
    let mut comment = None;
    let mut fields = Fields::default();
    for (k, v) in &map {
        if k.eq_ignore_ascii_case("comment") {
            comment = Some(string(v, "comment")?);
        } else if k.eq_ignore_ascii_case("message") {
            let Value::Object(message) = v else {
                return Err(GraphError::body_read("'message' must be a message object."));
            };
            fields = parse_fields(message, Purpose::Create)?;
        } else if !k.starts_with('@') {
            return Err(GraphError::body_read(format!(
                "The parameter '{k}' in the request payload is not a valid parameter for the operation."
            )));
        }
    }
    // "Specify either a comment or the body property of the message parameter. Specifying both
    // will return an HTTP 400 Bad Request error."
    if comment.is_some() && fields.body.is_some() {
        return Err(GraphError::bad_request(
            "Specify either a comment or the body property of the message parameter, not both.",
        ));
    }
    Ok((comment, fields))
}

/// The subject of a reply: "RE: " before the original's. The reference does not say; Outlook
/// writes "RE: " and does not repeat it on a reply to a reply.
fn reply_subject(subject: &str) -> String {
    if subject
        .get(..3)
        .is_some_and(|p| p.eq_ignore_ascii_case("RE:"))
    {
        subject.to_owned()
    } else {
        format!("RE: {subject}")
    }
}

/// The recipients of a reply. createReply answers "the sender of a message", i.e. `from`; the
/// reference adds that "if **replyTo** is specified in the original message … you should send
/// the reply to the recipients in **replyTo**", which reads as the client's job, so the sandbox
/// (the strict reading) leaves it to the client. createReplyAll adds the original's other
/// recipients, without the mailbox owner.
fn reply_recipients(mb: &MailboxState, orig: &Message, all: bool) -> (Vec<Address>, Vec<Address>) {
    let mut to = vec![orig.from.clone()];
    let mut cc = Vec::new();
    if all {
        let not_me = |a: &&Address| !a.address.eq_ignore_ascii_case(&mb.address);
        for a in orig.to.iter().filter(not_me) {
            if !to
                .iter()
                .any(|t| t.address.eq_ignore_ascii_case(&a.address))
            {
                to.push(a.clone());
            }
        }
        cc = orig.cc.iter().filter(not_me).cloned().collect();
    }
    (to, cc)
}

/// The reply's body: the comment, then the original under a header as Outlook quotes it (the
/// reference does not describe the quoted part).
fn quoted(comment: &str, orig: &Message) -> String {
    let to: Vec<String> = orig
        .to
        .iter()
        .map(|a| format!("{} <{}>", a.name, a.address))
        .collect();
    format!(
        "{comment}\n\n________________________________\nFrom: {} <{}>\nSent: {}\nTo: {}\nSubject: {}\n\n{}",
        orig.from.name,
        orig.from.address,
        orig.sent.format(&Rfc2822).unwrap_or_default(),
        to.join("; "),
        orig.subject,
        orig.body_text
    )
}

/// `POST …/messages/{id}/createReply[All]` → 201 with a new draft in Drafts, in the original's
/// conversation, its `References` (and `In-Reply-To`) naming the original's
/// `internetMessageId`. A draft cannot be replied to: Exchange's `ErrorInvalidReferenceItem`
/// ("The message is a draft and Reply or ReplyAll is selected",
/// <https://learn.microsoft.com/exchange/client-developer/web-service-reference/responsecode>);
/// Graph documents no status for it, the sandbox answers 400.
pub(crate) fn create_reply(
    mb: &mut MailboxState,
    ctx: &Ctx,
    id: &str,
    all: bool,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<Reply, GraphError> {
    let key = resolve(mb, id)?;
    let (comment, fields) = reply_body(ctx, body)?;
    let orig = mb.message(key).ok_or_else(GraphError::item_not_found)?;
    if orig.is_draft {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidReferenceItem",
            "The message is a draft: a draft cannot be replied to.",
        ));
    }
    let mut m = new_draft(mb, &reply_subject(&orig.subject));
    let (to, cc) = reply_recipients(mb, orig, all);
    m.to = to;
    m.cc = cc;
    m.body_text = Some(quoted(comment.as_deref().unwrap_or_default(), orig));
    m.extra.conversation_id = Some(orig.conversation_id.clone());
    m.extra.references = orig.references.clone();
    m.extra.references.push(orig.internet_message_id.clone());
    fields.apply_new(&mut m);
    let folder = drafts_folder(mb)?;
    let key = mb.insert(folder, &m, now);
    entity_reply(mb, ctx, key, StatusCode::CREATED, None)
}

/// A rough text form of an HTML body: tags dropped, common entities decoded, block ends as line
/// breaks.
pub(crate) fn text_of_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    let mut tag = String::new();
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                tag.clear();
            }
            '>' if in_tag => {
                in_tag = false;
                let name = tag
                    .trim_start_matches('/')
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                if matches!(name.as_str(), "br" | "p" | "div" | "li" | "tr") {
                    out.push('\n');
                }
            }
            _ if in_tag => tag.push(c),
            _ => out.push(c),
        }
    }
    out.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_subjects_and_html_text() {
        assert_eq!(reply_subject("Hello"), "RE: Hello");
        assert_eq!(reply_subject("re: Hello"), "re: Hello");
        assert_eq!(
            text_of_html("<html><body><p>They were <b>awesome</b> &amp; fast</p></body></html>"),
            "They were awesome & fast"
        );
    }

    #[test]
    fn extended_ids_of_the_three_documented_forms() {
        assert!(valid_extended_id(
            "String {00020329-0000-0000-C000-000000000046} Name MailroomIdempotencyKey"
        ));
        assert!(valid_extended_id(
            "Integer {8ECCC264-6880-4EBE-992F-8888D2EEAA1D} Id 0x8012"
        ));
        assert!(valid_extended_id("String 0x4001001E"));
        assert!(!valid_extended_id("MailroomIdempotencyKey"));
        assert!(!valid_extended_id("String {nope} Name X"));
    }

    #[test]
    fn fields_refuse_unknown_properties() {
        let map = serde_json::json!({"subjet": "x"});
        let e = parse_fields(map.as_object().unwrap(), Purpose::Create).unwrap_err();
        assert_eq!(e.code, "RequestBodyRead");
        let map = serde_json::json!({"internetMessageHeaders": []});
        let e = parse_fields(map.as_object().unwrap(), Purpose::Create).unwrap_err();
        assert_eq!(e.status, 501);
        let map = serde_json::json!({"attachments": []});
        assert!(parse_fields(map.as_object().unwrap(), Purpose::Update).is_err());
    }
}
