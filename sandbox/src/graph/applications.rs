//! `/v1.0/applications`: application objects with their credentials, and `addPassword` /
//! `removePassword` (docs/graph.md section 9). Shapes follow MGD `api/application-get.md`,
//! `application-list.md`, `application-addpassword.md`, `application-removepassword.md`,
//! `resources/passwordcredential.md` and `resources/keycredential.md`:
//!
//! - `GET /applications/{object id}`, `GET /applications(appId='{client id}')` (`$select`);
//! - `GET /applications` with `$filter=appId eq '…'` (or `id eq '…'`), `$select`, `$top`;
//! - `POST …/addPassword` `{"passwordCredential":{displayName?, startDateTime?, endDateTime?}}` →
//!   200 with the new `passwordCredential`, `secretText` included (this once);
//! - `POST …/removePassword` `{"keyId":"…"}` → 204.
//!
//! An app sees only applications of its own tenant. Reads need `Application.Read.All`,
//! `Application.ReadWrite.All`, or `Application.ReadWrite.OwnedBy` for apps it owns; writes need
//! `Application.ReadWrite.All`, or `Application.ReadWrite.OwnedBy` for apps it owns (the
//! sandbox makes every app an owner of its own registration). Otherwise `403
//! Authorization_RequestDenied`, as for `GET /users/{id}` without a directory permission.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::odata::{self, Query};
use super::{Ctx, GraphError, Reply, graph_time};
use crate::core::{Core, lock};
use crate::credentials::{AppCertificate, PasswordCredential, new_secret_text};
use crate::state::{AppState, TenantState};

/// The properties the sandbox serves (`$select` accepts these, case-insensitively).
const PROPERTIES: &[&str] = &[
    "id",
    "deletedDateTime",
    "appId",
    "createdDateTime",
    "displayName",
    "identifierUris",
    "keyCredentials",
    "passwordCredentials",
    "publisherDomain",
    "requiredResourceAccess",
    "signInAudience",
    "tags",
];

/// Real navigation properties and actions of an application the sandbox does not serve.
const UNSERVED: &[&str] = &[
    "addKey",
    "removeKey",
    "owners",
    "extensionProperties",
    "federatedIdentityCredentials",
    "appManagementPolicies",
    "createdOnBehalfOf",
    "tokenIssuancePolicies",
    "tokenLifetimePolicies",
    "synchronization",
    "logo",
    "setVerifiedPublisher",
    "unsetVerifiedPublisher",
];

/// Graph's application id: the resource of `requiredResourceAccess`.
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

fn is(segment: &str, name: &str) -> bool {
    segment.eq_ignore_ascii_case(name)
}

/// `applications` or `applications(…)` (an alternate key).
pub(super) fn is_applications_segment(s: &str) -> bool {
    is(s, "applications") || s.get(..13).is_some_and(|p| is(p, "applications("))
}

/// How the request names the application.
enum Key {
    ObjectId(String),
    AppId(String),
}

impl Key {
    fn text(&self) -> &str {
        match self {
            Key::ObjectId(s) | Key::AppId(s) => s,
        }
    }

    fn matches(&self, app: &AppState) -> bool {
        match self {
            Key::ObjectId(id) => app.object_id.eq_ignore_ascii_case(id),
            Key::AppId(id) => app.client_id.eq_ignore_ascii_case(id),
        }
    }
}

/// `applications(appId='…')` or `applications('{object id}')`.
fn parse_key(segment: &str) -> Result<Key, GraphError> {
    let invalid = || {
        GraphError::directory_bad_request(format!(
            "Bad request. The key in '{segment}' is not valid: use applications(appId='{{appId}}') or applications/{{id}}."
        ))
    };
    let inner = segment
        .get(13..)
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(invalid)?
        .trim();
    let quoted = |s: &str| {
        s.trim()
            .strip_prefix('\'')
            .and_then(|s| s.strip_suffix('\''))
            .map(str::to_owned)
    };
    if let Some((name, value)) = inner.split_once('=') {
        if is(name.trim(), "appId") {
            return quoted(value).map(Key::AppId).ok_or_else(invalid);
        }
        if is(name.trim(), "id") {
            return quoted(value).map(Key::ObjectId).ok_or_else(invalid);
        }
        return Err(invalid());
    }
    quoted(inner).map(Key::ObjectId).ok_or_else(invalid)
}

