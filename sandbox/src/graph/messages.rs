//! Messages: list, get, `$value`, move, PATCH, DELETE and sendMail (docs/graph.md sections 2, 4
//! and 12).

use std::sync::Arc;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::drafts::{self, Purpose};
use super::odata::{self, MessageFilter};
use super::{Ctx, GraphError, Reply, ReplyBody, extprops, folders, graph_time};
use crate::ids::{fnv1a, is_plausible_id};
use crate::mime::html_body;
use crate::state::{MailboxState, Message, MsgKey, SentMail};
use crate::world::{Address, NewMessage};

/// Properties of a message the sandbox serves (and accepts in `$select`).
pub(crate) const MESSAGE_PROPS: &[&str] = &[
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "internetMessageId",
    "subject",
    "bodyPreview",
    "importance",
    "parentFolderId",
    "conversationId",
    "conversationIndex",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "isRead",
    "isDraft",
    "webLink",
    "inferenceClassification",
    "body",
    "uniqueBody",
    "sender",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "flag",
];

pub(crate) const MESSAGE_TYPE: &str = "microsoft.graph.message";

fn recipient(a: &Address) -> Value {
    json!({"emailAddress": {"name": a.name, "address": a.address}})
}

fn change_key(m: &Message) -> String {
    m.change_key()
}

/// The full JSON of a message, ids per the request's `Prefer: IdType`.
pub(crate) fn message_json(mb: &MailboxState, m: &Message, ctx: &Ctx) -> Map<String, Value> {
    let id = ctx.message_id(m);
    let folder_id = mb
        .folder(m.folder)
        .map(|f| f.id.clone())
        .unwrap_or_default();
    let preview: String = m
        .body_text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(255)
        .collect();
    let body = if ctx.prefs.body_text {
        json!({"contentType": "text", "content": m.body_text})
    } else {
        let html = m
            .body_html
            .clone()
            .unwrap_or_else(|| html_body(&m.body_text));
        json!({"contentType": "html", "content": html})
    };
    let mut map = Map::new();
    map.insert(
        "@odata.etag".into(),
        json!(format!("W/\"{}\"", change_key(m))),
    );
    map.insert("id".into(), json!(id));
    map.insert("createdDateTime".into(), json!(graph_time(m.created)));
    map.insert(
        "lastModifiedDateTime".into(),
        json!(graph_time(m.last_modified)),
    );
    map.insert("changeKey".into(), json!(change_key(m)));
    map.insert("categories".into(), json!([]));
    map.insert("receivedDateTime".into(), json!(graph_time(m.received)));
    map.insert("sentDateTime".into(), json!(graph_time(m.sent)));
    map.insert("hasAttachments".into(), json!(m.has_attachments));
    map.insert("internetMessageId".into(), json!(m.internet_message_id));
    map.insert("subject".into(), json!(m.subject));
    map.insert("bodyPreview".into(), json!(preview));
    map.insert("importance".into(), json!(m.importance));
    map.insert("parentFolderId".into(), json!(folder_id));
    map.insert("conversationId".into(), json!(m.conversation_id));
    let index = fnv1a(&[m.conversation_id.as_bytes()]);
    map.insert(
        "conversationIndex".into(),
        json!(STANDARD.encode([&[1u8][..], &index.to_be_bytes()[..], &[0u8; 13][..]].concat())),
    );
    map.insert("isDeliveryReceiptRequested".into(), json!(false));
    map.insert("isReadReceiptRequested".into(), json!(false));
    map.insert("isRead".into(), json!(m.is_read));
    map.insert("isDraft".into(), json!(m.is_draft));
    map.insert(
        "webLink".into(),
        json!(format!(
            "https://outlook.office365.com/owa/?ItemID={}&exvsurl=1&viewmodel=ReadMessageItem",
            percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
        )),
    );
    map.insert("inferenceClassification".into(), json!("focused"));
    map.insert("uniqueBody".into(), body.clone());
    map.insert("body".into(), body);
    map.insert("sender".into(), recipient(&m.from));
    map.insert("from".into(), recipient(&m.from));
    map.insert(
        "toRecipients".into(),
        Value::Array(m.to.iter().map(recipient).collect()),
    );
    map.insert(
        "ccRecipients".into(),
        Value::Array(m.cc.iter().map(recipient).collect()),
    );
    map.insert(
        "bccRecipients".into(),
        Value::Array(m.bcc.iter().map(recipient).collect()),
    );
    map.insert(
        "replyTo".into(),
        Value::Array(m.reply_to.iter().map(recipient).collect()),
    );
    map.insert("flag".into(), json!({"flagStatus": "notFlagged"}));
    map
}

