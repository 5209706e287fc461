//! `/v1.0/subscriptions`: create (with the validation handshake), list, get, renew, delete and
//! reauthorize change-notification subscriptions on mail folders (docs/graph.md section 6).
//!
//! Only `changeType` "created" is ever delivered ("updated" and "deleted" are accepted and stay
//! silent). `resource` is `users/{id or UPN}/mailFolders('{id or well-known name}')/messages`,
//! `users/{u}/mailFolders/{id}/messages` or `users/{u}/messages` (every visible folder).

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Caller, Ctx, Draft, GraphError, Reply, folders};
use crate::core::{Core, lock};
use crate::ids::{fnv1a, new_guid};
use crate::subscriptions::Subscription;

/// Outlook raises an expiry less than 45 minutes ahead to 45 minutes (docs/graph.md section 6).
const MIN_SUBSCRIPTION_MINUTES: i64 = 45;
/// Longest `clientState` Graph accepts.
const MAX_CLIENT_STATE: usize = 128;

/// Routes `/v1.0/subscriptions/...` (`rest` is what follows `subscriptions`).
pub(super) async fn handle(
    core: &Arc<Core>,
    ctx: &Ctx,
    rest: &[String],
    body: &Bytes,
    caller: &Caller,
    draft: &mut Draft,
) -> Result<Reply, GraphError> {
    check_permission(core, caller)?;
    let app = (caller.tenant, caller.client_id.as_str());
    let creator = creator_of(core, caller);
    let m = &ctx.method;
    // A delegated caller sees the subscriptions its user created with this app.
    if let ([id, ..], Some(creator)) = (rest, &creator) {
        let visible = with_subs(core, |subs| {
            subs.get_mut(id, Some(app))
                .is_none_or(|s| s.creator_id.eq_ignore_ascii_case(creator))
        });
        if !visible {
            return Err(GraphError::subscription_not_found(id));
        }
    }
    match rest {
        [] if *m == Method::GET => Ok(list(core, ctx, app, creator.as_deref())),
        [] if *m == Method::POST => create(core, ctx, body, caller, creator, draft).await,
        [] => Err(GraphError::method_not_allowed(m.as_str(), "GET, POST")),
        [id] if *m == Method::GET => get(core, ctx, id, app, draft),
        [id] if *m == Method::PATCH => renew(core, ctx, id, body, app, draft),
        [id] if *m == Method::DELETE => delete(core, id, app, draft),
        [_] => Err(GraphError::method_not_allowed(
            m.as_str(),
            "GET, PATCH, DELETE",
        )),
        [id, action] if action.eq_ignore_ascii_case("reauthorize") => {
            if *m != Method::POST {
                return Err(GraphError::method_not_allowed(m.as_str(), "POST"));
            }
            reauthorize(core, id, app, draft)
        }
        [_, other, ..] => Err(GraphError::not_found_segment(other)),
    }
}

/// Subscribing to mail needs a mail read permission (docs/graph.md sections 6 and 8); a
/// delegated token needs a delegated one (section 13).
fn check_permission(core: &Core, caller: &Caller) -> Result<(), GraphError> {
    let st = lock(&core.state);
    let app = st
        .tenants
        .get(caller.tenant)
        .and_then(|t| t.app(&caller.client_id))
        .ok_or_else(GraphError::access_denied)?;
    let allowed = match &caller.delegation {
        Some(d) => d.has_any(&[
            "Mail.ReadBasic",
            "Mail.Read",
            "Mail.ReadWrite",
            "Mail.Read.Shared",
            "Mail.ReadWrite.Shared",
        ]),
        None => app.can_read(),
    };
    if allowed {
        Ok(())
    } else {
        Err(GraphError::access_denied())
    }
}

/// The signed-in user's object id for a delegated caller (`creatorId` of what it creates).
fn creator_of(core: &Core, caller: &Caller) -> Option<String> {
    let d = caller.delegation.as_ref()?;
    lock(&core.state).mailbox(d.user).map(|m| m.id.clone())
}