fn allow(method: &Method, allowed: &[Method]) -> Result<(), GraphError> {
    if allowed.contains(method) {
        return Ok(());
    }
    let list: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    Err(GraphError::method_not_allowed(
        method.as_str(),
        &list.join(", "),
    ))
}

/// Routes `/v1.0/applications…` (`segments` starts with the `applications` segment).
pub(super) fn handle(
    core: &Arc<Core>,
    ctx: &Ctx,
    segments: &[String],
    body: &Bytes,
    tenant: usize,
    client_id: &str,
) -> Result<Reply, GraphError> {
    let (first, rest) = segments
        .split_first()
        .ok_or_else(|| GraphError::not_found_segment("applications"))?;
    let m = &ctx.method;
    let (key, rest) = if is(first, "applications") {
        match rest {
            [] => {
                if *m == Method::POST {
                    return Err(GraphError::not_implemented("POST /applications"));
                }
                allow(m, &[Method::GET, Method::POST])?;
                return list(core, ctx, tenant, client_id);
            }
            [id, tail @ ..] => (Key::ObjectId(id.clone()), tail),
        }
    } else {
        (parse_key(first)?, rest)
    };
    match rest {
        [] => {
            if *m == Method::PATCH || *m == Method::DELETE {
                return Err(GraphError::not_implemented(&format!(
                    "{m} /applications/{{id}}"
                )));
            }
            allow(m, &[Method::GET, Method::PATCH, Method::DELETE])?;
            get(core, ctx, tenant, client_id, &key)
        }
        [action] if is(action, "addPassword") => {
            allow(m, &[Method::POST])?;
            add_password(core, ctx, tenant, client_id, &key, body)
        }
        [action] if is(action, "removePassword") => {
            allow(m, &[Method::POST])?;
            remove_password(core, tenant, client_id, &key, body)
        }
        [nav, ..] if UNSERVED.iter().any(|n| is(nav, n)) => Err(GraphError::not_implemented(nav)),
        [other, ..] => Err(GraphError::not_found_segment(other)),
    }
}

/// The calling app, which must hold some `Application.*` permission (`write`: one that allows
/// writing).
fn caller<'a>(
    tenant: &'a TenantState,
    client_id: &str,
    write: bool,
) -> Result<&'a AppState, GraphError> {
    let app = tenant
        .app(client_id)
        .ok_or_else(GraphError::insufficient_privileges)?;
    let allowed = if write {
        app.can_write_application(client_id)
    } else {
        app.has_application_permission()
    };
    if allowed {
        Ok(app)
    } else {
        Err(GraphError::insufficient_privileges())
    }
}

/// The index of the application `key` names in the caller's tenant, checked against the
/// caller's permissions: 403 if it may not touch it at all, 404 if there is none, 403 if the
/// application is not one it may read (or write).
fn resolve(
    tenant: &TenantState,
    client_id: &str,
    key: &Key,
    write: bool,
) -> Result<usize, GraphError> {
    let me = caller(tenant, client_id, write)?;
    let idx = tenant
        .apps
        .iter()
        .position(|a| key.matches(a))
        .ok_or_else(|| GraphError::directory_object_not_found(key.text()))?;
    let target = tenant
        .apps
        .get(idx)
        .map(|a| a.client_id.as_str())
        .unwrap_or_default();
    let allowed = if write {
        me.can_write_application(target)
    } else {
        me.can_read_application(target)
    };
    if allowed {
        Ok(idx)
    } else {
        Err(GraphError::insufficient_privileges())
    }
}

/// `$select`, checked against the properties the sandbox knows.
fn selection(q: &Query) -> Result<Option<Vec<&'static str>>, GraphError> {
    odata::select(q, PROPERTIES, "microsoft.graph.application", true)
}

/// `@odata.context`: `…/$metadata#applications[(a,b)][/$entity]`.
fn context(ctx: &Ctx, select: Option<&[&str]>, entity: bool) -> String {
    let mut s = format!("{}#applications", ctx.metadata());
    if let Some(fields) = select {
        s.push('(');
        s.push_str(&fields.join(","));
        s.push(')');
    }
    if entity {
        s.push_str("/$entity");
    }
    s
}

