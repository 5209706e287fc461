//! `POST …/messages/{id}/send` (docs/graph.md section 12,
//! <https://learn.microsoft.com/graph/api/message-send>): "Send an existing draft message … This
//! method saves the message in the Sent Items folder", answering `202 Accepted` with no body.
//!
//! The sandbox sends at once: the draft itself moves to Sent Items (its immutable id stays, as
//! the immutable-id guide promises for exactly this case; its REST id changes, as on any move),
//! no longer a draft, with its extended properties. Every recipient (To, Cc and Bcc) whose
//! mailbox the sandbox hosts gets a copy in its Inbox, as any arriving message (delta, change
//! notifications); others are only recorded. A recipient set to bounce
//! ([`crate::Sandbox::set_bouncing`]) still gets a 202, as on Graph, where delivery happens after
//! the answer: the sender receives a non-delivery report in its Inbox.

use std::sync::Arc;

use axum::http::StatusCode;
use time::OffsetDateTime;

use super::messages::resolve;
use super::{GraphError, Reply};
use crate::state::{AttachmentInfo, ExtendedProperty, Message, MsgKey, SentMail, State};
use crate::world::{Address, AttachmentSpec, MailboxKind, NewMessage};

/// What leaves with a sent draft.
struct Outgoing {
    draft_id: String,
    from: Address,
    to: Vec<Address>,
    cc: Vec<Address>,
    bcc: Vec<Address>,
    subject: String,
    body_text: String,
    body_html: Option<String>,
    importance: &'static str,
    internet_message_id: String,
    conversation_id: String,
    references: Vec<String>,
    attachments: Vec<AttachmentSpec>,
    extended: Vec<ExtendedProperty>,
}

impl Outgoing {
    fn of(m: &Message) -> Self {
        Self {
            draft_id: m.immutable_id.clone(),
            from: m.from.clone(),
            to: m.to.clone(),
            cc: m.cc.clone(),
            bcc: m.bcc.clone(),
            subject: m.subject.clone(),
            body_text: m.body_text.clone(),
            body_html: m.body_html.clone(),
            importance: m.importance,
            internet_message_id: m.internet_message_id.clone(),
            conversation_id: m.conversation_id.clone(),
            references: m.references.clone(),
            attachments: m.attachments.clone(),
            extended: m.extended.clone(),
        }
    }

    /// Every recipient once, lowercased, To then Cc then Bcc.
    fn recipients(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for a in self.to.iter().chain(&self.cc).chain(&self.bcc) {
            let address = a.address.to_ascii_lowercase();
            if !out.contains(&address) {
                out.push(address);
            }
        }
        out
    }

    /// The copy a recipient's mailbox receives: the same subject, body, attachments,
    /// `internetMessageId` and conversation, from the sender; Bcc is not shown to anyone. The
    /// docs do not say whether extended properties travel; the sandbox leaves them behind, so a
    /// client cannot come to rely on them there.
    fn copy(&self, now: OffsetDateTime) -> NewMessage {
        let mut m = NewMessage::new(&self.subject)
            .from(&self.from.name, &self.from.address)
            .received(now)
            .body_text(&self.body_text)
            .internet_message_id(&self.internet_message_id);
        m.to = self.to.clone();
        m.cc = self.cc.clone();
        m.importance = self.importance;
        m.attachments = self.attachments.clone();
        m.extra.body_html = self.body_html.clone();
        m.extra.conversation_id = Some(self.conversation_id.clone());
        m.extra.references = self.references.clone();
        m.extra.sent = Some(now);
        m
    }
}

/// Why a draft cannot be sent, checked before anything changes.
fn check(m: &Message, max_size: u64) -> Result<(), GraphError> {
    // The reference sends "an existing draft message" and documents nothing for other messages;
    // the sandbox refuses them with Exchange's general `ErrorInvalidOperation` ("the requested
    // operation is invalid"), status 400.
    if !m.is_draft {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidOperation",
            "Only a draft can be sent: this message is not a draft.",
        ));
    }
    // Exchange: "returned when an attempt is made to send an item that has no recipients"
    // (ErrorInvalidRecipients, as sendMail answers in the sandbox).
    if m.to.is_empty() && m.cc.is_empty() && m.bcc.is_empty() {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRecipients",
            "At least one recipient isn't valid.",
        ));
    }
    // Exchange: "the message that you are trying to send exceeds the allowed limits"
    // (ErrorMessageSizeExceeded; Graph documents no status, the sandbox answers 400). The size
    // is that of the MIME, attachments base64-encoded.
    if m.mime.len() > max_size {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "ErrorMessageSizeExceeded",
            format!(
                "The message exceeds the maximum supported size: {} bytes, the limit is {max_size}.",
                m.mime.len()
            ),
        ));
    }
    Ok(())
}

/// `POST …/messages/{id}/send` → 202, no body. While the sandbox holds sent mail
/// ([`crate::Sandbox::hold_outbox`]) the message waits in the Outbox, no longer a draft, until
/// [`crate::Sandbox::release_outbox`]: "The copy of the message is not created until the message
/// successfully sends, which may take time"
/// (<https://learn.microsoft.com/graph/outlook-immutable-id>).
pub(crate) fn send(
    st: &mut State,
    sender: usize,
    id: &str,
    now: OffsetDateTime,
    client_id: &str,
) -> Result<Reply, GraphError> {
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let max_size = st.max_message_size;
    let hold = st.hold_outbox;
    let mb = st
        .mailbox_mut(sender)
        .ok_or_else(|| GraphError::invalid_user("?"))?;
    let key = resolve(mb, id)?;
    check(
        mb.message(key).ok_or_else(GraphError::item_not_found)?,
        max_size,
    )?;
    if hold {
        let outbox = mb
            .folder_by_id_or_name("outbox")
            .ok_or_else(GraphError::item_not_found)?;
        mb.move_with(key, outbox, now, |m| {
            m.is_draft = false;
            m.is_read = true;
        });
        st.outbox.push((sender, key, client_id.to_owned()));
    } else {
        transmit(st, sender, key, now, client_id);
    }
    Ok(Reply::empty(StatusCode::ACCEPTED))
}

