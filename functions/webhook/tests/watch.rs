//! The built `mailroom-webhook` binary under `cargo lambda watch` (the Lambda emulator), called
//! through its Function URL path as Graph calls it, with the real AWS SDK against moto: the
//! subscription records in a DynamoDB table, the sync jobs on an SQS FIFO queue.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use graph_sandbox::DEFAULT_TENANT;
use mailroom::adapters::aws::{DynamoStateStore, SqsJobQueue};
use mailroom::domain::job::{JobKind, SyncJob};
use mailroom::domain::{ClientState, MailboxAddress, SubscriptionRecord};
use mailroom::ports::Subscriptions;
use mailroom_tests::moto::Moto;
use mailroom_tests::watch::WatchedFunction;
use serde_json::json;
use time::OffsetDateTime;

const MAILBOX: &str = "reports@contoso.com";
const FOLDER: &str = "Inbox/Backup Reports";

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mailroom-webhook"))
}

/// The webhook under the emulator, with a fresh table and FIFO queue on moto.
struct Fixture {
    webhook: WatchedFunction,
    moto: &'static Moto,
    state: DynamoStateStore,
    queue_url: String,
}

async fn start() -> Fixture {
    let moto = Moto::shared();
    let (state, table) = moto.fresh_table().await;
    let (_, queue_url) = moto.fresh_fifo_queue().await;
    let env = [
        ("MAILROOM_TABLE", table),
        ("MAILROOM_QUEUE_URL", queue_url.clone()),
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        // The most an operator can ask for (LoggingConfig: ApplicationLogLevel: TRACE): every
        // test then also checks that no clientState reaches the log even so.
        ("AWS_LAMBDA_LOG_LEVEL", "TRACE".to_owned()),
    ];
    let webhook = WatchedFunction::start("mailroom-webhook", binary(), &env).await;
    Fixture {
        webhook,
        moto,
        state,
        queue_url,
    }
}

impl Fixture {
    /// Stores the record of a subscription on the configured folder, as the import function
    /// does when it creates one; returns it.
    async fn subscribe(&self) -> SubscriptionRecord {
        let now = OffsetDateTime::now_utc();
        let record = SubscriptionRecord {
            // Each test has a table of its own.
            id: "5e1b7a4c-3f0d-4c8e-9a51-2b7d6c0e9f13".to_owned(),
            mailbox: MailboxAddress::parse(MAILBOX).unwrap(),
            folder: FOLDER.to_owned(),
            credential: "mailroom/test/credential".to_owned(),
            client_state: ClientState::generate(),
            expires_at: now + time::Duration::days(2),
            notification_url: "https://example.lambda-url.us-east-1.on.aws/notifications"
                .to_owned(),
            created_at: now,
        };
        self.state.put_subscription(&record).await.unwrap();
        record
    }

    /// POSTs a notification batch to the Function URL path `path`.
    async fn notify(&self, path: &str, body: &str) -> mailroom_tests::watch::HttpAnswer {
        self.webhook
            .request("POST", path, Some("application/json"), body)
            .await
    }

    /// Every message on the queue: `(group, body)`.
    async fn queued(&self) -> Vec<(String, String)> {
        self.moto.drain_queue(&self.queue_url).await
    }
}

