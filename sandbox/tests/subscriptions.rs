//! Subscriptions and change notifications (docs/graph.md section 6), against a tiny axum receiver
//! on 127.0.0.1. "Nothing arrived" is asserted without sleeping: each URL's notifications are
//! sent in order, so once a later notification has arrived, an earlier one would have too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use common::{Graph, code, enc, message};
use graph_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_TENANT, DeliveryKind, LifecycleEvent, Mailbox, NewMessage, Sandbox,
    World,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const A: &str = "a@contoso.com";
const B: &str = "b@contoso.com";

/// How the receiver answers validation requests.
#[derive(Clone, Copy, PartialEq)]
enum Validation {
    Echo,
    WrongToken,
    Status(u16),
}

struct Hit {
    path: String,
    content_type: String,
    body: Value,
    at: Instant,
}

struct RxState {
    validation: Mutex<Validation>,
    /// Statuses for the next notification POSTs; then 202.
    statuses: Mutex<VecDeque<u16>>,
    validations: Mutex<Vec<(String, String)>>,
    hits: Mutex<Vec<Hit>>,
}

/// A webhook receiver: `/notify` and `/lifecycle` (any path works).
struct Receiver {
    base: String,
    state: Arc<RxState>,
}

async fn hook(
    State(rx): State<Arc<RxState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "validationToken")
            .map(|(_, v)| v.into_owned())
    });
    if let Some(token) = token {
        rx.validations
            .lock()
            .unwrap()
            .push((uri.path().to_owned(), token.clone()));
        return match *rx.validation.lock().unwrap() {
            Validation::Echo => ([(header::CONTENT_TYPE, "text/plain")], token).into_response(),
            Validation::WrongToken => {
                ([(header::CONTENT_TYPE, "text/plain")], "not the token").into_response()
            }
            Validation::Status(s) => StatusCode::from_u16(s).unwrap().into_response(),
        };
    }
    let status = rx.statuses.lock().unwrap().pop_front().unwrap_or(202);
    rx.hits.lock().unwrap().push(Hit {
        path: uri.path().to_owned(),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        at: Instant::now(),
    });
    StatusCode::from_u16(status).unwrap().into_response()
}