/// Sends a message that was accepted: to Sent Items, to the recipients, into the log. Nothing
/// happens if it is gone (deleted from the Outbox meanwhile).
pub(crate) fn transmit(
    st: &mut State,
    sender: usize,
    key: MsgKey,
    now: OffsetDateTime,
    client_id: &str,
) {
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let Some(mb) = st.mailbox_mut(sender) else {
        return;
    };
    let Some(out) = mb.message(key).map(Outgoing::of) else {
        return;
    };
    let Some(sent_items) = mb.folder_by_id_or_name("sentitems") else {
        return;
    };
    mb.move_with(key, sent_items, now, |m| {
        m.is_draft = false;
        m.is_read = true;
        m.sent = now;
        m.received = now;
        m.mime = Arc::new(m.render_mime());
    });
    let sender_address = mb.address.clone();
    let (delivered, bounced) = deliver(st, &out, now);
    if !bounced.is_empty() {
        non_delivery_report(st, sender, &out, &bounced, now);
    }
    st.sent_mail.push(record(
        &out,
        &sender_address,
        client_id,
        now,
        delivered,
        bounced,
    ));
}

/// Delivers a copy to each recipient the sandbox hosts; returns the recipients delivered to and
/// those that bounced: set to bounce, or a mailbox that cannot receive (its user deleted, or
/// without an Exchange Online licence).
fn deliver(st: &mut State, out: &Outgoing, now: OffsetDateTime) -> (Vec<String>, Vec<String>) {
    let (mut delivered, mut bounced) = (Vec::new(), Vec::new());
    for address in out.recipients() {
        if st.bouncing.contains(&address) {
            bounced.push(address);
            continue;
        }
        let Some(idx) = st.find_mailbox(&address) else {
            continue;
        };
        let Some(mb) = st.mailbox_mut(idx) else {
            continue;
        };
        if mb.deleted || mb.kind == MailboxKind::Unlicensed {
            bounced.push(address);
            continue;
        }
        if let Some(inbox) = mb.folder_by_id_or_name("inbox") {
            mb.insert(inbox, &out.copy(now), now);
            delivered.push(address);
        }
    }
    (delivered, bounced)
}

/// The non-delivery report in the sender's Inbox. Exchange Online documents NDRs
/// (<https://learn.microsoft.com/exchange/troubleshoot/email-delivery/ndr/non-delivery-reports-in-exchange-online>)
/// but not their headers; as observed, they come from the postmaster of the sender's domain
/// ("Microsoft Outlook") with the subject "Undeliverable: " and the original subject, and quote
/// the original's headers.
fn non_delivery_report(
    st: &mut State,
    sender: usize,
    out: &Outgoing,
    bounced: &[String],
    now: OffsetDateTime,
) {
    let Some(mb) = st.mailbox_mut(sender) else {
        return;
    };
    let domain = mb
        .address
        .split('@')
        .nth(1)
        .unwrap_or("sandbox.invalid")
        .to_owned();
    let list = bounced.join(", ");
    let text = format!(
        "Your message to {list} couldn't be delivered.\n\n\
         The recipient wasn't found or doesn't accept mail.\n\n\
         Diagnostic information for administrators:\n\
         Remote server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup'\n\n\
         Original message headers:\n\
         Message-ID: {}\nSubject: {}\n",
        out.internet_message_id, out.subject
    );
    let mut ndr = NewMessage::new(&format!("Undeliverable: {}", out.subject))
        .from("Microsoft Outlook", &format!("postmaster@{domain}"))
        .received(now)
        .body_text(&text);
    ndr.to = vec![out.from.clone()];
    if let Some(inbox) = mb.folder_by_id_or_name("inbox") {
        mb.insert(inbox, &ndr, now);
    }
}

fn addresses(list: &[Address]) -> Vec<String> {
    list.iter()
        .map(|a| a.address.to_ascii_lowercase())
        .collect()
}

fn record(
    out: &Outgoing,
    from: &str,
    client_id: &str,
    now: OffsetDateTime,
    delivered_to: Vec<String>,
    bounced: Vec<String>,
) -> SentMail {
    SentMail {
        client_id: client_id.to_owned(),
        from: from.to_owned(),
        to: addresses(&out.to),
        cc: addresses(&out.cc),
        bcc: addresses(&out.bcc),
        subject: out.subject.clone(),
        content_type: if out.body_html.is_some() {
            "html"
        } else {
            "text"
        }
        .to_owned(),
        body: out
            .body_html
            .clone()
            .unwrap_or_else(|| out.body_text.clone()),
        saved_to_sent_items: true,
        sent_at: now,
        draft_id: Some(out.draft_id.clone()),
        internet_message_id: out.internet_message_id.clone(),
        conversation_id: out.conversation_id.clone(),
        extended_properties: out.extended.clone(),
        attachments: out
            .attachments
            .iter()
            .map(|a| AttachmentInfo {
                name: a.filename.clone(),
                content_type: a.content_type.clone(),
                size: a.size,
                sha256: a.sha256.clone(),
            })
            .collect(),
        delivered_to,
        bounced,
    }
}