/// A change notification for a message created in the subscribed folder, as Graph posts it
/// (docs/graph.md §6), presenting `client_state`.
fn created_notification(subscription: &SubscriptionRecord, client_state: &str) -> String {
    json!({
        "value": [{
            "subscriptionId": subscription.id,
            "subscriptionExpirationDateTime": "2026-11-25T10:15:00.0000000+00:00",
            "changeType": "created",
            "resource": "Users/7f2b4c1e-0000-4000-8000-000000000001/Messages/AAMkAGI2TAAA=",
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Message",
                "@odata.id": "Users/7f2b4c1e-0000-4000-8000-000000000001/Messages/AAMkAGI2TAAA=",
                "@odata.etag": "W/\"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf\"",
                "id": "AAMkAGI2TAAA="
            },
            "clientState": client_state,
            "tenantId": DEFAULT_TENANT
        }]
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_validation_handshake_is_answered_through_the_function_url() {
    let fixture = start().await;
    let webhook = &fixture.webhook;
    // What Graph sends: the token form-encoded in the query string.
    let token = "Validation: Testing client application reachability for subscription 100% <ok>&+";
    let encoded = "Validation%3A%20Testing%20client%20application%20reachability%20for%20subscription%20100%25%20%3Cok%3E%26%2B";

    // The first request reaches the function as it starts: the cold start is included.
    let answer = webhook
        .request(
            "POST",
            &format!("/notifications?validationToken={encoded}"),
            None,
            "",
        )
        .await;
    let cold_start = webhook.function_started().elapsed();
    eprintln!(
        "cold start: {:.0} ms from starting mailroom-webhook to its first validation answer through cargo lambda watch (Graph allows 10 s)",
        cold_start.as_secs_f64() * 1000.0
    );
    assert_eq!(answer.status, 200, "{answer:?}\n{}", webhook.logs());
    assert_eq!(
        answer.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(answer.body, token);

    let answer = webhook
        .request(
            "POST",
            &format!("/lifecycle?validationToken={encoded}"),
            None,
            "",
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}\n{}", webhook.logs());
    assert_eq!(
        answer.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(answer.body, token);
    assert!(
        fixture.queued().await.is_empty(),
        "a handshake enqueued a job"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_for_a_known_subscription_puts_one_sync_job_on_the_fifo_queue() {
    let fixture = start().await;
    let subscription = fixture.subscribe().await;

    let body = created_notification(&subscription, subscription.client_state.expose());
    let answer = fixture.notify("/notifications", &body).await;
    assert_eq!(answer.status, 202, "{answer:?}\n{}", fixture.webhook.logs());

    let queued = fixture.queued().await;
    assert_eq!(queued.len(), 1, "{queued:?}\n{}", fixture.webhook.logs());
    let (group, body) = &queued[0];
    assert_eq!(group, MAILBOX, "one FIFO group per mailbox");
    assert_eq!(
        SqsJobQueue::parse_job(body).unwrap(),
        SyncJob {
            mailbox: MailboxAddress::parse(MAILBOX).unwrap(),
            folder: FOLDER.to_owned(),
            kind: JobKind::Sync,
            slice: 0,
        }
    );
    let logs = fixture.webhook.logs();
    assert!(
        logs.contains(r#""level":"TRACE""#),
        "the function did not log at TRACE:\n{logs}"
    );
    // Neither in the raw event the runtime received nor in the item the SDK read back
    // (mailroom::redact::TRACE_NEVER_LOGGED).
    assert!(
        !logs.contains(subscription.client_state.expose()),
        "the clientState appears in the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_state_is_accepted_and_enqueues_nothing() {
    let fixture = start().await;
    let subscription = fixture.subscribe().await;

    let body = created_notification(&subscription, ClientState::generate().expose());
    let answer = fixture.notify("/notifications", &body).await;
    // 202 all the same: the answer never tells a caller which subscriptions exist.
    assert_eq!(answer.status, 202, "{answer:?}\n{}", fixture.webhook.logs());
    let queued = fixture.queued().await;
    assert!(queued.is_empty(), "{queued:?}");
    assert!(
        fixture
            .webhook
            .logs()
            .contains("notification with a wrong clientState dropped"),
        "{}",
        fixture.webhook.logs()
    );
    assert!(
        !fixture
            .webhook
            .logs()
            .contains(subscription.client_state.expose()),
        "the stored clientState appears in the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_refused_and_enqueues_nothing() {
    let fixture = start().await;
    let subscription = fixture.subscribe().await;

    let valid = created_notification(&subscription, subscription.client_state.expose());
    let truncated = &valid[..valid.len() / 2];
    let answer = fixture.notify("/lifecycle", truncated).await;
    assert_eq!(answer.status, 400, "{answer:?}\n{}", fixture.webhook.logs());
    assert_eq!(answer.body, "malformed notification");
    let queued = fixture.queued().await;
    assert!(queued.is_empty(), "{queued:?}");
}
