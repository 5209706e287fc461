//! The change-notification receiver, as plain logic: a request in, a response out. The HTTP
//! server around it (lambda_http behind a Function URL, axum in `mailroom serve`) only copies
//! fields across.
//!
//! What it answers (docs/graph.md §6):
//! - `?validationToken=…` (subscription creation): 200 `text/plain` with the decoded token, and
//!   nothing else happens;
//! - a batch of notifications: each is checked against its subscription record (`clientState`
//!   compared in constant time); one job per mailbox folder is enqueued; 202. Graph counts a
//!   delivery only if answered 2xx within 3 seconds, so nothing is imported here;
//! - anything malformed: a 4xx, nothing enqueued, one structured log line. Unknown subscriptions
//!   and wrong `clientState` values are dropped silently (still 202), so the answer never tells
//!   a caller which subscriptions exist.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;

use super::notification::{Event, LifecycleEvent, NotificationCollection};
// Log fields that come from the caller go through `shown`: tracing's text format escapes ANSI
// sequences but not line breaks or bidi marks, and anyone can post to the webhook.
use crate::domain::job::{JobKind, SyncJob};
use crate::domain::{SubscriptionRecord, shown};
use crate::ports::{JobQueue, QueueError, StoreError, SubscriptionLookup};

/// Why a batch could not be queued (the webhook then answers 503, and Graph delivers again).
#[derive(Debug, thiserror::Error)]
pub enum NotQueued {
    #[error(transparent)]
    Lookup(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Subscription lookups one batch has in flight.
const LOOKUPS_IN_FLIGHT: usize = 8;

/// Largest request body read. Graph batches are far smaller (a notification is under 1 KiB);
/// anything larger is refused before it is parsed.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Longest validation token echoed back. Graph's are opaque strings well under this.
const MAX_VALIDATION_TOKEN: usize = 8 * 1024;

/// The receiver's two paths (below the public base URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `notificationUrl`: change notifications.
    Notifications,
    /// `lifecycleNotificationUrl`: lifecycle events.
    Lifecycle,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Self::Notifications => "/notifications",
            Self::Lifecycle => "/lifecycle",
        }
    }

    /// The endpoint a request path ends with, if any (a Function URL path is the whole path; a
    /// reverse proxy may put Mailroom below a prefix).
    pub fn from_path(path: &str) -> Option<Self> {
        let path = path.trim_end_matches('/');
        [Self::Notifications, Self::Lifecycle]
            .into_iter()
            .find(|e| path.ends_with(e.path()))
    }
}

/// The parts of an HTTP request the receiver looks at.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The raw (still percent-encoded) query string, without `?`.
    pub query: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// The answer to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl WebhookResponse {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// What a batch held, for the log line and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub notifications: usize,
    /// Jobs enqueued (after collapsing repeats within the batch).
    pub jobs: usize,
    /// Notifications for subscriptions Mailroom has no record of.
    pub unknown_subscription: usize,
    /// Notifications whose `clientState` did not match the record.
    pub client_state_mismatch: usize,
    /// Change types and lifecycle events Mailroom does not act on.
    pub ignored: usize,
}

/// The receiver: looks subscriptions up in the state store, enqueues jobs on the queue.
#[derive(Clone)]
pub struct Webhook {
    subscriptions: Arc<dyn SubscriptionLookup>,
    queue: Arc<dyn JobQueue>,
}

impl Webhook {
    /// The AWS actions the webhook's calls need: [`SubscriptionLookup::get_subscription`] on
    /// DynamoDB (a GetItem, see `DynamoStateStore`) and [`JobQueue::enqueue`] on SQS
    /// (`SqsJobQueue::IAM_ACTIONS`). The template grants its role exactly these.
    pub const IAM_ACTIONS: &[&str] = &["dynamodb:GetItem", "sqs:SendMessage"];

    pub fn new(subscriptions: Arc<dyn SubscriptionLookup>, queue: Arc<dyn JobQueue>) -> Self {
        Self {
            subscriptions,
            queue,
        }
    }