/// Keeps `$select`ed properties plus `id` and `@odata.etag`.
pub(crate) fn project(mut map: Map<String, Value>, select: Option<&[&str]>) -> Value {
    if let Some(select) = select {
        map.retain(|k, _| k == "id" || k == "@odata.etag" || select.contains(&k.as_str()));
    }
    Value::Object(map)
}

/// A message by immutable id or current REST id: malformed ids are 400, unknown or stale
/// ones 404.
pub(crate) fn resolve(mb: &MailboxState, id: &str) -> Result<MsgKey, GraphError> {
    if let Some(key) = mb.resolve_message(id) {
        return Ok(key);
    }
    if is_plausible_id(id) {
        Err(GraphError::item_not_found())
    } else {
        Err(GraphError::malformed_id())
    }
}

/// One message as an entity (GET, PATCH, move, a new draft).
pub(crate) fn entity_reply(
    mb: &MailboxState,
    ctx: &Ctx,
    key: MsgKey,
    status: StatusCode,
    select: Option<&[&str]>,
) -> Result<Reply, GraphError> {
    entity_reply_expanded(mb, ctx, key, status, select, None)
}

/// A message's JSON with `$select` applied and the `$expand`ed extended properties added (OData
/// keeps an expanded navigation property whatever `$select` says). The docs do not say what a
/// message without the property shows; the sandbox leaves `singleValueExtendedProperties` out.
fn rendered(
    m: &Message,
    mb: &MailboxState,
    ctx: &Ctx,
    select: Option<&[&str]>,
    expand: Option<&[String]>,
) -> Value {
    let mut v = project(message_json(mb, m, ctx), select);
    if let (Some(ids), Value::Object(map)) = (expand, &mut v) {
        let found = extprops::expanded(m, ids);
        if !found.is_empty() {
            map.insert("singleValueExtendedProperties".into(), Value::Array(found));
        }
    }
    v
}

fn entity_reply_expanded(
    mb: &MailboxState,
    ctx: &Ctx,
    key: MsgKey,
    status: StatusCode,
    select: Option<&[&str]>,
    expand: Option<&[String]>,
) -> Result<Reply, GraphError> {
    let m = mb.message(key).ok_or_else(GraphError::item_not_found)?;
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(format!(
            "{}#users('{}')/messages/$entity",
            ctx.metadata(),
            mb.address
        )),
    );
    if let Value::Object(rest) = rendered(m, mb, ctx, select, expand) {
        body.extend(rest);
    }
    Ok(Reply::json(status, Value::Object(body)))
}