fn password_json(p: &PasswordCredential, secret_text: Option<&str>) -> Value {
    json!({
        "customKeyIdentifier": null,
        "displayName": p.display_name,
        "endDateTime": graph_time(p.ends_at),
        "hint": p.hint(),
        "keyId": p.key_id,
        "secretText": secret_text,
        "startDateTime": graph_time(p.starts_at),
    })
}

/// A `keyCredential`; `key` (the certificate, base64 DER) only when asked for (keyCredential
/// resource: "Returned only on `$select` for a single object").
fn certificate_json(c: &AppCertificate, with_key: bool) -> Value {
    json!({
        "customKeyIdentifier": c.thumbprint(),
        "displayName": c.display_name,
        "endDateTime": graph_time(c.ends_at),
        "key": with_key.then(|| STANDARD.encode(&c.der)),
        "keyId": c.key_id,
        "startDateTime": graph_time(c.starts_at),
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
    })
}

/// The application resource, or the selected properties of it.
fn application_json(
    tenant: &TenantState,
    app: &AppState,
    select: Option<&[&str]>,
    with_key: bool,
) -> Map<String, Value> {
    let property = |name: &str| -> Value {
        match name {
            "id" => json!(app.object_id),
            "deletedDateTime" => Value::Null,
            "appId" => json!(app.client_id),
            "createdDateTime" => json!(graph_time(app.created)),
            "displayName" => json!(app.display_name),
            "identifierUris" | "tags" => json!([]),
            "keyCredentials" => Value::Array(
                app.certificates
                    .iter()
                    .map(|c| certificate_json(c, with_key))
                    .collect(),
            ),
            "passwordCredentials" => Value::Array(
                app.passwords
                    .iter()
                    .map(|p| password_json(p, None))
                    .collect(),
            ),
            "publisherDomain" => json!(tenant.domains.first()),
            "requiredResourceAccess" => json!([{
                "resourceAppId": GRAPH_APP_ID,
                "resourceAccess": [],
            }]),
            "signInAudience" => json!("AzureADMyOrg"),
            _ => Value::Null,
        }
    };
    let names: &[&str] = select.unwrap_or(PROPERTIES);
    names
        .iter()
        .map(|n| ((*n).to_owned(), property(n)))
        .collect()
}

/// `GET /applications/{id}` and `GET /applications(appId='…')`.
fn get(
    core: &Core,
    ctx: &Ctx,
    tenant: usize,
    client_id: &str,
    key: &Key,
) -> Result<Reply, GraphError> {
    odata::reject_unsupported(&ctx.query, &["$expand", "$filter", "$orderby", "$search"])?;
    let select = selection(&ctx.query)?;
    let st = lock(&core.state);
    let t = st
        .tenants
        .get(tenant)
        .ok_or_else(GraphError::insufficient_privileges)?;
    let idx = resolve(t, client_id, key, false)?;
    let app = t
        .apps
        .get(idx)
        .ok_or_else(|| GraphError::directory_object_not_found(key.text()))?;
    let with_key = select
        .as_ref()
        .is_some_and(|s| s.contains(&"keyCredentials"));
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(context(ctx, select.as_deref(), true)),
    );
    body.extend(application_json(t, app, select.as_deref(), with_key));
    Ok(Reply::json(StatusCode::OK, Value::Object(body)))
}

/// `$filter` on `appId` or `id` with `eq` and a quoted literal: the property and the value.
fn id_filter(q: &Query) -> Result<Option<(String, String)>, GraphError> {
    let Some(raw) = q.get("$filter") else {
        return Ok(None);
    };
    let words: Vec<&str> = raw.split_whitespace().collect();
    let unsupported = |property: &str| {
        GraphError::new(
            StatusCode::BAD_REQUEST,
            "Request_UnsupportedQuery",
            format!(
                "Unsupported or invalid query filter clause specified for property '{property}' of resource 'Application'."
            ),
        )
    };
    let [property, op, value] = words.as_slice() else {
        return Err(GraphError::bad_request(format!(
            "Invalid filter clause: the sandbox supports appId eq '…' and id eq '…' only, not '{raw}'."
        )));
    };
    if !(is(property, "appId") || is(property, "id")) {
        return Err(unsupported(property));
    }
    if !is(op, "eq") {
        return Err(unsupported(property));
    }
    let value = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .ok_or_else(|| {
            GraphError::bad_request(format!(
                "Invalid filter clause: '{value}' is not a quoted string literal."
            ))
        })?;
    Ok(Some(((*property).to_owned(), value.to_owned())))
}