    /// Answers one request.
    pub async fn handle(&self, request: WebhookRequest<'_>) -> WebhookResponse {
        let Some(endpoint) = Endpoint::from_path(request.path) else {
            return reject(request, 404, "unknown path", "not found");
        };
        if let Some(token) = validation_token(request.query) {
            return validate(request, endpoint, token);
        }
        if !request.method.eq_ignore_ascii_case("POST") {
            return reject(request, 405, "method not allowed", "use POST");
        }
        if request.body.len() > MAX_BODY_BYTES {
            return reject(
                request,
                413,
                "body too large",
                format!("the body is limited to {MAX_BODY_BYTES} bytes"),
            );
        }
        if !is_json(request.content_type) {
            return reject(
                request,
                415,
                "content type is not application/json",
                "expected application/json",
            );
        }
        let batch: NotificationCollection = match serde_json::from_slice(request.body) {
            Ok(batch) => batch,
            Err(e) => {
                // serde's message names the position and the expected token, never a value
                // worth hiding; it goes to the log only.
                tracing::warn!(
                    outcome = "rejected",
                    reason = "malformed notification",
                    path = %shown(request.path),
                    detail = %e,
                    "webhook request rejected"
                );
                return WebhookResponse::text(400, "malformed notification");
            }
        };
        match self.enqueue_jobs(endpoint, batch).await {
            Ok(outcome) => {
                tracing::info!(
                    outcome = "accepted",
                    endpoint = endpoint.path(),
                    notifications = outcome.notifications,
                    jobs = outcome.jobs,
                    unknown_subscription = outcome.unknown_subscription,
                    client_state_mismatch = outcome.client_state_mismatch,
                    ignored = outcome.ignored,
                    "webhook batch accepted"
                );
                WebhookResponse::text(202, "")
            }
            Err(detail) => {
                // Not persisted: a 5xx makes Graph deliver the batch again (docs/graph.md §6).
                tracing::error!(outcome = "failed", endpoint = endpoint.path(), error = %detail, "webhook batch not queued");
                WebhookResponse::text(503, "try again later")
            }
        }
    }

    /// Checks each notification and enqueues the jobs they call for. Jobs repeated within the
    /// batch are enqueued once; the queue also collapses repeats across close batches.
    pub async fn enqueue_jobs(
        &self,
        endpoint: Endpoint,
        batch: NotificationCollection,
    ) -> Result<BatchOutcome, NotQueued> {
        let mut outcome = BatchOutcome {
            notifications: batch.value.len(),
            ..BatchOutcome::default()
        };
        // Each subscription once per batch, a few at a time: a burst of notifications for few
        // folders costs few lookups, and Graph's 3 seconds are not spent waiting in turn.
        let ids: HashSet<String> = batch
            .value
            .iter()
            .map(|n| n.subscription_id.clone())
            .collect();
        let subscriptions = &self.subscriptions;
        let looked_up: Vec<(String, Result<Option<SubscriptionRecord>, StoreError>)> =
            futures::stream::iter(ids)
                .map(|id| async move {
                    let record = subscriptions.get_subscription(&id).await;
                    (id, record)
                })
                .buffer_unordered(LOOKUPS_IN_FLIGHT)
                .collect()
                .await;
        let mut records: HashMap<String, Option<SubscriptionRecord>> = HashMap::new();
        for (id, record) in looked_up {
            records.insert(id, record?);
        }
        let mut jobs: Vec<SyncJob> = Vec::new();
        let mut seen: HashSet<(String, String, JobKind)> = HashSet::new();
        for notification in &batch.value {
            let record = records
                .get(&notification.subscription_id)
                .cloned()
                .flatten();
            let Some(record) = record else {
                outcome.unknown_subscription += 1;
                tracing::warn!(subscription = %shown(&notification.subscription_id), "notification for an unknown subscription dropped");
                continue;
            };
            let presented = notification.client_state.as_deref().unwrap_or_default();
            if !record.client_state.matches(presented) {
                outcome.client_state_mismatch += 1;
                tracing::warn!(subscription = %shown(&notification.subscription_id), "notification with a wrong clientState dropped");
                continue;
            }
            let kinds: &[JobKind] = match notification.event() {
                Event::Created => &[JobKind::Sync],
                Event::Lifecycle(LifecycleEvent::ReauthorizationRequired) => {
                    &[JobKind::Resubscribe]
                }
                // Recreate, then catch up on what arrived while there was no subscription: a
                // full read, and a job kind of its own, so the queue's deduplication never takes
                // a notification's sync job that comes right after it for a repeat of it.
                Event::Lifecycle(LifecycleEvent::SubscriptionRemoved) => {
                    &[JobKind::Resubscribe, JobKind::FullResync]
                }
                Event::Lifecycle(LifecycleEvent::Missed) => &[JobKind::FullResync],
                other => {
                    outcome.ignored += 1;
                    tracing::info!(subscription = %shown(&notification.subscription_id), event = ?other, endpoint = endpoint.path(), "notification ignored");
                    &[]
                }
            };
            for &kind in kinds {
                let job = SyncJob {
                    mailbox: record.mailbox.clone(),
                    folder: record.folder.clone(),
                    kind,
                    slice: 0,
                };
                if seen.insert((job.mailbox.to_string(), job.folder.clone(), kind)) {
                    jobs.push(job);
                }
            }
        }
        // Ten to a request (SendMessageBatch keeps a group's order); if any is not queued, the
        // 5xx makes Graph deliver the batch again, and the queue collapses the repeats.
        if let Some((_, e)) = self.queue.enqueue_all(&jobs).await.into_iter().next() {
            return Err(e.into());
        }
        outcome.jobs = jobs.len();
        Ok(outcome)
    }
}

