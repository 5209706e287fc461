//! The directory, for discovering a tenant's mailboxes: `GET /users`, `GET /groups`,
//! `GET /groups/{id}` and `GET /groups/{id}/transitiveMembers` (optionally cast to
//! `/microsoft.graph.user`). Shapes follow MGD `api/user-list.md`, `group-list.md`,
//! `group-get.md` and `group-list-transitivemembers.md`; paging follows the paging guide: `/users`
//! answers 100 users a page by default, `$top` asks for 1 to 999 (1,000 is refused: "Invalid page
//! size specified"), and further pages come by the `@odata.nextLink`, whose `$skiptoken` is
//! opaque (`$skip` is not supported on `/users`).
//!
//! Every mailbox of the caller's tenant is a user: a shared mailbox's account is disabled
//! (`accountEnabled: false`, as Exchange creates them); an unlicensed user is listed like anyone
//! else (its mail requests answer `404 MailboxNotEnabledForRESTAPI`). Users need `User.Read.All`
//! (or `User.ReadBasic.All`, `Directory.Read.All`); groups and their members `GroupMember.Read.All`
//! (or `Group.Read.All`, `Directory.Read.All`); otherwise `403 Authorization_RequestDenied`. An
//! app's mailbox scope (RBAC for Applications) limits mail, not the directory.
//!
//! Where the sandbox serves less than Graph: no `$filter` on `/users` and only
//! `displayName eq '…'` on `/groups`, no `$search`, `$orderby`, `$expand` or `$count`; such a
//! request answers 400 naming the option rather than being silently ignored. Directory requests
//! are not subject to Outlook's per-mailbox limits; the directory's own throttling is not modelled.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use super::odata::{self, Query};
use super::{Ctx, GraphError, Reply};
use crate::core::{Core, lock};
use crate::state::{MailboxState, State};
use crate::world::{Group, MailboxKind};

/// `/users` pages: 100 by default, at most 999.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 999;

/// What `$select` accepts on a user, and what Graph returns without it.
const USER_PROPERTIES: &[&str] = &[
    "id",
    "displayName",
    "mail",
    "userPrincipalName",
    "accountEnabled",
    "userType",
    "businessPhones",
    "givenName",
    "jobTitle",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
];
const USER_DEFAULT: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];
const GROUP_PROPERTIES: &[&str] = &["id", "displayName", "mail", "securityEnabled"];

const USER_PERMISSIONS: &[&str] = &["User.Read.All", "User.ReadBasic.All", "Directory.Read.All"];
const GROUP_PERMISSIONS: &[&str] = &[
    "GroupMember.Read.All",
    "Group.Read.All",
    "Directory.Read.All",
];

fn is(segment: &str, name: &str) -> bool {
    segment.eq_ignore_ascii_case(name)
}

/// Whether the path (after `/v1.0`) is the directory's: `users` alone, or `groups…`.
pub(super) fn is_directory_request(segments: &[String]) -> bool {
    match segments {
        [first] if is(first, "users") => true,
        [first, ..] => is(first, "groups"),
        [] => false,
    }
}

pub(super) fn handle(
    core: &Arc<Core>,
    ctx: &Ctx,
    segments: &[String],
    caller: &super::Caller,
) -> Result<Reply, GraphError> {
    let tenant = caller.tenant;
    if ctx.method != Method::GET {
        return Err(GraphError::method_not_allowed(ctx.method.as_str(), "GET"));
    }
    let st = lock(&core.state);
    let rest: Vec<&str> = segments.iter().skip(1).map(String::as_str).collect();
    if is(&segments[0], "users") {
        permitted(&st, caller, USER_PERMISSIONS)?;
        let users: Vec<&MailboxState> = st
            .mailboxes
            .iter()
            .filter(|m| m.tenant == tenant && !m.deleted)
            .collect();
        return user_page(ctx, &users, "users");
    }
    permitted(&st, caller, GROUP_PERMISSIONS)?;
    let groups = st
        .tenants
        .get(tenant)
        .map(|t| t.groups.as_slice())
        .unwrap_or_default();
    match rest.as_slice() {
        [] => list_groups(ctx, groups),
        [id] => {
            let group = find_group(groups, id)?;
            let select =
                odata::select(&ctx.query, GROUP_PROPERTIES, "microsoft.graph.group", true)?;
            let mut body = group_json(group, select.as_deref());
            body.insert(
                "@odata.context".into(),
                json!(format!("{}#groups/$entity", ctx.metadata())),
            );
            Ok(Reply::json(StatusCode::OK, Value::Object(body)))
        }
        [id, members] if is(members, "transitiveMembers") => {
            let group = find_group(groups, id)?;
            transitive_page(ctx, &st, tenant, groups, group, true)
        }
        [id, members, cast]
            if is(members, "transitiveMembers") && is(cast, "microsoft.graph.user") =>
        {
            let group = find_group(groups, id)?;
            transitive_page(ctx, &st, tenant, groups, group, false)
        }
        [_, other, ..] => Err(GraphError::not_implemented(&format!(
            "groups/{{id}}/{other}"
        ))),
    }
}