/// `GET …/mailFolders/{id}/messages` and `GET …/messages`. `$skip` counts against the folder as
/// it is now, so moving messages out while paging skips some, as on Graph (docs/graph.md
/// section 2).
pub(crate) fn list(
    mb: &MailboxState,
    ctx: &Ctx,
    folder: Option<&str>,
) -> Result<Reply, GraphError> {
    let q = &ctx.query;
    odata::reject_unsupported(q, &["$search"])?;
    let expand = extprops::expand(q.get("$expand"))?;
    let folder = folder.map(|f| folders::resolve(mb, f)).transpose()?;
    let select = odata::select(q, MESSAGE_PROPS, MESSAGE_TYPE, true)?;
    let top = odata::top(q)?;
    let skip = odata::skip(q)?;
    let descending = odata::order_descending(q)?;
    let filter = MessageFilter::parse(q)?;
    filter.check_order(q)?;

    let mut keys: Vec<MsgKey> = match folder {
        Some(f) => mb.folder_keys(f),
        None => {
            let mut all: Vec<(OffsetDateTime, MsgKey)> = mb
                .messages
                .values()
                .filter(|m| mb.is_visible(m.folder))
                .map(|m| (m.received, m.key))
                .collect();
            all.sort_unstable_by(|a, b| b.cmp(a));
            all.into_iter().map(|(_, k)| k).collect()
        }
    };
    if !descending {
        keys.reverse();
    }
    let matching: Vec<&Message> = keys
        .iter()
        .filter_map(|k| mb.message(*k))
        .filter(|m| filter.matches(m))
        .collect();
    let total = matching.len();
    let value: Vec<Value> = matching
        .iter()
        .skip(skip)
        .take(top)
        .map(|m| rendered(m, mb, ctx, select.as_deref(), expand.as_deref()))
        .collect();

    let mut body = Map::new();
    let context = match folder.and_then(|f| mb.folder(f)) {
        Some(f) => format!(
            "{}#users('{}')/mailFolders('{}')/messages",
            ctx.metadata(),
            mb.address,
            f.id
        ),
        None => format!("{}#users('{}')/messages", ctx.metadata(), mb.address),
    };
    body.insert("@odata.context".into(), json!(context));
    if q.get("$count")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        body.insert("@odata.count".into(), json!(total));
    }
    body.insert("value".into(), Value::Array(value));
    if skip.saturating_add(top) < total {
        body.insert(
            "@odata.nextLink".into(),
            json!(ctx.link_with("$skip", &(skip + top).to_string())),
        );
    }
    Ok(Reply::json(StatusCode::OK, Value::Object(body)))
}

pub(crate) fn get(mb: &MailboxState, ctx: &Ctx, id: &str) -> Result<Reply, GraphError> {
    let key = resolve(mb, id)?;
    let select = odata::select(&ctx.query, MESSAGE_PROPS, MESSAGE_TYPE, true)?;
    let expand = extprops::expand(ctx.query.get("$expand"))?;
    entity_reply_expanded(
        mb,
        ctx,
        key,
        StatusCode::OK,
        select.as_deref(),
        expand.as_deref(),
    )
}

/// `$value`: the MIME, streamed by the response layer (docs/graph.md section 2).
pub(crate) fn value(mb: &MailboxState, id: &str) -> Result<Reply, GraphError> {
    let key = resolve(mb, id)?;
    let m = mb.message(key).ok_or_else(GraphError::item_not_found)?;
    Ok(Reply {
        status: StatusCode::OK,
        headers: Vec::new(),
        body: ReplyBody::Mime(Arc::clone(&m.mime)),
    })
}

pub(crate) fn json_object(body: &[u8]) -> Result<Map<String, Value>, GraphError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(GraphError::body_read(
            "Invalid JSON. A JSON object was expected.",
        )),
        Err(e) => Err(GraphError::body_read(format!(
            "Invalid JSON. An unexpected character was encountered: {e}"
        ))),
    }
}

/// `POST …/messages/{id}/move` → 201 with the moved message; its REST id changes
/// (docs/graph.md section 4).
pub(crate) fn move_message(
    mb: &mut MailboxState,
    ctx: &Ctx,
    id: &str,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<Reply, GraphError> {
    let key = resolve(mb, id)?;
    let map = json_object(body)?;
    let destination = match map.get("destinationId") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "ErrorInvalidParameter",
                "The 'destinationId' parameter is missing or is not a string.",
            ));
        }
    };
    let dest = folders::resolve(mb, &destination)?;
    mb.move_to(key, dest, now);
    entity_reply(mb, ctx, key, StatusCode::CREATED, None)
}