fn context(ctx: &Ctx, entity: bool) -> String {
    if entity {
        format!("{}#subscriptions/$entity", ctx.metadata())
    } else {
        format!("{}#subscriptions", ctx.metadata())
    }
}

fn entity(ctx: &Ctx, s: &Subscription, status: StatusCode) -> Reply {
    let mut body = Map::new();
    body.insert("@odata.context".into(), json!(context(ctx, true)));
    if let Value::Object(rest) = s.to_json() {
        body.extend(rest);
    }
    Reply::json(status, Value::Object(body))
}

/// Sweeps expired subscriptions (queuing any `reauthorizationRequired` that came due), then runs
/// `f` on the table.
fn with_subs<T>(core: &Core, f: impl FnOnce(&mut crate::subscriptions::Subscriptions) -> T) -> T {
    let now = core.now();
    let (out, due) = {
        let mut subs = lock(&core.notify.subs);
        let due = core.notify.sweep(&mut subs, now);
        (f(&mut subs), due)
    };
    for u in due {
        core.notify.enqueue(u);
    }
    out
}

/// `GET /subscriptions`: the calling app's live subscriptions (a delegated caller: its user's).
fn list(
    core: &Core,
    ctx: &Ctx,
    (tenant, client_id): (usize, &str),
    creator: Option<&str>,
) -> Reply {
    let value: Vec<Value> = with_subs(core, |subs| {
        subs.iter()
            .filter(|s| s.tenant == tenant && s.application_id.eq_ignore_ascii_case(client_id))
            .filter(|s| creator.is_none_or(|c| s.creator_id.eq_ignore_ascii_case(c)))
            .map(Subscription::to_json)
            .collect()
    });
    Reply::json(
        StatusCode::OK,
        json!({ "@odata.context": context(ctx, false), "value": value }),
    )
}

fn get(
    core: &Core,
    ctx: &Ctx,
    id: &str,
    app: (usize, &str),
    draft: &mut Draft,
) -> Result<Reply, GraphError> {
    let s = with_subs(core, |subs| subs.get_mut(id, Some(app)).map(|s| s.clone()))
        .ok_or_else(|| GraphError::subscription_not_found(id))?;
    draft.mailbox = Some(s.mailbox_address.clone());
    Ok(entity(ctx, &s, StatusCode::OK))
}