impl Receiver {
    async fn start() -> Self {
        let state = Arc::new(RxState {
            validation: Mutex::new(Validation::Echo),
            statuses: Mutex::new(VecDeque::new()),
            validations: Mutex::new(Vec::new()),
            hits: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(hook)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { base, state }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn set_validation(&self, v: Validation) {
        *self.state.validation.lock().unwrap() = v;
    }

    fn validations(&self) -> Vec<(String, String)> {
        self.state.validations.lock().unwrap().clone()
    }

    /// Bodies of the POSTs received on `path`.
    fn posts(&self, path: &str) -> Vec<Value> {
        self.state
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .map(|h| h.body.clone())
            .collect()
    }

    /// The notifications (items of every `value`) received on `path`, in arrival order.
    fn items(&self, path: &str) -> Vec<Value> {
        self.posts(path)
            .iter()
            .flat_map(|b| b["value"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Waits until `path` has received at least `n` notifications; returns all of them.
    async fn wait_items(&self, path: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let items = self.items(path);
            if items.len() >= n {
                return items;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} notifications on {path}, got {}: {items:?}",
                items.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn setup() -> (Sandbox, Graph, Receiver) {
    let world = World::default_test()
        .mailbox(DEFAULT_TENANT, Mailbox::new(A).folder("Inbox/Reports"))
        .mailbox(DEFAULT_TENANT, Mailbox::new(B));
    let sb = Sandbox::start(world).await.unwrap();
    let g = Graph::new(&sb, false).await;
    (sb, g, Receiver::start().await)
}

fn in_minutes(sb: &Sandbox, minutes: i64) -> String {
    (sb.now() + time::Duration::minutes(minutes))
        .replace_nanosecond(0)
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

fn time_of(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

async fn subscribe(g: &Graph, sb: &Sandbox, rx: &Receiver, resource: &str) -> Value {
    let (s, b) = g
        .post(
            "/subscriptions",
            json!({
                "changeType": "created",
                "notificationUrl": rx.url("/notify"),
                "lifecycleNotificationUrl": rx.url("/lifecycle"),
                "resource": resource,
                "expirationDateTime": in_minutes(sb, 4200),
                "clientState": "secret-state",
            }),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    b
}

/// The message id a notification carries.
fn notified_id(item: &Value) -> String {
    item["resourceData"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn handshake_then_a_new_message_is_notified_in_the_documented_shape() {
    let (sb, g, rx) = setup().await;
    let sub = subscribe(
        &g,
        &sb,
        &rx,
        "users/a@contoso.com/mailFolders('Inbox')/messages",
    )
    .await;
    let id = sub["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{sub}");
    assert_eq!(sub["changeType"], "created");
    assert_eq!(sub["clientState"], "secret-state");
    assert_eq!(sub["applicationId"], DEFAULT_CLIENT_ID);
    assert_eq!(sub["latestSupportedTlsVersion"], "v1_2");
    assert_eq!(sub["notificationUrl"], rx.url("/notify"));
    assert_eq!(sub["lifecycleNotificationUrl"], rx.url("/lifecycle"));
    assert!(uuid::Uuid::parse_str(sub["creatorId"].as_str().unwrap()).is_ok());
    assert!(
        sub["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#subscriptions/$entity")
    );

    // Both URLs were validated, with the token URL-decoded by the receiver.
    let validations = rx.validations();
    assert_eq!(validations.len(), 2, "{validations:?}");
    assert_eq!(validations[0].0, "/notify");
    assert_eq!(validations[1].0, "/lifecycle");
    assert!(validations[0].1.starts_with("Validation: "));

    let info = sb.add_message(A, "Inbox", NewMessage::new("hello"));
    let items = rx.wait_items("/notify", 1).await;
    assert_eq!(items.len(), 1);
    sb.set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.ReadWrite", "User.Read.All"]);
    let (_, user) = g.get("/users/a@contoso.com").await;
    let user_id = user["id"].as_str().unwrap();
    let n = &items[0];
    let resource = format!("Users/{user_id}/Messages/{}", info.rest_id);
    assert_eq!(n["subscriptionId"], id);
    assert_eq!(n["changeType"], "created");
    assert_eq!(n["clientState"], "secret-state");
    assert_eq!(n["tenantId"], DEFAULT_TENANT);
    assert_eq!(n["resource"], resource);
    assert_eq!(
        time_of(&n["subscriptionExpirationDateTime"]),
        time_of(&sub["expirationDateTime"])
    );
    let data = &n["resourceData"];
    assert_eq!(data["@odata.type"], "#Microsoft.Graph.Message");
    assert_eq!(data["@odata.id"], resource);
    assert_eq!(data["id"], info.rest_id.as_str());
    let (_, m) = g
        .get(&format!(
            "/users/a@contoso.com/messages/{}",
            enc(&info.rest_id)
        ))
        .await;
    assert_eq!(data["@odata.etag"], m["@odata.etag"]);
    assert_eq!(
        rx.state.hits.lock().unwrap()[0].content_type,
        "application/json"
    );

    let deliveries = sb.deliveries();
    let kinds: Vec<DeliveryKind> = deliveries.iter().map(|d| d.kind).collect();
    assert_eq!(
        kinds,
        [
            DeliveryKind::Validation,
            DeliveryKind::Validation,
            DeliveryKind::Notification
        ]
    );
    let last = &deliveries[2];
    assert!(last.delivered && last.attempt == 1 && last.status == Some(202));
    assert_eq!(last.payload["value"][0], *n);
}

#[tokio::test]
async fn immutable_ids_when_preferred_at_creation() {
    let (sb, _, rx) = setup().await;
    let g = Graph::new(&sb, true).await;
    subscribe(
        &g,
        &sb,
        &rx,
        "users/a@contoso.com/mailFolders('inbox')/messages",
    )
    .await;
    assert!(sb.subscriptions()[0].immutable_ids);
    let info = sb.add_message(A, "Inbox", NewMessage::new("x"));
    let items = rx.wait_items("/notify", 1).await;
    assert_eq!(notified_id(&items[0]), info.immutable_id);
    assert!(
        items[0]["resource"]
            .as_str()
            .unwrap()
            .ends_with(&info.immutable_id)
    );
}

#[tokio::test]
async fn a_failed_handshake_creates_nothing() {
    let (sb, g, rx) = setup().await;
    let body = |lifecycle: Option<String>| {
        json!({
            "changeType": "created",
            "notificationUrl": rx.url("/notify"),
            "lifecycleNotificationUrl": lifecycle,
            "resource": "users/a@contoso.com/mailFolders('Inbox')/messages",
            "expirationDateTime": in_minutes(&sb, 60),
        })
    };
    for mode in [Validation::WrongToken, Validation::Status(500)] {
        rx.set_validation(mode);
        let (s, b) = g.post("/subscriptions", body(None)).await;
        assert_eq!((s, code(&b)), (400, "ValidationError"), "{b}");
        assert_eq!(
            message(&b),
            "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request."
        );
    }
    // A lifecycle URL that does not answer fails the creation too.
    rx.set_validation(Validation::Echo);
    let (s, b) = g
        .post(
            "/subscriptions",
            body(Some("http://127.0.0.1:9/closed".into())),
        )
        .await;
    assert_eq!((s, code(&b)), (400, "ValidationError"), "{b}");
    assert!(sb.subscriptions().is_empty());
    let (_, list) = g.get("/subscriptions").await;
    assert_eq!(list["value"], json!([]));
    let failed: Vec<_> = sb
        .deliveries()
        .into_iter()
        .filter(|d| !d.delivered)
        .collect();
    assert_eq!(failed.len(), 3);

    // Bad requests never reach the receiver.
    let before = rx.validations().len();
    let mut me = body(None);
    me["resource"] = json!("me/mailFolders('Inbox')/messages");
    let (s, _) = g.post("/subscriptions", me).await;
    assert_eq!(s, 400);
    let mut config = sb.delivery_config();
    config.allow_http = false;
    sb.set_delivery_config(config);
    let (s, b) = g.post("/subscriptions", body(None)).await;
    assert_eq!((s, code(&b)), (400, "InvalidRequest"), "{b}");
    assert_eq!(rx.validations().len(), before);
}

#[tokio::test]
async fn moves_into_the_folder_notify_and_other_folders_do_not() {
    let (sb, g, rx) = setup().await;
    let (_, reports) = g
        .get("/users/a@contoso.com/mailFolders/inbox/childFolders?$filter=displayName eq 'Reports'")
        .await;
    let reports_id = reports["value"][0]["id"].as_str().unwrap().to_owned();
    subscribe(
        &g,
        &sb,
        &rx,
        &format!(
            "users/a@contoso.com/mailFolders/{}/messages",
            enc(&reports_id)
        ),
    )
    .await;
    assert_eq!(
        sb.subscriptions()[0].folder_path.as_deref(),
        Some("Inbox/Reports")
    );

    let elsewhere = sb.add_message(A, "Inbox", NewMessage::new("not watched"));
    sb.add_message(B, "Inbox/Reports", NewMessage::new("other mailbox"));
    let (s, moved) = g
        .post(
            &format!(
                "/users/a@contoso.com/messages/{}/move",
                enc(&elsewhere.rest_id)
            ),
            json!({"destinationId": reports_id}),
        )
        .await;
    assert_eq!(s, 201);
    let items = rx.wait_items("/notify", 1).await;
    assert_eq!(items.len(), 1);
    // The REST id after the move (it changes on every move).
    assert_eq!(notified_id(&items[0]), moved["id"].as_str().unwrap());

    // Through the HTTP control API too.
    let r = common::http()
        .post(format!("{}/_sandbox/mailboxes/{A}/messages", sb.url()))
        .json(&json!({"folder": "Inbox/Reports", "subject": "via control"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let items = rx.wait_items("/notify", 2).await;
    assert_eq!(items.len(), 2);
    assert_eq!(notified_id(&items[1]), created["restId"].as_str().unwrap());
}

#[tokio::test]
async fn notifications_due_together_share_a_post() {
    let (sb, g, rx) = setup().await;
    subscribe(
        &g,
        &sb,
        &rx,
        "users/a@contoso.com/mailFolders('Inbox')/messages",
    )
    .await;
    subscribe(&g, &sb, &rx, "users/a@contoso.com/messages").await;
    sb.add_message(A, "Inbox", NewMessage::new("x"));
    rx.wait_items("/notify", 2).await;
    assert_eq!(rx.posts("/notify").len(), 1);

    let mut config = sb.delivery_config();
    config.max_batch = 1;
    sb.set_delivery_config(config);
    sb.add_message(A, "Inbox", NewMessage::new("y"));
    rx.wait_items("/notify", 4).await;
    assert_eq!(rx.posts("/notify").len(), 3);
}

#[tokio::test]
async fn expiry_is_capped_at_4230_minutes_and_short_ones_are_raised() {
    let (sb, g, rx) = setup().await;
    let body = |minutes: i64| {
        json!({
            "changeType": "created",
            "notificationUrl": rx.url("/notify"),
            "resource": "users/a@contoso.com/mailFolders('Inbox')/messages",
            "expirationDateTime": in_minutes(&sb, minutes),
        })
    };
    let (s, b) = g.post("/subscriptions", body(4231)).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        message(&b),
        "Subscription expiration can only be 4230 minutes in the future."
    );
    let (s, b) = g.post("/subscriptions", body(4229)).await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = g.post("/subscriptions", body(10)).await;
    assert_eq!(s, 201, "{b}");
    let raised = time_of(&b["expirationDateTime"]) - sb.now();
    assert!(raised > time::Duration::minutes(44), "{raised}");

    sb.set_max_subscription_minutes(60);
    let (s, b) = g.post("/subscriptions", body(120)).await;
    assert_eq!(s, 400);
    assert_eq!(
        message(&b),
        "Subscription expiration can only be 60 minutes in the future."
    );
}

#[tokio::test]
async fn renew_reauthorize_delete_and_not_found() {
    let (sb, g, rx) = setup().await;
    let sub = subscribe(
        &g,
        &sb,
        &rx,
        "users/a@contoso.com/mailFolders('Inbox')/messages",
    )
    .await;
    let path = format!("/subscriptions/{}", sub["id"].as_str().unwrap());

    let new_expiry = in_minutes(&sb, 3000);
    let (s, b) = g
        .patch(&path, json!({"expirationDateTime": new_expiry}))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        time_of(&b["expirationDateTime"]),
        time_of(&json!(new_expiry))
    );
    let (s, b) = g.get(&path).await;
    assert_eq!(s, 200);
    assert_eq!(
        time_of(&b["expirationDateTime"]),
        time_of(&json!(new_expiry))
    );
    let (s, b) = g
        .patch(&path, json!({"expirationDateTime": in_minutes(&sb, 5000)}))
        .await;
    assert_eq!((s, code(&b)), (400, "InvalidRequest"));

    let (s, list) = g.get("/subscriptions").await;
    assert_eq!(s, 200);
    assert_eq!(list["value"][0]["id"], sub["id"]);

    let (s, _) = g.post(&format!("{path}/reauthorize"), json!({})).await;
    assert_eq!(s, 204);
    assert_eq!(g.delete(&path).await, 204);
    let (s, b) = g.get(&path).await;
    assert_eq!((s, code(&b)), (404, "ResourceNotFound"));
    let (s, _) = g
        .patch(&path, json!({"expirationDateTime": in_minutes(&sb, 60)}))
        .await;
    assert_eq!(s, 404);
    assert_eq!(g.delete(&path).await, 404);
    assert!(sb.subscriptions().is_empty());
}

#[tokio::test]
async fn an_expired_subscription_gets_nothing_and_disappears() {
    let (sb, g, rx) = setup().await;
    let body = json!({
        "changeType": "created",
        "notificationUrl": rx.url("/notify"),
        "resource": "users/a@contoso.com/mailFolders('Inbox')/messages",
        "expirationDateTime": in_minutes(&sb, 60),
    });
    let (s, old) = g.post("/subscriptions", body).await;
    assert_eq!(s, 201);
    sb.advance_clock(Duration::from_secs(61 * 60));
    assert!(sb.subscriptions().is_empty());
    // The token expired too.
    let g = Graph::new(&sb, false).await;
    let (s, _) = g
        .get(&format!("/subscriptions/{}", old["id"].as_str().unwrap()))
        .await;
    assert_eq!(s, 404);

    let new = subscribe(
        &g,
        &sb,
        &rx,
        "users/a@contoso.com/mailFolders('Inbox')/messages",
    )
    .await;
    sb.add_message(A, "Inbox", NewMessage::new("after expiry"));
    let items = rx.wait_items("/notify", 1).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["subscriptionId"], new["id"]);
}

#[tokio::test]
async fn reauthorization_required_shortly_before_expiry_until_renewed() {
    let (sb, g, rx) = setup().await;
    let sub = subscribe(
        &g,
        &sb,
        &rx,
        "users/a@contoso.com/mailFolders('Inbox')/messages",
    )
    .await;
    sb.advance_clock(Duration::from_secs(4195 * 60));
    let items = rx.wait_items("/lifecycle", 1).await;
    assert_eq!(items[0]["lifecycleEvent"], "reauthorizationRequired");
    assert_eq!(items[0]["subscriptionId"], sub["id"]);
    assert!(sb.subscriptions()[0].reauthorization_required);
    let g = Graph::new(&sb, false).await;
    let (s, _) = g
        .patch(
            &format!("/subscriptions/{}", sub["id"].as_str().unwrap()),
            json!({"expirationDateTime": in_minutes(&sb, 600)}),
        )
        .await;
    assert_eq!(s, 200);
    assert!(!sb.subscriptions()[0].reauthorization_required);
}

#[tokio::test]
async fn lifecycle_events_on_demand() {
    let (sb, g, rx) = setup().await;
    let sub = subscribe(
        &g,
        &sb,
        &rx,
        "users/a@contoso.com/mailFolders('Inbox')/messages",
    )
    .await;
    let id = sub["id"].as_str().unwrap();

    assert!(sb.lifecycle(id, LifecycleEvent::Missed));
    let items = rx.wait_items("/lifecycle", 1).await;
    let n = items[0].as_object().unwrap();
    let mut keys: Vec<&str> = n.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "clientState",
            "lifecycleEvent",
            "subscriptionExpirationDateTime",
            "subscriptionId",
            "tenantId"
        ]
    );
    assert_eq!(n["lifecycleEvent"], "missed");
    assert_eq!(n["clientState"], "secret-state");
    assert_eq!(n["tenantId"], DEFAULT_TENANT);

    assert!(sb.lifecycle(id, LifecycleEvent::ReauthorizationRequired));
    rx.wait_items("/lifecycle", 2).await;
    assert!(sb.subscriptions()[0].reauthorization_required);
    let (s, _) = g
        .post(&format!("/subscriptions/{id}/reauthorize"), json!({}))
        .await;
    assert_eq!(s, 204);
    let after = &sb.subscriptions()[0];
    assert!(!after.reauthorization_required);
    // Reauthorizing does not extend the expiry.
    assert_eq!(after.expiration, time_of(&sub["expirationDateTime"]));

    // Through the control API, then removal deletes the subscription.
    let r = common::http()
        .post(format!(
            "{}/_sandbox/subscriptions/{id}/lifecycle",
            sb.url()
        ))
        .json(&json!({"event": "subscriptionRemoved"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let items = rx.wait_items("/lifecycle", 3).await;
    assert_eq!(items[2]["lifecycleEvent"], "subscriptionRemoved");
    assert!(sb.subscriptions().is_empty());
    let (s, _) = g.get(&format!("/subscriptions/{id}")).await;
    assert_eq!(s, 404);
    assert!(!sb.lifecycle(id, LifecycleEvent::Missed));

    // No lifecycle URL: nothing to send.
    let (s, b) = g
        .post(
            "/subscriptions",
            json!({
                "changeType": "created",
                "notificationUrl": rx.url("/notify"),
                "resource": "users/a@contoso.com/messages",
                "expirationDateTime": in_minutes(&sb, 60),
            }),
        )
        .await;
    assert_eq!(s, 201);
    assert!(!sb.lifecycle(b["id"].as_str().unwrap(), LifecycleEvent::Missed));
}

#[tokio::test]
async fn drop_duplicate_reorder_and_delay_the_next_n() {
    let (sb, g, rx) = setup().await;
    subscribe(
        &g,
        &sb,
        &rx,
        "users/a@contoso.com/mailFolders('Inbox')/messages",
    )
    .await;
    let add = |s: &str| sb.add_message(A, "Inbox", NewMessage::new(s)).rest_id;

    sb.drop_next_notifications(1);
    add("dropped");
    let kept = add("kept");
    let items = rx.wait_items("/notify", 1).await;
    assert_eq!(items.len(), 1);
    assert_eq!(notified_id(&items[0]), kept);
    assert!(
        sb.deliveries()
            .iter()
            .any(|d| d.attempt == 0 && !d.delivered)
    );

    sb.duplicate_next_notifications(1);
    let twice = add("twice");
    let once = add("once");
    let items = rx.wait_items("/notify", 4).await;
    let ids: Vec<String> = items[1..].iter().map(notified_id).collect();
    assert_eq!(ids, [twice.clone(), twice, once]);

    sb.reorder_next_notifications(3);
    let ordered: Vec<String> = ["r1", "r2", "r3"].into_iter().map(add).collect();
    let items = rx.wait_items("/notify", 7).await;
    let ids: Vec<String> = items[4..].iter().map(notified_id).collect();
    let expected: Vec<String> = ordered.iter().rev().cloned().collect();
    assert_eq!(ids, expected);

    // Through the control API: drop the next one.
    let r = common::http()
        .post(format!("{}/_sandbox/subscriptions/chaos", sb.url()))
        .json(&json!({"dropNext": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    add("dropped via control");

    sb.delay_next_notifications(1, Duration::from_millis(300));
    let started = Instant::now();
    let late = add("late");
    let items = rx.wait_items("/notify", 8).await;
    assert_eq!(items.len(), 8);
    assert_eq!(notified_id(&items[7]), late);
    let arrived = rx.state.hits.lock().unwrap().last().unwrap().at;
    assert!(arrived.duration_since(started) >= Duration::from_millis(300));

    let r = common::http()
        .get(format!("{}/_sandbox/subscriptions/deliveries", sb.url()))
        .send()
        .await
        .unwrap();
    let log: Value = r.json().await.unwrap();
    let dropped = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["attempt"] == 0)
        .count();
    assert_eq!(dropped, 2);
}

#[tokio::test]
async fn a_failed_delivery_is_retried_until_2xx() {
    let (sb, g, rx) = setup().await;
    let mut config = sb.delivery_config();
    config.retry_base = Duration::from_millis(20);
    sb.set_delivery_config(config);
    subscribe(
        &g,
        &sb,
        &rx,
        "users/a@contoso.com/mailFolders('Inbox')/messages",
    )
    .await;
    rx.state.statuses.lock().unwrap().extend([500, 503]);
    let id = sb
        .add_message(A, "Inbox", NewMessage::new("retry me"))
        .rest_id;
    let items = rx.wait_items("/notify", 3).await;
    assert!(items.iter().all(|i| notified_id(i) == id));
    // Wait for the log entry of the delivered attempt (recorded after the answer).
    let deadline = Instant::now() + Duration::from_secs(5);
    let attempts = loop {
        let a: Vec<_> = sb
            .deliveries()
            .into_iter()
            .filter(|d| d.kind == DeliveryKind::Notification)
            .collect();
        if a.len() == 3 || Instant::now() > deadline {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let summary: Vec<(u32, Option<u16>, bool)> = attempts
        .iter()
        .map(|d| (d.attempt, d.status, d.delivered))
        .collect();
    assert_eq!(
        summary,
        [
            (1, Some(500), false),
            (2, Some(503), false),
            (3, Some(202), true)
        ]
    );
}

#[tokio::test]
async fn out_of_scope_or_unpermitted_apps_get_403_without_a_handshake() {
    let (sb, g, rx) = setup().await;
    sb.set_app_scope(DEFAULT_CLIENT_ID, Some(&[A]));
    let body = json!({
        "changeType": "created",
        "notificationUrl": rx.url("/notify"),
        "resource": "users/b@contoso.com/mailFolders('Inbox')/messages",
        "expirationDateTime": in_minutes(&sb, 60),
    });
    let (s, b) = g.post("/subscriptions", body.clone()).await;
    assert_eq!((s, code(&b)), (403, "ErrorAccessDenied"), "{b}");
    assert_eq!(message(&b), "Access to OData is disabled.");

    sb.set_app_scope(DEFAULT_CLIENT_ID, None);
    sb.set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.Send"]);
    let (s, b) = g.post("/subscriptions", body).await;
    assert_eq!((s, code(&b)), (403, "ErrorAccessDenied"), "{b}");
    assert!(rx.validations().is_empty());
    assert!(sb.subscriptions().is_empty());

    // The control API lists every app's subscriptions.
    sb.set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.Read"]);
    subscribe(&g, &sb, &rx, "users/b@contoso.com/messages").await;
    let r = common::http()
        .get(format!("{}/_sandbox/subscriptions", sb.url()))
        .send()
        .await
        .unwrap();
    let list: Value = r.json().await.unwrap();
    assert_eq!(list[0]["mailbox"], B);
    assert_eq!(list[0]["clientState"], "secret-state");
}