/// `PATCH …/messages/{id}` → 200 with the message. Any message may change `isRead`,
/// `importance`, its recipients and `singleValueExtendedProperties`; `subject`, `body`,
/// `replyTo` and `internetMessageId` are "Updatable only if isDraft = true"
/// (<https://learn.microsoft.com/graph/api/message-update>). Graph documents no error for
/// changing them on a sent or received message; the sandbox answers Exchange's
/// `ErrorInvalidPropertyUpdateSentMessage` ("a client tries to update certain properties of a
/// message that has already been sent",
/// <https://learn.microsoft.com/exchange/client-developer/web-service-reference/responsecode>),
/// status 400. A draft's MIME follows its changes.
pub(crate) fn patch(
    mb: &mut MailboxState,
    ctx: &Ctx,
    id: &str,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<Reply, GraphError> {
    let key = resolve(mb, id)?;
    let fields = drafts::parse_fields(&json_object(body)?, Purpose::Update)?;
    let m = mb.message(key).ok_or_else(GraphError::item_not_found)?;
    if fields.touches_draft_only() && !m.is_draft {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidPropertyUpdateSentMessage",
            "The subject, body, replyTo and internetMessageId of a message can be changed only while it is a draft.",
        ));
    }
    if fields.changes_anything() {
        mb.update(key, now, |m| {
            fields.apply(m);
            if m.is_draft {
                m.mime = Arc::new(m.render_mime());
            }
        });
    }
    entity_reply(mb, ctx, key, StatusCode::OK, None)
}

/// `DELETE …/messages/{id}` → 204; into Recoverable Items, not Deleted Items (docs/graph.md
/// section 4).
pub(crate) fn delete(
    mb: &mut MailboxState,
    id: &str,
    now: OffsetDateTime,
) -> Result<Reply, GraphError> {
    let key = resolve(mb, id)?;
    mb.delete(key, now);
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

fn addresses(v: Option<&Value>) -> Vec<Address> {
    v.and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|r| {
                    let e = r.get("emailAddress")?;
                    let address = e.get("address")?.as_str()?;
                    let name = e.get("name").and_then(Value::as_str).unwrap_or(address);
                    Some(Address::new(name, address))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `POST …/sendMail` → 202; the message is saved to Sent Items unless `saveToSentItems` is false
/// (docs/graph.md section 4). Nothing is delivered; the returned record lets tests see what was
/// sent ([`crate::Sandbox::sent_mail`]).
pub(crate) fn send_mail(
    mb: &mut MailboxState,
    body: &[u8],
    now: OffsetDateTime,
    client_id: &str,
) -> Result<(Reply, SentMail), GraphError> {
    let map = json_object(body)?;
    let Some(Value::Object(message)) = map.get("message") else {
        return Err(GraphError::body_read("The 'message' parameter is missing."));
    };
    let to = addresses(message.get("toRecipients"));
    if to.is_empty() {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRecipients",
            "At least one recipient isn't valid.",
        ));
    }
    let cc = addresses(message.get("ccRecipients"));
    let bcc = addresses(message.get("bccRecipients"));
    let save = map
        .get("saveToSentItems")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let subject = message
        .get("subject")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let body_of = |key: &str| {
        message
            .get("body")
            .and_then(|b| b.get(key))
            .and_then(Value::as_str)
    };
    let text = body_of("content").unwrap_or_default();
    let sent = SentMail {
        client_id: client_id.to_owned(),
        from: mb.address.clone(),
        to: to.iter().map(|a| a.address.clone()).collect(),
        cc: cc.iter().map(|a| a.address.clone()).collect(),
        bcc: bcc.iter().map(|a| a.address.clone()).collect(),
        subject: subject.to_owned(),
        content_type: body_of("contentType").unwrap_or("text").to_owned(),
        body: text.to_owned(),
        saved_to_sent_items: save,
        sent_at: now,
        draft_id: None,
        internet_message_id: String::new(),
        conversation_id: String::new(),
        extended_properties: Vec::new(),
        attachments: Vec::new(),
        delivered_to: Vec::new(),
        bounced: Vec::new(),
    };
    if save {
        let mut m = NewMessage::new(subject)
            .from(&mb.display_name.clone(), &mb.address.clone())
            .body_text(text)
            .received(now)
            .is_read(true);
        m.to = to;
        m.cc = cc;
        if let Some(folder) = mb.folder_by_id_or_name("sentitems") {
            mb.insert(folder, &m, now);
        }
    }
    Ok((Reply::empty(StatusCode::ACCEPTED), sent))
}