/// `DELETE /subscriptions/{id}` → 204.
fn delete(
    core: &Core,
    id: &str,
    app: (usize, &str),
    draft: &mut Draft,
) -> Result<Reply, GraphError> {
    let s = with_subs(core, |subs| subs.remove(id, Some(app)))
        .ok_or_else(|| GraphError::subscription_not_found(id))?;
    draft.mailbox = Some(s.mailbox_address);
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

/// `POST /subscriptions/{id}/reauthorize` → 204; clears a pending reauthorization but does not
/// extend the expiry (docs/graph.md section 6).
fn reauthorize(
    core: &Core,
    id: &str,
    app: (usize, &str),
    draft: &mut Draft,
) -> Result<Reply, GraphError> {
    let mailbox = with_subs(core, |subs| {
        subs.get_mut(id, Some(app)).map(|s| {
            s.reauthorization_required = false;
            s.mailbox_address.clone()
        })
    })
    .ok_or_else(|| GraphError::subscription_not_found(id))?;
    draft.mailbox = Some(mailbox);
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

/// `PATCH /subscriptions/{id}` `{"expirationDateTime": …}` → 200: renews, and also counts as
/// reauthorization (docs/graph.md section 6).
fn renew(
    core: &Core,
    ctx: &Ctx,
    id: &str,
    body: &[u8],
    app: (usize, &str),
    draft: &mut Draft,
) -> Result<Reply, GraphError> {
    let map = json_object(body)?;
    for k in map.keys() {
        if !k.starts_with('@') && k != "expirationDateTime" {
            return Err(GraphError::invalid_request(format!(
                "The sandbox can only renew a subscription (PATCH expirationDateTime); '{k}' cannot be changed: delete and recreate the subscription."
            )));
        }
    }
    let requested = required_time(&map)?;
    let expiration = expiry(core, requested)?;
    let s = with_subs(core, |subs| {
        subs.get_mut(id, Some(app)).map(|s| {
            s.expiration = expiration;
            s.reauthorization_required = false;
            s.reauthorization_notified = false;
            s.clone()
        })
    })
    .ok_or_else(|| GraphError::subscription_not_found(id))?;
    draft.mailbox = Some(s.mailbox_address.clone());
    Ok(entity(ctx, &s, StatusCode::OK))
}

/// `POST /subscriptions` → 201, after validating both URLs with the handshake.
async fn create(
    core: &Arc<Core>,
    ctx: &Ctx,
    body: &[u8],
    caller: &Caller,
    creator: Option<String>,
    draft: &mut Draft,
) -> Result<Reply, GraphError> {
    let (tenant, client_id) = (caller.tenant, caller.client_id.as_str());
    let map = json_object(body)?;
    let change_type = required_str(&map, "changeType")?;
    for c in change_type.split(',') {
        let c = c.trim();
        if !["created", "updated", "deleted"]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(c))
        {
            return Err(GraphError::invalid_request(format!(
                "'{c}' is not a supported change type for messages; use created, updated or deleted."
            )));
        }
    }
    let allow_http = core.notify.config().allow_http;
    let notification_url = required_str(&map, "notificationUrl")?;
    check_url("notificationUrl", &notification_url, allow_http)?;
    let lifecycle_url = optional_str(&map, "lifecycleNotificationUrl")?;
    if let Some(u) = &lifecycle_url {
        check_url("lifecycleNotificationUrl", u, allow_http)?;
    }
    let client_state = optional_str(&map, "clientState")?;
    if client_state
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_CLIENT_STATE)
    {
        return Err(GraphError::invalid_request(
            "clientState must be at most 128 characters.",
        ));
    }
    let resource = required_str(&map, "resource")?;
    let (user, folder) = parse_resource(&resource)?;
    let requested = required_time(&map)?;

    // Mailbox, scope and folder, like any call on that mailbox (docs/graph.md section 8).
    let target = {
        let st = lock(&core.state);
        let signed_in = caller
            .delegation
            .as_ref()
            .and_then(|d| st.mailbox(d.user))
            .map(|m| m.address.clone());
        let user = match (user, &signed_in) {
            (Some(u), _) => u,
            (None, Some(me)) => me.clone(),
            (None, None) => {
                return Err(GraphError::bad_request(
                    "/me request is only valid with delegated authentication flow.",
                ));
            }
        };
        let mb_idx = st
            .find_mailbox(&user)
            .filter(|i| st.mailbox(*i).is_some_and(|m| m.tenant == tenant))
            .ok_or_else(|| GraphError::invalid_user(&user))?;
        let mb = st
            .mailbox(mb_idx)
            .ok_or_else(|| GraphError::invalid_user(&user))?;
        draft.mailbox = Some(mb.address.clone());
        let t = st
            .tenants
            .get(tenant)
            .ok_or_else(GraphError::access_denied)?;
        let app = t.app(client_id).ok_or_else(GraphError::access_denied)?;
        match &signed_in {
            // "Delegated permission supports subscribing to items in folders in only the
            // signed-in user's mailbox" (docs/graph.md section 13).
            Some(me) if !me.eq_ignore_ascii_case(&mb.address) => {
                return Err(GraphError::access_denied());
            }
            Some(_) => {}
            None if !app.in_scope(&mb.address) => return Err(GraphError::out_of_scope()),
            None => {}
        }
        let folder = folder
            .as_deref()
            .map(|f| folders::resolve(mb, f))
            .transpose()?;
        Target {
            mailbox: mb_idx,
            address: mb.address.clone(),
            tenant_id: t.id.clone(),
            folder,
            folder_path: folder.map(|f| mb.path_of(f)),
        }
    };
    let expiration = expiry(core, requested)?;

    let id = new_guid();
    // Graph validates both URLs before creating anything (docs/graph.md section 6).
    if !core.notify.validate(&notification_url, &id).await {
        return Err(GraphError::validation_failed());
    }
    if let Some(u) = &lifecycle_url
        && !core.notify.validate(u, &id).await
    {
        return Err(GraphError::validation_failed());
    }

    let s = Subscription {
        id,
        tenant,
        creator_id: creator.unwrap_or_else(|| service_principal_id(&target.tenant_id, client_id)),
        tenant_id: target.tenant_id,
        application_id: client_id.to_owned(),
        mailbox: target.mailbox,
        mailbox_address: target.address,
        folder: target.folder,
        folder_path: target.folder_path,
        resource,
        change_type,
        notification_url,
        lifecycle_url,
        client_state,
        expiration,
        immutable_ids: ctx.prefs.immutable_ids,
        reauthorization_required: false,
        reauthorization_notified: false,
    };
    let reply = entity(ctx, &s, StatusCode::CREATED);
    with_subs(core, |subs| subs.insert(s));
    Ok(reply)
}

