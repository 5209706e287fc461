//! Delta query per folder: `GET …/mailFolders/{id}/messages/delta` (docs/graph.md section 5).
//!
//! Every change in a mailbox takes the next number of a mailbox-wide sequence. A folder indexes
//! its current messages by the sequence number of their last change (creation, move in, update)
//! and logs departures (move out, delete) by the sequence number of the departure. A round
//! covers the changes in `(since, snapshot]`, where `snapshot` is the sequence at the round's
//! first page; pages walk that range in sequence order, and the tokens carry
//! (folder, generation, since, snapshot, position), so paging is stable while messages come
//! and go: anything changed after the snapshot is left to the next round.

use axum::http::{StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::messages::{MESSAGE_PROPS, MESSAGE_TYPE, message_json, project};
use super::odata::{self, DEFAULT_PAGE, MAX_PAGE};
use super::{Ctx, GraphError, Reply, folders};
use crate::state::{MailboxState, MsgKey, Removal};

/// The state inside `$skiptoken` / `$deltatoken` (base64url JSON, opaque to clients).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Cursor {
    /// Folder id.
    f: String,
    /// Mailbox delta generation the token belongs to.
    g: u64,
    /// Changes after this sequence number are in the round.
    s: u64,
    /// Round snapshot (skip tokens only).
    #[serde(default)]
    t: u64,
    /// Last sequence number already returned (skip tokens only).
    #[serde(default)]
    p: u64,
    /// `$select` of the first request, baked into the tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sel: Option<String>,
}

impl Cursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(token: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

enum Item<'a> {
    Message(MsgKey),
    Removed(&'a Removal),
}

fn sync_state_not_found(ctx: &Ctx, generation: u64) -> GraphError {
    GraphError::new(
        StatusCode::GONE,
        "SyncStateNotFound",
        format!("The sync state generation is not found; generation={generation}"),
    )
    // A reset points at the initial URL (docs/graph.md section 5).
    .with_header(header::LOCATION, format!("{}{}", ctx.base, ctx.raw_path))
}

pub(crate) fn page(mb: &MailboxState, ctx: &Ctx, folder_id: &str) -> Result<Reply, GraphError> {
    let folder = folders::resolve(mb, folder_id)?;
    let fid = mb.folder(folder).map(|f| f.id.clone()).unwrap_or_default();
    let q = &ctx.query;
    odata::reject_unsupported(q, &["$filter", "$search", "$expand", "changeType", "$skip"])?;
    if let Some(order) = q.get("$orderby")
        && !order
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .eq_ignore_ascii_case("receivedDateTime desc")
    {
        return Err(GraphError::bad_request(
            "Delta query supports $orderby=receivedDateTime desc only.",
        ));
    }
    let page_size = ctx
        .prefs
        .max_page_size
        .unwrap_or(DEFAULT_PAGE)
        .clamp(1, MAX_PAGE);

    let check = |token: &str| -> Result<Cursor, GraphError> {
        let c = Cursor::decode(token).ok_or_else(|| {
            GraphError::new(
                StatusCode::BAD_REQUEST,
                "ErrorInvalidUrlQuery",
                "The delta or skip token is malformed.",
            )
        })?;
        if c.f != fid {
            return Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "ErrorInvalidUrlQuery",
                "The delta or skip token belongs to another folder.",
            ));
        }
        if c.g != mb.delta_generation || c.s > mb.seq || c.t > mb.seq {
            return Err(sync_state_not_found(ctx, c.g));
        }
        Ok(c)
    };
    let initial_select = || -> Result<Option<String>, GraphError> {
        Ok(odata::select(q, MESSAGE_PROPS, MESSAGE_TYPE, true)?.map(|s| s.join(",")))
    };
    let (since, snapshot, position, sel) = match (q.get("$skiptoken"), q.get("$deltatoken")) {
        (Some(token), _) => {
            let c = check(token)?;
            (c.s, c.t, c.p.max(c.s), c.sel)
        }
        (None, Some(token)) if !token.is_empty() => {
            let c = check(token)?;
            (c.s, mb.seq, c.s, c.sel)
        }
        _ => (0, mb.seq, 0, initial_select()?),
    };
    let select: Option<Vec<&str>> = sel
        .as_deref()
        .map(|s| odata::parse_select(s, MESSAGE_PROPS, MESSAGE_TYPE, false))
        .transpose()?;

    // The next page: changes in (position, snapshot], in sequence order.
    let mut items: Vec<(u64, Item<'_>)> = Vec::new();
    if let Some(f) = mb.folder(folder)
        && position < snapshot
    {
        let range = position + 1..=snapshot;
        items.extend(
            f.by_seq
                .range(range.clone())
                .take(page_size + 1)
                .map(|(s, k)| (*s, Item::Message(*k))),
        );
        // A first round lists what is there; departures only matter to later rounds.
        if since > 0 {
            items.extend(
                f.removals
                    .range(range)
                    .take(page_size + 1)
                    .map(|(s, r)| (*s, Item::Removed(r))),
            );
        }
    }
    items.sort_by_key(|(s, _)| *s);
    let more = items.len() > page_size;
    items.truncate(page_size);
    let last_seq = items.last().map_or(position, |(s, _)| *s);

    let value: Vec<Value> = items
        .iter()
        .filter_map(|(_, item)| match item {
            Item::Message(k) => mb
                .message(*k)
                .map(|m| project(message_json(mb, m, ctx), select.as_deref())),
            Item::Removed(r) => Some(json!({
                "id": if ctx.prefs.immutable_ids { &r.immutable_id } else { &r.rest_id },
                "@removed": {"reason": "deleted"},
            })),
        })
        .collect();

    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(format!("{}#Collection(message)", ctx.metadata())),
    );
    body.insert("value".into(), Value::Array(value));
    let link = |key: &str, c: &Cursor| format!("{}{}?{key}={}", ctx.base, ctx.raw_path, c.encode());
    if more {
        let c = Cursor {
            f: fid,
            g: mb.delta_generation,
            s: since,
            t: snapshot,
            p: last_seq,
            sel,
        };
        body.insert("@odata.nextLink".into(), json!(link("$skiptoken", &c)));
    } else {
        let c = Cursor {
            f: fid,
            g: mb.delta_generation,
            s: snapshot,
            t: 0,
            p: 0,
            sel,
        };
        body.insert("@odata.deltaLink".into(), json!(link("$deltatoken", &c)));
    }
    let mut applied = Vec::new();
    if let Some(n) = ctx.prefs.max_page_size {
        applied.push(format!("odata.maxpagesize={}", n.clamp(1, MAX_PAGE)));
    }
    if ctx.prefs.immutable_ids {
        applied.push("IdType=\"ImmutableId\"".to_owned());
    }
    let mut reply = Reply::json(StatusCode::OK, Value::Object(body));
    if !applied.is_empty() {
        reply = reply.with_header(
            axum::http::HeaderName::from_static("preference-applied"),
            applied.join(", "),
        );
    }
    Ok(reply)
}