/// The caller's app holds one of `permissions` (a delegated token: among its scopes, the same
/// names being delegated permissions too), or 403.
fn permitted(st: &State, caller: &super::Caller, permissions: &[&str]) -> Result<(), GraphError> {
    let app = st
        .tenants
        .get(caller.tenant)
        .and_then(|t| t.app(&caller.client_id))
        .ok_or_else(GraphError::insufficient_privileges)?;
    let granted = match &caller.delegation {
        Some(d) => d.has_any(permissions),
        None => permissions.iter().any(|p| app.has(p)),
    };
    if granted {
        Ok(())
    } else {
        Err(GraphError::insufficient_privileges())
    }
}

fn find_group<'a>(groups: &'a [Group], id: &str) -> Result<&'a Group, GraphError> {
    groups
        .iter()
        .find(|g| g.id.eq_ignore_ascii_case(id))
        .ok_or_else(|| GraphError::directory_object_not_found(id))
}

/// `$top` for a directory list: 1 to 999, 100 by default.
fn page_size(q: &Query) -> Result<usize, GraphError> {
    match q.get("$top") {
        None => Ok(DEFAULT_PAGE),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(GraphError::directory_bad_request(format!(
                "Invalid page size specified: '{v}'. Must be between 1 and {MAX_PAGE} inclusive."
            ))),
        },
    }
}

/// Where the page starts: the opaque `$skiptoken` of a nextLink, or the beginning.
fn page_start(q: &Query) -> Result<usize, GraphError> {
    let Some(token) = q.get("$skiptoken") else {
        return Ok(0);
    };
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("sandbox-offset:")?.parse().ok())
        .ok_or_else(|| {
            GraphError::directory_bad_request("The specified page token value is invalid.")
        })
}

fn skiptoken(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("sandbox-offset:{offset}"))
}

/// One page of `items` (already in order), with a nextLink when more remain.
fn page(ctx: &Ctx, items: Vec<Value>, context: &str) -> Result<Reply, GraphError> {
    let top = page_size(&ctx.query)?;
    let start = page_start(&ctx.query)?;
    let end = start.saturating_add(top).min(items.len());
    let value: Vec<Value> = items.get(start..end).unwrap_or_default().to_vec();
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(format!("{}#{context}", ctx.metadata())),
    );
    if end < items.len() {
        body.insert(
            "@odata.nextLink".into(),
            json!(ctx.link_with("$skiptoken", &skiptoken(end))),
        );
    }
    body.insert("value".into(), Value::Array(value));
    Ok(Reply::json(StatusCode::OK, Value::Object(body)))
}

fn user_page(ctx: &Ctx, users: &[&MailboxState], context: &str) -> Result<Reply, GraphError> {
    odata::reject_unsupported(
        &ctx.query,
        &[
            "$filter", "$search", "$orderby", "$expand", "$count", "$skip",
        ],
    )?;
    let select = odata::select(&ctx.query, USER_PROPERTIES, "microsoft.graph.user", true)?;
    let items = users
        .iter()
        .map(|m| Value::Object(user_json(m, select.as_deref())))
        .collect();
    page(ctx, items, context)
}

fn user_json(m: &MailboxState, select: Option<&[&str]>) -> Map<String, Value> {
    let full = json!({
        "id": m.id,
        "displayName": m.display_name,
        "mail": m.address,
        "userPrincipalName": m.address,
        "accountEnabled": m.kind != MailboxKind::Shared,
        "userType": "Member",
        "businessPhones": [],
        "givenName": null,
        "jobTitle": null,
        "mobilePhone": null,
        "officeLocation": null,
        "preferredLanguage": null,
        "surname": null,
    });
    pick(&full, select.unwrap_or(USER_DEFAULT))
}