struct Target {
    mailbox: usize,
    address: String,
    tenant_id: String,
    folder: Option<usize>,
    folder_path: Option<String>,
}

/// The expiry to store: in the future, at most the configured maximum ahead (Outlook: 4,230
/// minutes), raised to 45 minutes ahead if shorter (docs/graph.md section 6).
fn expiry(core: &Core, requested: OffsetDateTime) -> Result<OffsetDateTime, GraphError> {
    let now = core.now();
    let max_minutes = core.notify.config().max_subscription_minutes;
    if requested <= now {
        return Err(GraphError::invalid_request(
            "Subscription expiration must be in the future.",
        ));
    }
    if requested > now + time::Duration::minutes(i64::from(max_minutes)) {
        return Err(GraphError::invalid_request(format!(
            "Subscription expiration can only be {max_minutes} minutes in the future."
        )));
    }
    let floor_minutes = MIN_SUBSCRIPTION_MINUTES.min(i64::from(max_minutes));
    let t = requested.max(now + time::Duration::minutes(floor_minutes));
    // Graph keeps 100-ns ticks (seven fractional digits): what it echoes is what it stores.
    Ok(t.replace_nanosecond(t.nanosecond() / 100 * 100)
        .unwrap_or(t))
}

/// Graph requires HTTPS; the sandbox also accepts HTTP unless told otherwise.
fn check_url(name: &str, value: &str, allow_http: bool) -> Result<(), GraphError> {
    let parsed = url::Url::parse(value).map_err(|_| {
        GraphError::invalid_request(format!("{name} '{value}' is not an absolute URL."))
    })?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if allow_http => Ok(()),
        _ => Err(GraphError::invalid_request(format!(
            "{name} must use https (the sandbox accepts http only when allowHttp is on)."
        ))),
    }
}

