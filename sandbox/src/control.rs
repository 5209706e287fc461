//! The HTTP control API under `/_sandbox/` (JSON, no auth), for the binary and for tests in
//! other languages. Every endpoint calls the same `Core` methods as [`crate::Sandbox`].
//!
//! | endpoint | body / answer |
//! |---|---|
//! | `POST /_sandbox/mailboxes/{address}/messages` | `{folder?, subject, from?, attachments?, size?, received?, isRead?, bodyText?, internetMessageId?}` → 201 `MessageInfo` |
//! | `GET /_sandbox/mailboxes/{address}/messages[?folder=Inbox/X]` | `[MessageInfo]` |
//! | `GET /_sandbox/mailboxes/{address}/messages/{id}/mime` | the raw MIME |
//! | `POST /_sandbox/mailboxes/{address}/folders` | `{path}` |
//! | `POST /_sandbox/mailboxes/{address}/expire-delta` | |
//! | `GET`/`DELETE /_sandbox/requests` | the request log / clear it |
//! | `GET /_sandbox/stats` | `Stats` |
//! | `POST`/`DELETE /_sandbox/faults` | `{kind: status|throttle|dropConnection|truncateBody|delay, status?, retryAfter?, ms?, method?, pathContains?, mailbox?, times?}` / clear |
//! | `POST /_sandbox/latency` | `{ms, mailbox?}` |
//! | `POST /_sandbox/throttle` | `{retryAfter?, concurrency?, budget?: {requests, windowSeconds} or null}` |
//! | `GET /_sandbox/clock`, `POST /_sandbox/clock/advance` | `{now}` / `{seconds}` |
//! | `POST /_sandbox/apps/{client_id}/permissions` | `{permissions: [...]}` |
//! | `POST /_sandbox/apps/{client_id}/scope` | `{only: [...] or null}` |
//! | `POST /_sandbox/token-lifetime` | `{seconds}` |
//! | `GET /_sandbox/apps/{client_id}` | `{clientId, objectId, passwords: [PasswordInfo], certificates: [CertificateInfo]}` |
//! | `POST /_sandbox/apps/{client_id}/passwords` | `{secretText, keyId?, displayName?, startDateTime?, endDateTime?}` → `PasswordInfo` (propagation delay applies) |
//! | `DELETE /_sandbox/apps/{client_id}/passwords/{key_id}` | |
//! | `POST /_sandbox/apps/{client_id}/passwords/{key_id}/expiry` | `{endDateTime}` |
//! | `POST /_sandbox/password-propagation` | `{seconds}` |
//! | `POST /_sandbox/apps/{client_id}/certificates` | `{pem, keyId?, displayName?, startDateTime?, endDateTime?}` → `{keyId}` |
//! | `DELETE /_sandbox/apps/{client_id}/certificates/{key_id}` | |
//! | `POST /_sandbox/apps/{client_id}/certificates/{key_id}/expiry` | `{endDateTime}` |
//! | `GET`/`DELETE /_sandbox/sent-mail` | every `sendMail` and sent draft `[SentMail]` / clear |
//! | `POST`/`DELETE /_sandbox/bouncing` | `{address}`: mail to it bounces / nothing bounces |
//! | `POST /_sandbox/max-message-size` | `{bytes}` |
//! | `POST /_sandbox/outbox` | `{hold}`: sent drafts wait in the Outbox while true |
//! | `POST /_sandbox/outbox/release` | sends what waits → `{released}` |
//! | `GET /_sandbox/subscriptions` | `[SubscriptionInfo]` (every app's live subscriptions) |
//! | `GET`/`DELETE /_sandbox/subscriptions/deliveries` | every delivery attempt `[{kind, url, subscriptionIds, attempt, time, durationMs, status, error, delivered, payload}]` / clear |
//! | `POST /_sandbox/subscriptions/chaos` | `{delayMs?, delayMaxMs?, delayNext?: {n, ms}, dropNext?, duplicateNext?, reorderNext?, dropProbability?, duplicateProbability?, clear?}` |
//! | `POST /_sandbox/subscriptions/config` | `{maxMinutes?, timeoutMs?, validationTimeoutMs?, retryBaseMs?, retryTotalMs?, maxBatch?, allowHttp?, reauthorizationMarginSeconds? (null: off)}` → the config |
//! | `POST /_sandbox/subscriptions/{id}/lifecycle` | `{event: reauthorizationRequired|subscriptionRemoved|missed}` |
//! | `POST /_sandbox/delegated/interactive` | `{user?: address or null, outcome?: approve|cancel|consentRequired}`: who signs in at `/authorize` and what they do |
//! | `GET /_sandbox/delegated/device-codes` | the pending user codes `[string]` |
//! | `POST /_sandbox/delegated/device-codes/{user_code}/approve` | `{user}` (404 if it cannot be approved) |
//! | `POST /_sandbox/delegated/device-codes/{user_code}/decline` | (404 if it cannot be declined) |
//! | `POST /_sandbox/delegated/config` | `{refreshInactivitySeconds?, refreshReuse?, deviceCodeLifetimeSeconds?, deviceCodeIntervalSeconds?}` |
//! | `GET /_sandbox/delegated/stats` | `DelegatedStats` |
//! | `POST /_sandbox/users/{address}/revoke-refresh-tokens` | an admin revokes the user's refresh tokens |
//! | `POST /_sandbox/users/{address}/change-password` | revokes public clients' refresh tokens |
//! | `POST /_sandbox/users/{address}/require-interaction` | `{kind: mfa|signInFrequency|blocked or null}` |
//! | `DELETE /_sandbox/apps/{client_id}/consents/{user}` | withdraws the user's consent to the app |
//! | `POST /_sandbox/mailboxes/{address}/shares` | `{user, folder?, write?}`: share the mailbox (or a folder) with a user |
//! | `DELETE /_sandbox/mailboxes/{address}/shares/{user}` | removes the user's shares |

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use time::OffsetDateTime;