/// `GET /applications[?$filter=appId eq '…'][&$select=…][&$top=n]`: the applications of the
/// caller's tenant it may read.
fn list(core: &Core, ctx: &Ctx, tenant: usize, client_id: &str) -> Result<Reply, GraphError> {
    odata::reject_unsupported(&ctx.query, &["$expand", "$orderby", "$search", "$skip"])?;
    let select = selection(&ctx.query)?;
    let filter = id_filter(&ctx.query)?;
    let top = match ctx.query.get("$top") {
        Some(_) => odata::top(&ctx.query)?,
        // Directory lists default to 100 per page.
        None => 100,
    };
    let st = lock(&core.state);
    let t = st
        .tenants
        .get(tenant)
        .ok_or_else(GraphError::insufficient_privileges)?;
    let me = caller(t, client_id, false)?;
    let value: Vec<Value> = t
        .apps
        .iter()
        .filter(|a| me.can_read_application(&a.client_id))
        .filter(|a| match &filter {
            None => true,
            Some((property, v)) if is(property, "appId") => a.client_id.eq_ignore_ascii_case(v),
            Some((_, v)) => a.object_id.eq_ignore_ascii_case(v),
        })
        .take(top)
        .map(|a| Value::Object(application_json(t, a, select.as_deref(), false)))
        .collect();
    Ok(Reply::json(
        StatusCode::OK,
        json!({
            "@odata.context": context(ctx, select.as_deref(), false),
            "value": value,
        }),
    ))
}

/// A JSON object body; an empty body counts as `{}`.
fn json_body(body: &[u8]) -> Result<Map<String, Value>, GraphError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(GraphError::directory_bad_request(
            "Invalid request body: a JSON object was expected.",
        )),
    }
}

fn date_field(map: &Map<String, Value>, name: &str) -> Result<Option<OffsetDateTime>, GraphError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => OffsetDateTime::parse(s, &Rfc3339).map(Some).map_err(|_| {
            GraphError::directory_bad_request(format!(
                "Invalid value specified for property '{name}' of resource 'PasswordCredential'."
            ))
        }),
        Some(_) => Err(GraphError::directory_bad_request(format!(
            "Invalid value specified for property '{name}' of resource 'PasswordCredential'."
        ))),
    }
}

/// `startDateTime` plus two years, the documented default `endDateTime`.
fn two_years_after(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_year(t.year() + 2)
        .or_else(|_| (t + time::Duration::days(1)).replace_year(t.year() + 2))
        .unwrap_or(t + time::Duration::days(730))
}

/// `POST …/addPassword` → 200 with the new credential and its `secretText`. It works at the
/// token endpoint after the propagation delay.
fn add_password(
    core: &Core,
    ctx: &Ctx,
    tenant: usize,
    client_id: &str,
    key: &Key,
    body: &[u8],
) -> Result<Reply, GraphError> {
    let map = json_body(body)?;
    let credential = match map.get("passwordCredential") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(c)) => c.clone(),
        Some(_) => {
            return Err(GraphError::directory_bad_request(
                "Invalid value specified for property 'passwordCredential'.",
            ));
        }
    };
    for readonly in ["secretText", "keyId", "hint", "customKeyIdentifier"] {
        if credential.get(readonly).is_some_and(|v| !v.is_null()) {
            return Err(GraphError::directory_bad_request(format!(
                "Property '{readonly}' is read-only and is generated by the service."
            )));
        }
    }
    let display_name = match credential.get("displayName") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(GraphError::directory_bad_request(
                "Invalid value specified for property 'displayName' of resource 'PasswordCredential'.",
            ));
        }
    };
    let now = core.now();
    let starts_at = date_field(&credential, "startDateTime")?.unwrap_or(now);
    let ends_at =
        date_field(&credential, "endDateTime")?.unwrap_or_else(|| two_years_after(starts_at));
    if ends_at <= starts_at {
        return Err(GraphError::directory_bad_request(
            "Invalid value specified for property 'endDateTime' of resource 'PasswordCredential': it must be later than startDateTime.",
        ));
    }
    let usable_from = core.password_usable_from();
    let secret = new_secret_text();
    let password = PasswordCredential {
        key_id: crate::ids::new_guid(),
        display_name,
        value: secret.clone(),
        starts_at,
        ends_at,
        usable_from,
    };
    let mut st = lock(&core.state);
    let t = st
        .tenants
        .get_mut(tenant)
        .ok_or_else(GraphError::insufficient_privileges)?;
    let idx = resolve(t, client_id, key, true)?;
    let app = t
        .apps
        .get_mut(idx)
        .ok_or_else(|| GraphError::directory_object_not_found(key.text()))?;
    let mut reply = Map::new();
    reply.insert(
        "@odata.context".into(),
        json!(format!(
            "{}#microsoft.graph.passwordCredential",
            ctx.metadata()
        )),
    );
    if let Value::Object(fields) = password_json(&password, Some(&secret)) {
        reply.extend(fields);
    }
    app.passwords.push(password);
    Ok(Reply::json(StatusCode::OK, Value::Object(reply)))
}