/// Splits a subscription resource into the user (`None`: `me`, the signed-in user) and the
/// folder (`None`: every folder).
fn parse_resource(resource: &str) -> Result<(Option<String>, Option<String>), GraphError> {
    let unsupported = || {
        GraphError::invalid_request(format!(
            "Resource '{resource}' is not supported: use users/{{id}}/mailFolders('{{folder}}')/messages, users/{{id}}/mailFolders/{{folder}}/messages or users/{{id}}/messages."
        ))
    };
    if resource.contains('?') {
        return Err(GraphError::invalid_request(
            "The sandbox does not support query options in a subscription resource.",
        ));
    }
    let r = resource.trim().trim_start_matches('/');
    let (first, rest) = r.split_once('/').unwrap_or((r, ""));
    let (user, tail) = if first.eq_ignore_ascii_case("me") {
        (None, rest)
    } else if first.eq_ignore_ascii_case("users") {
        let (user, tail) = rest.split_once('/').ok_or_else(unsupported)?;
        let user = decode(user);
        if user.is_empty() {
            return Err(unsupported());
        }
        (Some(user), tail)
    } else {
        return Err(unsupported());
    };
    if tail.eq_ignore_ascii_case("messages") {
        return Ok((user, None));
    }
    let lower = tail.to_ascii_lowercase();
    const SUFFIX: &str = "/messages";
    if !lower.ends_with(SUFFIX) {
        return Err(unsupported());
    }
    let middle = tail.get(..tail.len() - SUFFIX.len()).unwrap_or_default();
    let folder = if lower.starts_with("mailfolders('") {
        // mailFolders('{id}'): the id may contain '/'.
        middle
            .get("mailFolders('".len()..)
            .and_then(|s| s.strip_suffix("')"))
            .ok_or_else(unsupported)?
    } else if lower.starts_with("mailfolders/") {
        middle.get("mailFolders/".len()..).unwrap_or_default()
    } else {
        return Err(unsupported());
    };
    if folder.is_empty() {
        return Err(unsupported());
    }
    Ok((user, Some(decode(folder))))
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, GraphError> {
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

fn required_str(map: &Map<String, Value>, name: &str) -> Result<String, GraphError> {
    optional_str(map, name)?
        .ok_or_else(|| GraphError::invalid_request(format!("The '{name}' property is required.")))
}

fn optional_str(map: &Map<String, Value>, name: &str) -> Result<Option<String>, GraphError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(GraphError::body_read(format!(
            "Cannot convert the value of '{name}' to the expected type 'Edm.String'."
        ))),
    }
}

fn required_time(map: &Map<String, Value>) -> Result<OffsetDateTime, GraphError> {
    let raw = required_str(map, "expirationDateTime")?;
    OffsetDateTime::parse(&raw, &Rfc3339).map_err(|_| {
        GraphError::body_read(format!(
            "Cannot convert the literal '{raw}' to the expected type 'Edm.DateTimeOffset'."
        ))
    })
}

/// A stable GUID standing for the app's service principal in its tenant (`creatorId` of
/// app-only subscriptions).
fn service_principal_id(tenant_id: &str, client_id: &str) -> String {
    let high = fnv1a(&[b"sp", tenant_id.as_bytes(), client_id.as_bytes()]);
    let low = fnv1a(&[b"principal", client_id.as_bytes(), tenant_id.as_bytes()]);
    uuid::Uuid::from_u64_pair(high, low).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_parse_in_every_documented_shape() {
        assert_eq!(
            parse_resource("users/a@contoso.com/mailFolders('Inbox')/messages").unwrap(),
            (Some("a@contoso.com".into()), Some("Inbox".into()))
        );
        assert_eq!(
            parse_resource("/Users/a%40contoso.com/mailfolders('AQMk+x/y=')/Messages").unwrap(),
            (Some("a@contoso.com".into()), Some("AQMk+x/y=".into()))
        );
        assert_eq!(
            parse_resource("users/u/mailFolders/AQMk%2Bx%2Fy%3D/messages").unwrap(),
            (Some("u".into()), Some("AQMk+x/y=".into()))
        );
        assert_eq!(
            parse_resource("users/u/messages").unwrap(),
            (Some("u".into()), None)
        );
        assert_eq!(
            parse_resource("me/mailFolders('Inbox')/messages").unwrap(),
            (None, Some("Inbox".into()))
        );
        assert!(parse_resource("users/u/events").is_err());
        assert!(parse_resource("users/u/mailFolders('Inbox')/messages?$filter=x").is_err());
    }
}
