//! `mailFolders`, `mailFolders/{id}` and `childFolders` (docs/graph.md section 3).

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::odata::{self, Query};
use super::{Ctx, GraphError, Reply};
use crate::ids::is_plausible_id;
use crate::state::MailboxState;

/// Properties of a mailFolder.
const FOLDER_PROPS: &[&str] = &[
    "id",
    "displayName",
    "parentFolderId",
    "childFolderCount",
    "unreadItemCount",
    "totalItemCount",
    "sizeInBytes",
    "isHidden",
];

/// A folder by id or well-known name: malformed ids are 400, unknown ones 404.
pub(crate) fn resolve(mb: &MailboxState, id: &str) -> Result<usize, GraphError> {
    if let Some(idx) = mb.folder_by_id_or_name(id) {
        return Ok(idx);
    }
    if MailboxState::is_well_known_name(id) || is_plausible_id(id) {
        Err(GraphError::item_not_found())
    } else {
        Err(GraphError::malformed_id())
    }
}

pub(crate) fn folder_json(mb: &MailboxState, idx: usize) -> Map<String, Value> {
    let mut map = Map::new();
    let Some(f) = mb.folder(idx) else {
        return map;
    };
    let parent_id = f.parent.and_then(|p| mb.folder(p)).map_or_else(
        || mb.folder(mb.root).map(|r| r.id.clone()),
        |p| Some(p.id.clone()),
    );
    if f.search {
        // An entity of a derived type in a collection of its base type carries its type
        // (OData JSON Format 4.01, §4.5.3 "Control Information: type"); Graph's mailFolder
        // listings mark search folders so.
        map.insert(
            "@odata.type".into(),
            json!("#microsoft.graph.mailSearchFolder"),
        );
    }
    map.insert("id".into(), json!(f.id));
    map.insert("displayName".into(), json!(f.display_name));
    map.insert("parentFolderId".into(), json!(parent_id));
    map.insert("childFolderCount".into(), json!(f.children.len()));
    map.insert("unreadItemCount".into(), json!(mb.unread_count(idx)));
    map.insert("totalItemCount".into(), json!(f.by_received.len()));
    map.insert("sizeInBytes".into(), json!(mb.size_of_folder(idx)));
    map.insert("isHidden".into(), json!(f.hidden));
    map
}

/// `$select` is honoured loosely for folders: unknown names are ignored.
fn project(mut map: Map<String, Value>, select: Option<&[&str]>) -> Value {
    if let Some(select) = select {
        map.retain(|k, _| k == "id" || k == "@odata.type" || select.contains(&k.as_str()));
    }
    Value::Object(map)
}

pub(crate) fn get(mb: &MailboxState, ctx: &Ctx, id: &str) -> Result<Reply, GraphError> {
    let idx = resolve(mb, id)?;
    let select = odata::select(
        &ctx.query,
        FOLDER_PROPS,
        "microsoft.graph.mailFolder",
        false,
    )?;
    let mut map = Map::new();
    map.insert(
        "@odata.context".into(),
        json!(format!(
            "{}#users('{}')/mailFolders/$entity",
            ctx.metadata(),
            mb.address
        )),
    );
    if let Value::Object(body) = project(folder_json(mb, idx), select.as_deref()) {
        map.extend(body);
    }
    Ok(Reply::json(StatusCode::OK, Value::Object(map)))
}

/// Lists the children of `parent` (for `mailFolders`, the children of msgfolderroot): hidden
/// folders only with `includeHiddenFolders=true`; `$filter=displayName eq '…'`; `$top`/`$skip`.
pub(crate) fn list(mb: &MailboxState, ctx: &Ctx, parent: usize) -> Result<Reply, GraphError> {
    let q: &Query = &ctx.query;
    let top = odata::top(q)?;
    let skip = odata::skip(q)?;
    let select = odata::select(q, FOLDER_PROPS, "microsoft.graph.mailFolder", false)?;
    let name = odata::folder_name_filter(q)?;
    let include_hidden = q
        .get("includeHiddenFolders")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut children: Vec<usize> = mb
        .folder(parent)
        .map(|f| f.children.clone())
        .unwrap_or_default();
    if parent == mb.root {
        // "The returned collection includes any mail search folders directly under the root"
        // (learn.microsoft.com/graph/api/user-list-mailfolders). An emulator built from that
        // sentence lists every search folder here, each with its real parentFolderId; the
        // sandbox does too, so clients are tested against the wider reading: a folder's place
        // is its parentFolderId, not the listing it came in.
        for search in mb.search_folders() {
            if !children.contains(&search) {
                children.push(search);
            }
        }
    }
    let mut children: Vec<usize> = children
        .into_iter()
        .filter(|c| {
            mb.folder(*c).is_some_and(|f| {
                (include_hidden || !f.hidden)
                    && name
                        .as_deref()
                        .is_none_or(|n| f.display_name.eq_ignore_ascii_case(n))
            })
        })
        .collect();
    children.sort_by_key(|c| {
        mb.folder(*c)
            .map(|f| f.display_name.to_lowercase())
            .unwrap_or_default()
    });
    let total = children.len();
    let value: Vec<Value> = children
        .iter()
        .skip(skip)
        .take(top)
        .map(|c| project(folder_json(mb, *c), select.as_deref()))
        .collect();
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(format!(
            "{}#users('{}')/mailFolders",
            ctx.metadata(),
            mb.address
        )),
    );
    body.insert("value".into(), Value::Array(value));
    if skip.saturating_add(top) < total {
        body.insert(
            "@odata.nextLink".into(),
            json!(ctx.link_with("$skip", &(skip + top).to_string())),
        );
    }
    Ok(Reply::json(StatusCode::OK, Value::Object(body)))
}