use crate::core::{Core, lock};
use crate::credentials::AppCertificate;
use crate::delegated::{Interaction, InteractiveOutcome};
use crate::faults::{FaultKind, FaultRule};
use crate::mime::CHUNK_SIZE;
use crate::notify::{DeliveryConfig, DeliveryKind, DeliveryRecord, LifecycleEvent};
use crate::requests::RequestRecordJson;
use crate::world::{AppSecret, NewMessage};

type Shared = State<Arc<Core>>;

pub(crate) fn router() -> Router<Arc<Core>> {
    Router::new()
        .route(
            "/mailboxes/{address}/messages",
            post(add_message).get(list_messages),
        )
        .route("/mailboxes/{address}/messages/{id}/mime", get(mime))
        .route("/mailboxes/{address}/folders", post(add_folder))
        .route("/mailboxes/{address}/expire-delta", post(expire_delta))
        .route("/requests", get(requests).delete(clear_requests))
        .route("/stats", get(stats))
        .route("/faults", post(add_fault).delete(clear_faults))
        .route("/latency", post(latency))
        .route("/throttle", post(throttle))
        .route("/clock", get(clock))
        .route("/clock/advance", post(advance_clock))
        .route("/apps/{client_id}/permissions", post(app_permissions))
        .route("/apps/{client_id}/scope", post(app_scope))
        .route("/token-lifetime", post(token_lifetime))
        .route("/apps/{client_id}", get(app_credentials))
        .route("/apps/{client_id}/passwords", post(add_password))
        .route(
            "/apps/{client_id}/passwords/{key_id}",
            axum::routing::delete(remove_password),
        )
        .route(
            "/apps/{client_id}/passwords/{key_id}/expiry",
            post(password_expiry),
        )
        .route("/password-propagation", post(password_propagation))
        .route("/apps/{client_id}/certificates", post(add_certificate))
        .route(
            "/apps/{client_id}/certificates/{key_id}",
            axum::routing::delete(remove_certificate),
        )
        .route(
            "/apps/{client_id}/certificates/{key_id}/expiry",
            post(certificate_expiry),
        )
        .route("/sent-mail", get(sent_mail).delete(clear_sent_mail))
        .route("/bouncing", post(set_bouncing).delete(clear_bouncing))
        .route("/max-message-size", post(max_message_size))
        .route("/outbox", post(hold_outbox))
        .route("/outbox/release", post(release_outbox))
        .route("/subscriptions", get(subscriptions))
        .route(
            "/subscriptions/deliveries",
            get(deliveries).delete(clear_deliveries),
        )
        .route("/subscriptions/chaos", post(chaos))
        .route("/subscriptions/config", post(delivery_config))
        .route("/subscriptions/{id}/lifecycle", post(lifecycle))
        .route("/delegated/interactive", post(interactive))
        .route("/delegated/device-codes", get(device_codes))
        .route(
            "/delegated/device-codes/{user_code}/approve",
            post(approve_device_code),
        )
        .route(
            "/delegated/device-codes/{user_code}/decline",
            post(decline_device_code),
        )
        .route("/delegated/config", post(delegated_config))
        .route("/delegated/stats", get(delegated_stats))
        .route(
            "/users/{address}/revoke-refresh-tokens",
            post(revoke_refresh_tokens),
        )
        .route("/users/{address}/change-password", post(change_password))
        .route(
            "/users/{address}/require-interaction",
            post(require_interaction),
        )
        .route(
            "/apps/{client_id}/consents/{user}",
            axum::routing::delete(withdraw_consent),
        )
        .route("/mailboxes/{address}/shares", post(share_mailbox))
        .route(
            "/mailboxes/{address}/shares/{user}",
            axum::routing::delete(unshare_mailbox),
        )
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such control endpoint; see the crate docs",
            )
        })
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, String> {
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

fn bad(message: String) -> Response {
    error(StatusCode::BAD_REQUEST, &message)
}

fn ok() -> Response {
    (StatusCode::OK, axum::Json(json!({ "ok": true }))).into_response()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FromField {
    Address(String),
    Full {
        name: Option<String>,
        address: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttachmentBody {
    filename: String,
    #[serde(default = "octet_stream")]
    content_type: String,
    size: usize,
}

fn octet_stream() -> String {
    "application/octet-stream".to_owned()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddMessageBody {
    #[serde(default = "inbox")]
    folder: String,
    subject: String,
    from: Option<FromField>,
    #[serde(default)]
    attachments: Vec<AttachmentBody>,
    /// Generate the MIME on the fly at about this many bytes.
    size: Option<u64>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    received: Option<OffsetDateTime>,
    is_read: Option<bool>,
    body_text: Option<String>,
    internet_message_id: Option<String>,
}

fn inbox() -> String {
    "Inbox".to_owned()
}

/// `POST /_sandbox/mailboxes/{address}/messages` → the new message's `MessageInfo`.
async fn add_message(State(core): Shared, Path(address): Path<String>, body: Bytes) -> Response {
    let b: AddMessageBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    let mut m = match b.size {
        Some(size) => NewMessage::generated(&b.subject, size),
        None => NewMessage::new(&b.subject),
    };
    match b.from {
        Some(FromField::Address(a)) => m = m.from(&a, &a),
        Some(FromField::Full { name, address }) => {
            m = m.from(name.as_deref().unwrap_or(&address), &address);
        }
        None => {}
    }
    for a in &b.attachments {
        m = m.attachment(&a.filename, &a.content_type, a.size);
    }
    if let Some(t) = b.received {
        m = m.received(t);
    }
    if let Some(r) = b.is_read {
        m = m.is_read(r);
    }
    if let Some(t) = &b.body_text {
        m = m.body_text(t);
    }
    if let Some(id) = &b.internet_message_id {
        m = m.internet_message_id(id);
    }
    match core.add_message(&address, &b.folder, &m) {
        Some(info) => (StatusCode::CREATED, axum::Json(info)).into_response(),
        None => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the message could not be added",
        ),
    }
}

#[derive(Deserialize)]
struct FolderQuery {
    folder: Option<String>,
}

/// `GET /_sandbox/mailboxes/{address}/messages[?folder=Inbox/Invoices]`.
async fn list_messages(
    State(core): Shared,
    Path(address): Path<String>,
    Query(q): Query<FolderQuery>,
) -> Response {
    axum::Json(core.messages(&address, q.folder.as_deref())).into_response()
}

/// `GET /_sandbox/mailboxes/{address}/messages/{immutable id}/mime` → the raw MIME.
async fn mime(State(core): Shared, Path((address, id)): Path<(String, String)>) -> Response {
    let Some(template) = core.mime(&address, &id) else {
        return error(StatusCode::NOT_FOUND, "no such message");
    };
    let len = template.len();
    let reader = template.reader();
    let stream = futures::stream::unfold(reader, |mut r| async move {
        r.next_chunk(CHUNK_SIZE)
            .map(|c| (Ok::<_, std::io::Error>(c), r))
    });
    (
        [
            (header::CONTENT_TYPE, "message/rfc822".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

#[derive(Deserialize)]
struct FolderBody {
    path: String,
}

/// `POST /_sandbox/mailboxes/{address}/folders` `{"path":"Inbox/A/B"}`.
async fn add_folder(State(core): Shared, Path(address): Path<String>, body: Bytes) -> Response {
    match parse::<FolderBody>(&body) {
        Ok(b) => {
            core.add_folder(&address, &b.path);
            ok()
        }
        Err(e) => bad(e),
    }
}

/// `POST /_sandbox/mailboxes/{address}/expire-delta`.
async fn expire_delta(State(core): Shared, Path(address): Path<String>) -> Response {
    if core.expire_delta_tokens(&address) {
        ok()
    } else {
        error(StatusCode::NOT_FOUND, "no such mailbox")
    }
}

/// `GET /_sandbox/requests`.
async fn requests(State(core): Shared) -> Response {
    let records = core.requests();
    let json: Vec<RequestRecordJson<'_>> = records
        .iter()
        .map(|r| RequestRecordJson::new(r, core.started))
        .collect();
    axum::Json(json).into_response()
}

/// `DELETE /_sandbox/requests`.
async fn clear_requests(State(core): Shared) -> Response {
    core.clear_requests();
    ok()
}

/// `GET /_sandbox/stats`.
async fn stats(State(core): Shared) -> Response {
    axum::Json(core.stats()).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FaultBody {
    /// status | throttle | dropConnection | truncateBody | delay
    kind: String,
    status: Option<u16>,
    retry_after: Option<f64>,
    ms: Option<u64>,
    method: Option<String>,
    path_contains: Option<String>,
    mailbox: Option<String>,
    times: Option<u32>,
}

/// `POST /_sandbox/faults` e.g. `{"kind":"status","status":503,"retryAfter":1,"pathContains":"/$value","times":2}`.
async fn add_fault(State(core): Shared, body: Bytes) -> Response {
    let b: FaultBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    let kind = match b.kind.to_ascii_lowercase().as_str() {
        "status" => FaultKind::Status(b.status.unwrap_or(503), b.retry_after),
        "throttle" => FaultKind::Throttle(b.retry_after.unwrap_or(1.0)),
        "dropconnection" => FaultKind::DropConnection,
        "truncatebody" => FaultKind::TruncateBody,
        "delay" => FaultKind::Delay(Duration::from_millis(b.ms.unwrap_or(1000))),
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "unknown fault kind '{other}'; use status, throttle, dropConnection, truncateBody or delay"
                ),
            );
        }
    };
    let mut rule = FaultRule::new(kind);
    if let Some(m) = &b.method {
        rule = rule.method(m);
    }
    if let Some(p) = &b.path_contains {
        rule = rule.path_contains(p);
    }
    if let Some(m) = &b.mailbox {
        rule = rule.mailbox(m);
    }
    if let Some(n) = b.times {
        rule = rule.times(n);
    }
    core.inject(rule);
    ok()
}

/// `DELETE /_sandbox/faults`.
async fn clear_faults(State(core): Shared) -> Response {
    core.clear_faults();
    ok()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyBody {
    ms: u64,
    mailbox: Option<String>,
}

/// `POST /_sandbox/latency` `{"ms":50}` or `{"ms":50,"mailbox":"a@contoso.com"}`.
async fn latency(State(core): Shared, body: Bytes) -> Response {
    match parse::<LatencyBody>(&body) {
        Ok(b) => {
            let d = Duration::from_millis(b.ms);
            match b.mailbox {
                Some(m) => core.set_mailbox_latency(&m, d),
                None => core.set_latency(d),
            }
            ok()
        }
        Err(e) => bad(e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BudgetBody {
    requests: u32,
    window_seconds: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ThrottleBody {
    retry_after: Option<f64>,
    concurrency: Option<usize>,
    /// A budget, or `null` to disable it.
    #[serde(default, deserialize_with = "double_option")]
    budget: Option<Option<BudgetBody>>,
}

fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /_sandbox/throttle` `{"retryAfter":0.05,"concurrency":4,"budget":{"requests":100,"windowSeconds":60}}`.
async fn throttle(State(core): Shared, body: Bytes) -> Response {
    let b: ThrottleBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    if let Some(s) = b.retry_after {
        core.set_throttle_retry_after(s);
    }
    if let Some(n) = b.concurrency {
        core.set_concurrency_limit(n);
    }
    if let Some(budget) = b.budget {
        let budget = match budget {
            Some(b) => match Duration::try_from_secs_f64(b.window_seconds) {
                Ok(w) => Some((b.requests, w)),
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "windowSeconds must be a positive number",
                    );
                }
            },
            None => None,
        };
        core.set_request_budget(budget);
    }
    ok()
}

/// `GET /_sandbox/clock` → `{"now":"…"}`.
async fn clock(State(core): Shared) -> Response {
    let now = core
        .now()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    axum::Json(json!({ "now": now })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceBody {
    seconds: f64,
}

/// `POST /_sandbox/clock/advance` `{"seconds":3600}`.
async fn advance_clock(State(core): Shared, body: Bytes) -> Response {
    match parse::<AdvanceBody>(&body) {
        Ok(b) => match Duration::try_from_secs_f64(b.seconds) {
            Ok(d) => {
                core.advance_clock(d);
                clock(State(core)).await
            }
            Err(_) => error(
                StatusCode::BAD_REQUEST,
                "seconds must be a non-negative number",
            ),
        },
        Err(e) => bad(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PermissionsBody {
    permissions: Vec<String>,
}

/// `POST /_sandbox/apps/{client_id}/permissions` `{"permissions":["Mail.Read"]}`.
async fn app_permissions(
    State(core): Shared,
    Path(client_id): Path<String>,
    body: Bytes,
) -> Response {
    match parse::<PermissionsBody>(&body) {
        Ok(b) if core.set_app_permissions(&client_id, &b.permissions) => ok(),
        Ok(_) => error(StatusCode::NOT_FOUND, "no such app"),
        Err(e) => bad(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeBody {
    only: Option<Vec<String>>,
}

/// `POST /_sandbox/apps/{client_id}/scope` `{"only":["a@contoso.com"]}` or `{"only":null}`.
async fn app_scope(State(core): Shared, Path(client_id): Path<String>, body: Bytes) -> Response {
    match parse::<ScopeBody>(&body) {
        Ok(b) if core.set_app_scope(&client_id, b.only.as_deref()) => ok(),
        Ok(_) => error(StatusCode::NOT_FOUND, "no such app"),
        Err(e) => bad(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LifetimeBody {
    seconds: u64,
}

/// `POST /_sandbox/token-lifetime` `{"seconds":60}`.
async fn token_lifetime(State(core): Shared, body: Bytes) -> Response {
    match parse::<LifetimeBody>(&body) {
        Ok(b) => {
            core.set_token_lifetime(b.seconds);
            ok()
        }
        Err(e) => bad(e),
    }
}

/// `GET /_sandbox/apps/{client_id}` → the app's object id and credentials (never secret values).
async fn app_credentials(State(core): Shared, Path(client_id): Path<String>) -> Response {
    let Some(object_id) = core.application_object_id(&client_id) else {
        return error(StatusCode::NOT_FOUND, "no such app");
    };
    axum::Json(json!({
        "clientId": client_id,
        "objectId": object_id,
        "passwords": core.application_passwords(&client_id),
        "certificates": core.application_certificates(&client_id),
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PasswordBody {
    secret_text: String,
    key_id: Option<String>,
    display_name: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    start_date_time: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    end_date_time: Option<OffsetDateTime>,
}

/// `POST /_sandbox/apps/{client_id}/passwords` `{"secretText":"…","endDateTime":"…"}` → the
/// new `PasswordInfo`.
async fn add_password(State(core): Shared, Path(client_id): Path<String>, body: Bytes) -> Response {
    let b: PasswordBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    let mut secret = AppSecret::new(&b.secret_text).starts_at(core.now());
    if let Some(id) = &b.key_id {
        secret = secret.key_id(id);
    }
    if let Some(name) = &b.display_name {
        secret = secret.display_name(name);
    }
    if let Some(t) = b.start_date_time {
        secret = secret.starts_at(t);
    }
    if let Some(t) = b.end_date_time {
        secret = secret.expires_at(t);
    }
    if !core.add_secret(&client_id, &secret) {
        return error(StatusCode::NOT_FOUND, "no such app");
    }
    let info = core
        .application_passwords(&client_id)
        .into_iter()
        .find(|p| p.key_id == secret.key_id);
    (StatusCode::CREATED, axum::Json(info)).into_response()
}

/// `DELETE /_sandbox/apps/{client_id}/passwords/{key_id}`.
async fn remove_password(
    State(core): Shared,
    Path((client_id, key_id)): Path<(String, String)>,
) -> Response {
    if core.remove_password(&client_id, &key_id) {
        ok()
    } else {
        error(StatusCode::NOT_FOUND, "no such app or password")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExpiryBody {
    #[serde(with = "time::serde::rfc3339")]
    end_date_time: OffsetDateTime,
}

/// `POST /_sandbox/apps/{client_id}/passwords/{key_id}/expiry` `{"endDateTime":"…"}`.
async fn password_expiry(
    State(core): Shared,
    Path((client_id, key_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    match parse::<ExpiryBody>(&body) {
        Ok(b) if core.set_password_expiry(&client_id, &key_id, b.end_date_time) => ok(),
        Ok(_) => error(StatusCode::NOT_FOUND, "no such app or password"),
        Err(e) => bad(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecondsBody {
    seconds: f64,
}

/// `POST /_sandbox/password-propagation` `{"seconds":30}`.
async fn password_propagation(State(core): Shared, body: Bytes) -> Response {
    match parse::<SecondsBody>(&body) {
        Ok(b) => match Duration::try_from_secs_f64(b.seconds) {
            Ok(d) => {
                core.set_password_propagation_delay(d);
                ok()
            }
            Err(_) => error(
                StatusCode::BAD_REQUEST,
                "seconds must be a non-negative number",
            ),
        },
        Err(e) => bad(e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CertificateBody {
    pem: String,
    key_id: Option<String>,
    display_name: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    start_date_time: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    end_date_time: Option<OffsetDateTime>,
}

/// `POST /_sandbox/apps/{client_id}/certificates` `{"pem":"-----BEGIN CERTIFICATE-----…"}` →
/// `{"keyId":"…"}`.
async fn add_certificate(
    State(core): Shared,
    Path(client_id): Path<String>,
    body: Bytes,
) -> Response {
    let b: CertificateBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    let mut c = match AppCertificate::from_pem(&b.pem) {
        Ok(c) => c,
        Err(e) => return bad(e.to_string()),
    };
    if let Some(id) = &b.key_id {
        c = c.key_id(id);
    }
    if let Some(name) = &b.display_name {
        c = c.display_name(name);
    }
    if let Some(t) = b.start_date_time {
        c = c.starts_at(t);
    }
    if let Some(t) = b.end_date_time {
        c = c.ends_at(t);
    }
    match core.add_certificate(&client_id, &c) {
        Ok(key_id) => (StatusCode::CREATED, axum::Json(json!({ "keyId": key_id }))).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, &e.to_string()),
    }
}

/// `DELETE /_sandbox/apps/{client_id}/certificates/{key_id}`.
async fn remove_certificate(
    State(core): Shared,
    Path((client_id, key_id)): Path<(String, String)>,
) -> Response {
    if core.remove_certificate(&client_id, &key_id) {
        ok()
    } else {
        error(StatusCode::NOT_FOUND, "no such app or certificate")
    }
}

/// `POST /_sandbox/apps/{client_id}/certificates/{key_id}/expiry` `{"endDateTime":"…"}`.
async fn certificate_expiry(
    State(core): Shared,
    Path((client_id, key_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    match parse::<ExpiryBody>(&body) {
        Ok(b) if core.set_certificate_expiry(&client_id, &key_id, b.end_date_time) => ok(),
        Ok(_) => error(StatusCode::NOT_FOUND, "no such app or certificate"),
        Err(e) => bad(e),
    }
}

/// `GET /_sandbox/sent-mail`.
async fn sent_mail(State(core): Shared) -> Response {
    axum::Json(core.sent_mail()).into_response()
}

/// `DELETE /_sandbox/sent-mail`.
async fn clear_sent_mail(State(core): Shared) -> Response {
    core.clear_sent_mail();
    ok()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddressBody {
    address: String,
}

/// `POST /_sandbox/bouncing` `{"address":"nobody@fabrikam.com"}`.
async fn set_bouncing(State(core): Shared, body: Bytes) -> Response {
    match parse::<AddressBody>(&body) {
        Ok(b) => {
            core.set_bouncing(&b.address);
            ok()
        }
        Err(e) => bad(e),
    }
}

/// `DELETE /_sandbox/bouncing`.
async fn clear_bouncing(State(core): Shared) -> Response {
    core.clear_bouncing();
    ok()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BytesBody {
    bytes: u64,
}

/// `POST /_sandbox/max-message-size` `{"bytes":36700160}`.
async fn max_message_size(State(core): Shared, body: Bytes) -> Response {
    match parse::<BytesBody>(&body) {
        Ok(b) => {
            core.set_max_message_size(b.bytes);
            ok()
        }
        Err(e) => bad(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldBody {
    hold: bool,
}

/// `POST /_sandbox/outbox` `{"hold":true}`.
async fn hold_outbox(State(core): Shared, body: Bytes) -> Response {
    match parse::<HoldBody>(&body) {
        Ok(b) => {
            core.hold_outbox(b.hold);
            ok()
        }
        Err(e) => bad(e),
    }
}

/// `POST /_sandbox/outbox/release` → `{"released": n}`.
async fn release_outbox(State(core): Shared) -> Response {
    axum::Json(json!({ "released": core.release_outbox() })).into_response()
}

/// `GET /_sandbox/subscriptions`.
async fn subscriptions(State(core): Shared) -> Response {
    axum::Json(core.subscriptions()).into_response()
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryRecordJson<'a> {
    kind: DeliveryKind,
    url: &'a str,
    subscription_ids: &'a [String],
    attempt: u32,
    #[serde(with = "time::serde::rfc3339")]
    time: OffsetDateTime,
    duration_ms: f64,
    status: Option<u16>,
    error: Option<&'a str>,
    delivered: bool,
    payload: &'a serde_json::Value,
}

impl<'a> From<&'a DeliveryRecord> for DeliveryRecordJson<'a> {
    fn from(r: &'a DeliveryRecord) -> Self {
        Self {
            kind: r.kind,
            url: &r.url,
            subscription_ids: &r.subscription_ids,
            attempt: r.attempt,
            time: r.time,
            duration_ms: r.duration.as_secs_f64() * 1000.0,
            status: r.status,
            error: r.error.as_deref(),
            delivered: r.delivered,
            payload: &r.payload,
        }
    }
}

/// `GET /_sandbox/subscriptions/deliveries`.
async fn deliveries(State(core): Shared) -> Response {
    let records = core.notify.deliveries();
    let json: Vec<DeliveryRecordJson<'_>> = records.iter().map(DeliveryRecordJson::from).collect();
    axum::Json(json).into_response()
}

/// `DELETE /_sandbox/subscriptions/deliveries`.
async fn clear_deliveries(State(core): Shared) -> Response {
    core.notify.clear_deliveries();
    ok()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DelayNextBody {
    n: usize,
    ms: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChaosBody {
    delay_ms: Option<u64>,
    delay_max_ms: Option<u64>,
    delay_next: Option<DelayNextBody>,
    drop_next: Option<usize>,
    duplicate_next: Option<usize>,
    reorder_next: Option<usize>,
    drop_probability: Option<f64>,
    duplicate_probability: Option<f64>,
    /// Reset everything first (and release held notifications).
    #[serde(default)]
    clear: bool,
}

/// `POST /_sandbox/subscriptions/chaos` e.g. `{"dropNext":1}`, `{"delayMs":100,"delayMaxMs":500}`.
async fn chaos(State(core): Shared, body: Bytes) -> Response {
    let b: ChaosBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    let n = &core.notify;
    if b.clear {
        n.clear_chaos();
    }
    if let Some(min) = b.delay_ms {
        let max = b.delay_max_ms.unwrap_or(min);
        n.set_delay(Duration::from_millis(min), Duration::from_millis(max));
    }
    if let Some(d) = b.delay_next {
        n.delay_next(d.n, Duration::from_millis(d.ms));
    }
    if let Some(k) = b.drop_next {
        n.drop_next(k);
    }
    if let Some(k) = b.duplicate_next {
        n.duplicate_next(k);
    }
    if let Some(k) = b.reorder_next {
        n.reorder_next(k);
    }
    n.set_probabilities(b.drop_probability, b.duplicate_probability);
    ok()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigBody {
    max_minutes: Option<u32>,
    timeout_ms: Option<u64>,
    validation_timeout_ms: Option<u64>,
    retry_base_ms: Option<u64>,
    retry_total_ms: Option<u64>,
    max_batch: Option<usize>,
    allow_http: Option<bool>,
    /// Seconds, or `null` to turn the automatic `reauthorizationRequired` off.
    #[serde(default, deserialize_with = "double_option")]
    reauthorization_margin_seconds: Option<Option<u64>>,
}

fn config_json(c: &DeliveryConfig) -> serde_json::Value {
    json!({
        "maxMinutes": c.max_subscription_minutes,
        "timeoutMs": c.timeout.as_millis(),
        "validationTimeoutMs": c.validation_timeout.as_millis(),
        "retryBaseMs": c.retry_base.as_millis(),
        "retryTotalMs": c.retry_total.as_millis(),
        "maxBatch": c.max_batch,
        "allowHttp": c.allow_http,
        "reauthorizationMarginSeconds": c.reauthorization_margin.map(|d| d.as_secs()),
    })
}

/// `POST /_sandbox/subscriptions/config` e.g. `{"retryBaseMs":50,"maxMinutes":60}` → the config.
async fn delivery_config(State(core): Shared, body: Bytes) -> Response {
    let b: ConfigBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    let ms = Duration::from_millis;
    core.notify.update_config(|c| {
        if let Some(v) = b.max_minutes {
            c.max_subscription_minutes = v;
        }
        if let Some(v) = b.timeout_ms {
            c.timeout = ms(v);
        }
        if let Some(v) = b.validation_timeout_ms {
            c.validation_timeout = ms(v);
        }
        if let Some(v) = b.retry_base_ms {
            c.retry_base = ms(v);
        }
        if let Some(v) = b.retry_total_ms {
            c.retry_total = ms(v);
        }
        if let Some(v) = b.max_batch {
            c.max_batch = v.max(1);
        }
        if let Some(v) = b.allow_http {
            c.allow_http = v;
        }
        if let Some(v) = b.reauthorization_margin_seconds {
            c.reauthorization_margin = v.map(Duration::from_secs);
        }
    });
    axum::Json(config_json(&core.notify.config())).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LifecycleBody {
    event: String,
}

/// `POST /_sandbox/subscriptions/{id}/lifecycle` `{"event":"missed"}`.
async fn lifecycle(State(core): Shared, Path(id): Path<String>, body: Bytes) -> Response {
    let b: LifecycleBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    let Some(event) = LifecycleEvent::parse(&b.event) else {
        return bad(format!(
            "unknown lifecycle event '{}'; use reauthorizationRequired, subscriptionRemoved or missed",
            b.event
        ));
    };
    if core.lifecycle(&id, event) {
        ok()
    } else {
        error(
            StatusCode::NOT_FOUND,
            "no such subscription, or it has no lifecycleNotificationUrl",
        )
    }
}

// Delegated access (docs/graph.md section 13).

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InteractiveBody {
    /// A user, or `null` for nobody; absent: unchanged.
    #[serde(default, deserialize_with = "double_option")]
    user: Option<Option<String>>,
    outcome: Option<String>,
}

/// `POST /_sandbox/delegated/interactive` `{"user":"alice@contoso.com","outcome":"approve"}`.
async fn interactive(State(core): Shared, body: Bytes) -> Response {
    let b: InteractiveBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    let outcome = match b.outcome.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => None,
        Some("approve") => Some(InteractiveOutcome::Approve),
        Some("cancel") => Some(InteractiveOutcome::Cancel),
        Some("consentrequired") => Some(InteractiveOutcome::ConsentRequired),
        Some(other) => {
            return bad(format!(
                "unknown outcome '{other}'; use approve, cancel or consentRequired"
            ));
        }
    };
    let mut st = lock(&core.state);
    if let Some(user) = b.user {
        st.delegated.interactive_user = user;
    }
    if let Some(o) = outcome {
        st.delegated.outcome = o;
    }
    ok()
}

/// `GET /_sandbox/delegated/device-codes` → the pending user codes.
async fn device_codes(State(core): Shared) -> Response {
    let now = core.now();
    axum::Json(lock(&core.state).pending_user_codes(now)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    user: String,
}

/// `POST /_sandbox/delegated/device-codes/{user_code}/approve` `{"user":"alice@contoso.com"}`.
async fn approve_device_code(
    State(core): Shared,
    Path(user_code): Path<String>,
    body: Bytes,
) -> Response {
    let b: UserBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    let now = core.now();
    if lock(&core.state).approve_device_code(&user_code, &b.user, now) {
        ok()
    } else {
        error(
            StatusCode::NOT_FOUND,
            "no pending device code with that user code, or the user cannot sign in to its tenant",
        )
    }
}

/// `POST /_sandbox/delegated/device-codes/{user_code}/decline`.
async fn decline_device_code(State(core): Shared, Path(user_code): Path<String>) -> Response {
    let now = core.now();
    if lock(&core.state).decline_device_code(&user_code, now) {
        ok()
    } else {
        error(
            StatusCode::NOT_FOUND,
            "no pending device code with that user code",
        )
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DelegatedConfigBody {
    refresh_inactivity_seconds: Option<u64>,
    refresh_reuse: Option<bool>,
    device_code_lifetime_seconds: Option<u64>,
    device_code_interval_seconds: Option<u64>,
}

/// `POST /_sandbox/delegated/config` `{"refreshReuse":false,"deviceCodeIntervalSeconds":0}`.
async fn delegated_config(State(core): Shared, body: Bytes) -> Response {
    let b: DelegatedConfigBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    let mut st = lock(&core.state);
    let d = &mut st.delegated;
    if let Some(s) = b.refresh_inactivity_seconds {
        d.refresh_inactivity = time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX));
    }
    if let Some(r) = b.refresh_reuse {
        d.refresh_reuse = r;
    }
    if let Some(s) = b.device_code_lifetime_seconds {
        d.device_lifetime = s;
    }
    if let Some(s) = b.device_code_interval_seconds {
        d.device_interval = s;
    }
    ok()
}

/// `GET /_sandbox/delegated/stats`.
async fn delegated_stats(State(core): Shared) -> Response {
    axum::Json(lock(&core.state).delegated.stats.clone()).into_response()
}

/// `POST /_sandbox/users/{address}/revoke-refresh-tokens`.
async fn revoke_refresh_tokens(State(core): Shared, Path(address): Path<String>) -> Response {
    let now = core.now();
    if lock(&core.state).revoke_refresh_tokens(&address, now) {
        ok()
    } else {
        error(StatusCode::NOT_FOUND, "no such user")
    }
}

/// `POST /_sandbox/users/{address}/change-password`.
async fn change_password(State(core): Shared, Path(address): Path<String>) -> Response {
    let now = core.now();
    if lock(&core.state).change_password(&address, now) {
        ok()
    } else {
        error(StatusCode::NOT_FOUND, "no such user")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InteractionBody {
    kind: Option<String>,
}

/// `POST /_sandbox/users/{address}/require-interaction` `{"kind":"mfa"}` (`null` lifts it).
async fn require_interaction(
    State(core): Shared,
    Path(address): Path<String>,
    body: Bytes,
) -> Response {
    let b: InteractionBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    let kind = match b.kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => None,
        Some("mfa") => Some(Interaction::Mfa),
        Some("signinfrequency") => Some(Interaction::SignInFrequency),
        Some("blocked") => Some(Interaction::Blocked),
        Some(other) => {
            return bad(format!(
                "unknown kind '{other}'; use mfa, signInFrequency, blocked or null"
            ));
        }
    };
    let now = core.now();
    if lock(&core.state).require_interaction(&address, kind, now) {
        ok()
    } else {
        error(StatusCode::NOT_FOUND, "no such user")
    }
}

/// `DELETE /_sandbox/apps/{client_id}/consents/{user}`.
async fn withdraw_consent(
    State(core): Shared,
    Path((client_id, user)): Path<(String, String)>,
) -> Response {
    if lock(&core.state).withdraw_consent(&client_id, &user) {
        ok()
    } else {
        error(
            StatusCode::NOT_FOUND,
            "that user has not consented to that app",
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareBody {
    user: String,
    folder: Option<String>,
    write: Option<bool>,
}

/// `POST /_sandbox/mailboxes/{address}/shares` `{"user":"alice@contoso.com","folder":"Inbox"}`.
async fn share_mailbox(State(core): Shared, Path(address): Path<String>, body: Bytes) -> Response {
    let b: ShareBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return bad(e),
    };
    let write = b.write.unwrap_or(b.folder.is_none());
    if core.share_mailbox(&address, &b.user, b.folder.as_deref(), write) {
        ok()
    } else {
        error(StatusCode::NOT_FOUND, "no such mailbox or user")
    }
}

/// `DELETE /_sandbox/mailboxes/{address}/shares/{user}`.
async fn unshare_mailbox(
    State(core): Shared,
    Path((address, user)): Path<(String, String)>,
) -> Response {
    if core.unshare_mailbox(&address, &user) {
        ok()
    } else {
        error(StatusCode::NOT_FOUND, "no such share")
    }
}