fn group_json(g: &Group, select: Option<&[&str]>) -> Map<String, Value> {
    let full = json!({
        "id": g.id,
        "displayName": g.display_name,
        "mail": null,
        "securityEnabled": true,
    });
    pick(&full, select.unwrap_or(GROUP_PROPERTIES))
}

fn pick(full: &Value, properties: &[&str]) -> Map<String, Value> {
    properties
        .iter()
        .filter_map(|p| full.get(*p).map(|v| ((*p).to_owned(), v.clone())))
        .collect()
}

/// `GET /groups`, with `$filter=displayName eq '…'` as the one filter served.
fn list_groups(ctx: &Ctx, groups: &[Group]) -> Result<Reply, GraphError> {
    odata::reject_unsupported(
        &ctx.query,
        &["$search", "$orderby", "$expand", "$count", "$skip"],
    )?;
    let name = match ctx.query.get("$filter") {
        None => None,
        Some(f) => Some(display_name_filter(f)?),
    };
    let select = odata::select(&ctx.query, GROUP_PROPERTIES, "microsoft.graph.group", true)?;
    let items = groups
        .iter()
        .filter(|g| {
            name.as_ref()
                .is_none_or(|n| g.display_name.eq_ignore_ascii_case(n))
        })
        .map(|g| Value::Object(group_json(g, select.as_deref())))
        .collect();
    page(ctx, items, "groups")
}

/// `displayName eq 'Name'` (a quote doubled inside the literal), else 400.
fn display_name_filter(filter: &str) -> Result<String, GraphError> {
    let unsupported = || {
        GraphError::directory_bad_request(format!(
            "The sandbox serves only $filter=displayName eq '…' on groups, not '{filter}'."
        ))
    };
    let rest = filter.trim();
    let (property, rest) = rest
        .split_once(char::is_whitespace)
        .ok_or_else(unsupported)?;
    let (operator, literal) = rest
        .trim_start()
        .split_once(char::is_whitespace)
        .ok_or_else(unsupported)?;
    if !is(property, "displayName") || !is(operator, "eq") {
        return Err(unsupported());
    }
    let literal = literal.trim();
    literal
        .strip_prefix('\'')
        .and_then(|l| l.strip_suffix('\''))
        .map(|l| l.replace("''", "'"))
        .ok_or_else(unsupported)
}

/// Every user reachable from `group` through nested groups, once each, in the order met; with
/// `with_groups`, the nested groups themselves too (a `directoryObject` collection, typed by
/// `@odata.type`).
fn transitive_page(
    ctx: &Ctx,
    st: &State,
    tenant: usize,
    groups: &[Group],
    group: &Group,
    with_groups: bool,
) -> Result<Reply, GraphError> {
    odata::reject_unsupported(
        &ctx.query,
        &[
            "$filter", "$search", "$orderby", "$expand", "$count", "$skip",
        ],
    )?;
    let select = odata::select(&ctx.query, USER_PROPERTIES, "microsoft.graph.user", true)?;
    let mut seen_groups = vec![group.id.to_ascii_lowercase()];
    let mut seen_users: Vec<usize> = Vec::new();
    let mut items = Vec::new();
    let mut queue = vec![group];
    while let Some(g) = queue.pop() {
        for address in &g.members {
            let Some(idx) = st.find_mailbox(address).filter(|i| {
                st.mailbox(*i)
                    .is_some_and(|m| m.tenant == tenant && !m.deleted)
            }) else {
                continue;
            };
            if seen_users.contains(&idx) {
                continue;
            }
            seen_users.push(idx);
            if let Some(m) = st.mailbox(idx) {
                let mut user = user_json(m, select.as_deref());
                if with_groups {
                    user.insert("@odata.type".into(), json!("#microsoft.graph.user"));
                }
                items.push(Value::Object(user));
            }
        }
        for nested in &g.groups {
            if seen_groups.contains(&nested.to_ascii_lowercase()) {
                continue;
            }
            seen_groups.push(nested.to_ascii_lowercase());
            if let Some(n) = groups.iter().find(|x| x.id.eq_ignore_ascii_case(nested)) {
                if with_groups {
                    let mut object = group_json(n, None);
                    object.insert("@odata.type".into(), json!("#microsoft.graph.group"));
                    items.push(Value::Object(object));
                }
                queue.push(n);
            }
        }
    }
    let context = if with_groups {
        "directoryObjects"
    } else {
        "users"
    };
    page(ctx, items, context)
}
