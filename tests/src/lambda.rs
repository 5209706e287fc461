//! A Lambda Runtime API on loopback, so a test can run a function's real binary the way Lambda
//! runs it: the binary long-polls `GET …/invocation/next`, gets an event with its request id and
//! deadline in headers, and posts a response or an error back.
//!
//! Endpoints as documented in "AWS Lambda runtime API" (2018-06-01): `invocation/next`,
//! `invocation/{id}/response`, `invocation/{id}/error`, `init/error`.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use tokio::sync::Notify;

/// What a function answered to one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Response(Value),
    Error(Value),
}

#[derive(Default)]
struct Inner {
    /// When a function first asked for an invocation: the end of its init phase.
    first_poll: Option<std::time::Instant>,
    queue: VecDeque<(String, Value, u64)>,
    outcomes: HashMap<String, Outcome>,
    init_error: Option<Value>,
}

#[derive(Clone, Default)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
}

/// The emulated Runtime API.
pub struct RuntimeApi {
    address: String,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    pub async fn start() -> RuntimeApi {
        let shared = Shared::default();
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        RuntimeApi {
            address,
            shared,
            server,
        }
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Queues an invocation with `event` and a deadline `budget` from now; returns its request id.
    pub fn invoke(&self, event: Value, budget: Duration) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let deadline = SystemTime::now() + budget;
        let deadline_ms = deadline.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        self.shared
            .inner
            .lock()
            .unwrap()
            .queue
            .push_back((id.clone(), event, deadline_ms));
        self.shared.changed.notify_waiters();
        id
    }

    /// Waits for the outcome of invocation `id`.
    pub async fn outcome(&self, id: &str, timeout: Duration) -> Outcome {
        tokio::time::timeout(timeout, async {
            loop {
                let notified = self.shared.changed.notified();
                if let Some(outcome) = self.shared.inner.lock().unwrap().outcomes.get(id) {
                    return outcome.clone();
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no outcome for invocation {id} within {timeout:?}"))
    }

    /// When the function first polled `invocation/next` (its init phase done), waiting up to
    /// `timeout`; `None` if it did not, or reported an init error instead.
    pub async fn first_poll(&self, timeout: Duration) -> Option<std::time::Instant> {
        tokio::time::timeout(timeout, async {
            loop {
                let notified = self.shared.changed.notified();
                {
                    let inner = self.shared.inner.lock().unwrap();
                    if inner.first_poll.is_some() || inner.init_error.is_some() {
                        return inner.first_poll;
                    }
                }
                notified.await;
            }
        })
        .await
        .ok()
        .flatten()
    }

    pub fn init_error(&self) -> Option<Value> {
        self.shared.inner.lock().unwrap().init_error.clone()
    }

    /// Starts a function binary against this Runtime API with the standard Lambda environment plus
    /// `env`; nothing else from the test's environment leaks in. Its stdout and stderr go to
    /// `log`.
    pub fn spawn(&self, binary: &Path, env: &[(&str, String)], log: &Path) -> Child {
        let log_file = std::fs::File::create(log).unwrap();
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", &self.address)
            .env("AWS_LAMBDA_FUNCTION_NAME", "mailroom-test")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/mailroom-test")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            // What Lambda sets for the template's `LoggingConfig: LogFormat: JSON`.
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        for (name, value) in env {
            command.env(name, value);
        }
        command.spawn().unwrap()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(shared): State<Shared>) -> impl IntoResponse {
    {
        let mut inner = shared.inner.lock().unwrap();
        if inner.first_poll.is_none() {
            inner.first_poll = Some(std::time::Instant::now());
            shared.changed.notify_waiters();
        }
    }
    loop {
        let notified = shared.changed.notified();
        if let Some((id, event, deadline_ms)) = shared.inner.lock().unwrap().queue.pop_front() {
            let mut headers = HeaderMap::new();
            headers.insert("Lambda-Runtime-Aws-Request-Id", id.parse().unwrap());
            headers.insert(
                "Lambda-Runtime-Deadline-Ms",
                deadline_ms.to_string().parse().unwrap(),
            );
            headers.insert(
                "Lambda-Runtime-Invoked-Function-Arn",
                "arn:aws:lambda:us-east-1:123456789012:function:mailroom-test"
                    .parse()
                    .unwrap(),
            );
            headers.insert(
                "Lambda-Runtime-Trace-Id",
                "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700".parse().unwrap(),
            );
            return (StatusCode::OK, headers, Json(event));
        }
        notified.await;
    }
}

fn record(shared: &Shared, id: String, outcome: Outcome) -> StatusCode {
    shared.inner.lock().unwrap().outcomes.insert(id, outcome);
    shared.changed.notify_waiters();
    StatusCode::ACCEPTED
}

async fn response(
    State(shared): State<Shared>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    record(&shared, id, Outcome::Response(value))
}

async fn error(
    State(shared): State<Shared>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    record(&shared, id, Outcome::Error(value))
}

async fn init_error(State(shared): State<Shared>, body: String) -> StatusCode {
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    shared.inner.lock().unwrap().init_error = Some(value);
    shared.changed.notify_waiters();
    StatusCode::ACCEPTED
}

/// An EventBridge scheduled event, as EventBridge sends it.
pub fn scheduled_event() -> Value {
    serde_json::json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-23T10:15:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/mailroom-import"],
        "detail": {}
    })
}

/// One message of an SQS FIFO queue as Lambda's SQS event source mapping delivers it: a record
/// of [`sqs_event`]. The function reads `messageId`, `body` and `attributes.MessageGroupId`; the
/// rest is there because Lambda sends it (`md5OfBody` is left out: nothing reads it).
pub fn sqs_record(message_id: &str, group: &str, body: &str) -> Value {
    // FIFO sequence numbers are 20 digits, increasing within a group.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let sequence = format!("1889900000000{n:07}");
    serde_json::json!({
        "messageId": message_id,
        "receiptHandle": format!("AQEB{}", uuid::Uuid::new_v4().simple()),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1795428900000",
            "SequenceNumber": sequence,
            "MessageGroupId": group,
            "SenderId": "AROAEXAMPLE123456789:mailroom-webhook",
            "MessageDeduplicationId": uuid::Uuid::new_v4().simple().to_string(),
            "ApproximateFirstReceiveTimestamp": "1795428900010"
        },
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:mailroom-jobs.fifo",
        "awsRegion": "us-east-1"
    })
}

/// A batch of SQS messages, as the event source mapping invokes the function with it.
pub fn sqs_event(records: Vec<Value>) -> Value {
    serde_json::json!({ "Records": records })
}