/// `POST …/removePassword` `{"keyId":"…"}` → 204.
///
/// Microsoft documents no error for a key id the application does not have; the sandbox
/// answers `404 Request_ResourceNotFound`, Graph's code for a missing directory object
/// (docs/graph.md section 10) [?].
fn remove_password(
    core: &Core,
    tenant: usize,
    client_id: &str,
    key: &Key,
    body: &[u8],
) -> Result<Reply, GraphError> {
    let map = json_body(body)?;
    let key_id = match map.get("keyId") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => {
            return Err(GraphError::directory_bad_request(
                "The request body must contain the required parameter 'keyId'.",
            ));
        }
        Some(_) => String::new(),
    };
    if uuid::Uuid::parse_str(&key_id).is_err() {
        return Err(GraphError::directory_bad_request(format!(
            "Invalid value specified for property 'keyId': '{key_id}' is not a GUID."
        )));
    }
    let mut st = lock(&core.state);
    let t = st
        .tenants
        .get_mut(tenant)
        .ok_or_else(GraphError::insufficient_privileges)?;
    let idx = resolve(t, client_id, key, true)?;
    let app = t
        .apps
        .get_mut(idx)
        .ok_or_else(|| GraphError::directory_object_not_found(key.text()))?;
    let before = app.passwords.len();
    app.passwords
        .retain(|p| !p.key_id.eq_ignore_ascii_case(&key_id));
    if app.passwords.len() == before {
        return Err(GraphError::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!("No password credential found with keyId '{key_id}'."),
        ));
    }
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse() {
        assert!(matches!(
            parse_key("applications(appId='abc')"),
            Ok(Key::AppId(k)) if k == "abc"
        ));
        assert!(matches!(
            parse_key("Applications(APPID = 'abc')"),
            Ok(Key::AppId(k)) if k == "abc"
        ));
        assert!(matches!(
            parse_key("applications('def')"),
            Ok(Key::ObjectId(k)) if k == "def"
        ));
        assert!(parse_key("applications(appId=abc)").is_err());
        assert!(parse_key("applications(name='x')").is_err());
        assert!(is_applications_segment("applications(appId='x')"));
        assert!(!is_applications_segment("apps"));
    }

    #[test]
    fn two_years_keeps_the_day_except_on_a_leap_day() {
        let t = time::macros::datetime!(2026-11-23 10:00 UTC);
        assert_eq!(
            two_years_after(t),
            time::macros::datetime!(2028-11-23 10:00 UTC)
        );
        let leap = time::macros::datetime!(2028-02-29 10:00 UTC);
        assert_eq!(
            two_years_after(leap),
            time::macros::datetime!(2030-03-01 10:00 UTC)
        );
    }

    #[test]
    fn filters_parse() {
        let q = Query::parse(Some("$filter=appId%20eq%20'abc'"));
        assert_eq!(
            id_filter(&q).unwrap(),
            Some(("appId".to_owned(), "abc".to_owned()))
        );
        let q = Query::parse(Some("$filter=displayName%20eq%20'x'"));
        assert_eq!(id_filter(&q).unwrap_err().code, "Request_UnsupportedQuery");
        let q = Query::parse(Some("$filter=appId%20eq%20abc"));
        assert!(id_filter(&q).is_err());
    }
}