/// The decoded `validationToken` query parameter, if present.
fn validation_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "validationToken")
        .map(|(_, v)| v.into_owned())
}

/// The validation handshake: echo the token as plain text (docs/graph.md §6).
fn validate(request: WebhookRequest<'_>, endpoint: Endpoint, token: String) -> WebhookResponse {
    if token.is_empty() || token.len() > MAX_VALIDATION_TOKEN {
        return reject(request, 400, "bad validation token", "bad validation token");
    }
    tracing::info!(
        outcome = "validated",
        endpoint = endpoint.path(),
        "validation handshake answered"
    );
    WebhookResponse::text(200, token)
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|c| c.trim().eq_ignore_ascii_case("application/json"))
}

fn reject(
    request: WebhookRequest<'_>,
    status: u16,
    reason: &'static str,
    answer: impl Into<String>,
) -> WebhookResponse {
    tracing::warn!(
        outcome = "rejected",
        status,
        reason,
        method = %shown(request.method),
        path = %shown(request.path),
        content_type = request.content_type,
        bytes = request.body.len(),
        "webhook request rejected"
    );
    WebhookResponse::text(status, answer)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::adapters::memory::{MemoryJobQueue, MemoryStateStore};
    use crate::domain::{ClientState, MailboxAddress, SubscriptionRecord};
    use crate::ports::Subscriptions;

    struct Fixture {
        webhook: Webhook,
        queue: Arc<MemoryJobQueue>,
        state: Arc<MemoryStateStore>,
    }

    async fn fixture() -> Fixture {
        let state = Arc::new(MemoryStateStore::default());
        let queue = Arc::new(MemoryJobQueue::default());
        for (id, folder, secret) in [
            ("sub-a", "Inbox", "state-a"),
            ("sub-b", "Reports", "state-b"),
        ] {
            state
                .put_subscription(&SubscriptionRecord {
                    id: id.into(),
                    mailbox: MailboxAddress::parse("ops@contoso.com").unwrap(),
                    folder: folder.into(),
                    credential: "main".into(),
                    client_state: ClientState::from_stored(secret),
                    expires_at: datetime!(2026-11-26 00:00 UTC),
                    notification_url: "https://example.com/notifications".into(),
                    created_at: datetime!(2026-11-23 00:00 UTC),
                })
                .await
                .unwrap();
        }
        Fixture {
            webhook: Webhook::new(state.clone(), queue.clone()),
            queue,
            state,
        }
    }

    fn post<'a>(path: &'a str, body: &'a str) -> WebhookRequest<'a> {
        WebhookRequest {
            method: "POST",
            path,
            query: None,
            content_type: Some("application/json; charset=utf-8"),
            body: body.as_bytes(),
        }
    }

    fn change(subscription: &str, client_state: &str) -> String {
        format!(
            r#"{{"subscriptionId":"{subscription}","clientState":"{client_state}","changeType":"created","resource":"Users/x/Messages/y"}}"#
        )
    }

    fn batch(items: &[String]) -> String {
        format!(r#"{{"value":[{}]}}"#, items.join(","))
    }

    #[tokio::test]
    async fn the_validation_token_is_echoed_decoded_as_plain_text_on_both_paths() {
        let f = fixture().await;
        for path in ["/notifications", "/lifecycle", "/prefix/notifications/"] {
            let response = f
                .webhook
                .handle(WebhookRequest {
                    method: "POST",
                    path,
                    query: Some("validationToken=Validation%3A+Testing+client+application+reachability+for+subscription+Request-Id%3A+e2c8"),
                    content_type: Some("text/plain"),
                    body: b"",
                })
                .await;
            assert_eq!(response.status, 200);
            assert!(response.content_type.starts_with("text/plain"));
            assert_eq!(
                response.body,
                "Validation: Testing client application reachability for subscription Request-Id: e2c8"
            );
        }
        assert!(f.queue.jobs().is_empty());
    }

    #[tokio::test]
    async fn matching_notifications_enqueue_one_job_per_folder() {
        let f = fixture().await;
        let body = batch(&[
            change("sub-a", "state-a"),
            change("sub-a", "state-a"),
            change("sub-b", "state-b"),
        ]);
        let response = f.webhook.handle(post("/notifications", &body)).await;
        assert_eq!(response.status, 202);
        let jobs: Vec<(String, JobKind)> = f
            .queue
            .jobs()
            .into_iter()
            .map(|j| (j.folder, j.kind))
            .collect();
        assert_eq!(
            jobs,
            [
                ("Inbox".to_owned(), JobKind::Sync),
                ("Reports".to_owned(), JobKind::Sync)
            ]
        );
    }

    #[tokio::test]
    async fn lifecycle_events_map_to_their_jobs() {
        let f = fixture().await;
        let event = |sub: &str, state: &str, event: &str| {
            format!(
                r#"{{"subscriptionId":"{sub}","clientState":"{state}","lifecycleEvent":"{event}"}}"#
            )
        };
        let body = batch(&[
            event("sub-a", "state-a", "reauthorizationRequired"),
            event("sub-b", "state-b", "subscriptionRemoved"),
            event("sub-a", "state-a", "missed"),
            event("sub-a", "state-a", "someFutureEvent"),
        ]);
        let response = f.webhook.handle(post("/lifecycle", &body)).await;
        assert_eq!(response.status, 202);
        let jobs: Vec<(String, JobKind)> = f
            .queue
            .jobs()
            .into_iter()
            .map(|j| (j.folder, j.kind))
            .collect();
        assert_eq!(
            jobs,
            [
                ("Inbox".to_owned(), JobKind::Resubscribe),
                ("Reports".to_owned(), JobKind::Resubscribe),
                ("Reports".to_owned(), JobKind::FullResync),
                ("Inbox".to_owned(), JobKind::FullResync),
            ]
        );
    }

    #[tokio::test]
    async fn unknown_subscriptions_and_wrong_client_states_enqueue_nothing_and_look_accepted() {
        let f = fixture().await;
        let unknown = batch(&[change("sub-zzz", "state-a")]);
        let wrong = batch(&[change("sub-a", "state-b")]);
        let missing = batch(&[r#"{"subscriptionId":"sub-a","changeType":"created"}"#.to_owned()]);
        let answers: Vec<WebhookResponse> = futures::future::join_all(
            [&unknown, &wrong, &missing].map(|b| f.webhook.handle(post("/notifications", b))),
        )
        .await;
        // The same answer for all three: a caller cannot probe which subscriptions exist.
        for answer in &answers {
            assert_eq!(answer, &answers[0]);
        }
        assert_eq!(answers[0].status, 202);
        assert!(f.queue.jobs().is_empty());
        let mixed = batch(&[change("sub-a", "wrong"), change("sub-b", "state-b")]);
        let outcome = f
            .webhook
            .enqueue_jobs(
                Endpoint::Notifications,
                serde_json::from_str(&mixed).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(outcome.client_state_mismatch, 1);
        assert_eq!(outcome.jobs, 1);
    }

    #[tokio::test]
    async fn malformed_requests_are_refused_before_anything_is_enqueued() {
        let f = fixture().await;
        let good = batch(&[change("sub-a", "state-a")]);
        let huge = format!(
            r#"{{"value":[{}],"pad":"{}"}}"#,
            change("sub-a", "state-a"),
            "x".repeat(MAX_BODY_BYTES)
        );
        let cases: Vec<(WebhookRequest<'_>, u16)> = vec![
            (post("/notifications", "{not json"), 400),
            (post("/notifications", r#"{"value":"nope"}"#), 400),
            (
                post("/notifications", r#"{"value":[{"clientState":"state-a"}]}"#),
                400,
            ),
            (post("/notifications", &huge), 413),
            (
                WebhookRequest {
                    content_type: Some("text/plain"),
                    ..post("/notifications", &good)
                },
                415,
            ),
            (
                WebhookRequest {
                    content_type: None,
                    ..post("/notifications", &good)
                },
                415,
            ),
            (
                WebhookRequest {
                    method: "GET",
                    ..post("/notifications", &good)
                },
                405,
            ),
            (post("/elsewhere", &good), 404),
            (
                WebhookRequest {
                    query: Some("validationToken="),
                    ..post("/notifications", "")
                },
                400,
            ),
        ];
        for (request, status) in cases {
            let response = f.webhook.handle(request).await;
            assert_eq!(response.status, status, "{request:?}");
        }
        assert!(f.queue.jobs().is_empty());
        // Nothing was written either.
        assert_eq!(f.state.list_subscriptions().await.unwrap().len(), 2);
    }
}
