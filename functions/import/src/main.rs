//! The import Lambda function, with two triggers:
//! - an EventBridge schedule: keep the Graph subscriptions (when `MAILROOM_WEBHOOK_URL` is set),
//!   then import every enabled mailbox folder until shortly before the invocation's deadline;
//! - the SQS FIFO queue of sync jobs the webhook fills: run each job, and report the ones to
//!   deliver again as partial batch failures.
//!
//! Glue only: configuration from the environment, clients built once per cold start, the engine
//! does the work.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use mailroom::adapters::aws::{
    AwsClients, DynamoStateStore, S3BlobStore, SecretsManagerSource, SqsJobQueue,
};
use mailroom::clock::SystemClock;
use mailroom::config::ImportSettings;
use mailroom::credentials::Credentials;
use mailroom::engine::{
    Engine, EngineOptions, NoObserver, QueuedJob, RunReport, SubscriptionReport, run_batch,
};
use mailroom::graph::GraphClient;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AWS_LAMBDA_LOG_LEVEL")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .without_time()
        .init();

    let settings = ImportSettings::from_env()?;
    let clients = AwsClients::from_env(settings.aws.s3_path_style).await;
    let engine = Engine {
        state: Arc::new(DynamoStateStore::new(clients.dynamodb, &settings.aws.table)),
        blobs: Arc::new(S3BlobStore::new(clients.s3, &settings.aws.bucket)),
        credentials: Arc::new(Credentials::new(
            Arc::new(SecretsManagerSource::new(clients.secrets)),
            settings.aws.secret_cache_ttl,
        )),
        graph: GraphClient::new(settings.aws.graph.clone())?,
        clock: Arc::new(SystemClock),
        observer: Arc::new(NoObserver),
        options: EngineOptions {
            mailbox_parallelism: settings.mailbox_parallelism,
            push: settings.push.clone(),
            ..EngineOptions::default()
        },
        stop: Default::default(),
    };
    let retries = settings
        .queue_url
        .as_ref()
        .map(|url| SqsJobQueue::new(clients.sqs.clone(), url));
    let engine = &engine;
    let retries = retries.as_ref();
    let stop_margin = settings.stop_margin;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let stop_at = stop_at(
            event.context.deadline(),
            OffsetDateTime::now_utc(),
            stop_margin,
        );
        match Trigger::parse(event.payload)? {
            Trigger::Schedule => to_json(&scheduled_import(engine, stop_at).await?),
            Trigger::Queue(batch) => to_json(&sync_jobs(engine, retries, batch, stop_at).await),
        }
    }))
    .await
}

/// Lambda's longest timeout: the budget assumed when the runtime's deadline is not a real one.
const LONGEST_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// When new work stops in this invocation: `margin` before the runtime's deadline.
///
/// A deadline that has already passed when the invocation arrives is not a real one: `cargo
/// lambda watch` (1.9.2, the local Lambda emulator) sends a fixed `Lambda-Runtime-Deadline-Ms:
/// 600000`, ten minutes after the Unix epoch. Taken literally, every invocation would stop before
/// it starts and import nothing, so the deadline is then reckoned from Lambda's longest timeout.
fn stop_at(deadline: SystemTime, now: OffsetDateTime, margin: Duration) -> OffsetDateTime {
    let deadline = OffsetDateTime::from(deadline);
    let deadline = if deadline > now {
        deadline
    } else {
        tracing::warn!(
            %deadline,
            assumed_timeout_seconds = LONGEST_TIMEOUT.as_secs(),
            "the runtime's deadline has already passed; assuming Lambda's longest timeout"
        );
        now + LONGEST_TIMEOUT
    };
    deadline - margin
}

/// What invoked the function.
enum Trigger {
    /// The schedule's tick (its contents do not matter; it is checked to be one).
    Schedule,
    Queue(SqsEvent),
}

impl Trigger {
    /// An SQS batch has `Records`; anything else must be the EventBridge schedule's event.
    fn parse(payload: Value) -> Result<Self, Diagnostic> {
        let invalid = |kind: &str, e: serde_json::Error| Diagnostic {
            error_type: "InvalidEvent".into(),
            error_message: format!(
                "the event looks like {kind} but does not parse ({e}); this function is invoked by its EventBridge schedule and its SQS queue only"
            ),
        };
        if payload.get("Records").is_some() {
            serde_json::from_value(payload)
                .map(Self::Queue)
                .map_err(|e| invalid("an SQS batch", e))
        } else {
            serde_json::from_value::<EventBridgeEvent>(payload)
                .map(|_| Self::Schedule)
                .map_err(|e| invalid("an EventBridge event", e))
        }
    }
}

fn to_json(value: &impl Serialize) -> Result<Value, Diagnostic> {
    serde_json::to_value(value).map_err(|e| Diagnostic {
        error_type: "ResponseNotSerializable".into(),
        error_message: e.to_string(),
    })
}

/// What a scheduled run returns.
#[derive(Serialize)]
struct ScheduledReport {
    /// Present when push is configured.
    subscriptions: Option<SubscriptionReport>,
    #[serde(flatten)]
    run: RunReport,
}

/// One scheduled run: subscriptions first (so a folder subscribed now gets push while it is
/// imported), then every mailbox. Per-mailbox failures are in the report (and logged by the
/// engine); only a failure to read the configuration fails the invocation.
async fn scheduled_import(
    engine: &Engine,
    stop_at: OffsetDateTime,
) -> Result<ScheduledReport, Diagnostic> {
    let store_failed = |e: mailroom::ports::StoreError| Diagnostic {
        error_type: "StateStoreUnavailable".into(),
        error_message: e.to_string(),
    };
    let subscriptions = match engine.options.push {
        Some(_) => Some(
            engine
                .maintain_subscriptions()
                .await
                .map_err(store_failed)?,
        ),
        None => None,
    };
    let report = engine.run(stop_at, None).await.map_err(store_failed)?;
    tracing::info!(
        mailboxes = report.mailboxes.len(),
        imported = report.imported(),
        failed_mailboxes = report.failed_mailboxes(),
        "scheduled import finished"
    );
    Ok(ScheduledReport {
        subscriptions,
        run: report,
    })
}

/// A batch of sync jobs from the FIFO queue. The answer lists the messages to deliver again
/// (the event source mapping has `ReportBatchItemFailures`); a job started too close to the
/// deadline is one of them. With `retries`, those come back after a short backoff
/// ([`SqsJobQueue::retry_delay`]) rather than the queue's 15-minute visibility timeout.
async fn sync_jobs(
    engine: &Engine,
    retries: Option<&SqsJobQueue>,
    batch: SqsEvent,
    stop_at: OffsetDateTime,
) -> SqsBatchResponse {
    let records = batch.records;
    let jobs: Vec<QueuedJob> = records
        .iter()
        .map(|record| QueuedJob {
            id: record.message_id.clone().unwrap_or_default(),
            group: record
                .attributes
                .get("MessageGroupId")
                .cloned()
                .unwrap_or_default(),
            job: SqsJobQueue::parse_job(record.body.as_deref().unwrap_or_default()),
        })
        .collect();
    let count = jobs.len();
    let failed = run_batch(jobs, engine.options.mailbox_parallelism, |job| async move {
        if OffsetDateTime::now_utc() >= stop_at {
            return mailroom::engine::JobOutcome::Incomplete;
        }
        engine.run_job(&job, stop_at).await
    })
    .await;
    tracing::info!(
        jobs = count,
        retried = failed.len(),
        "sync job batch finished"
    );
    if let Some(queue) = retries {
        for record in records
            .iter()
            .filter(|r| failed.contains(r.message_id.as_ref().unwrap_or(&String::new())))
        {
            let receives = record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let delay = SqsJobQueue::retry_delay(receives);
            let handle = record.receipt_handle.as_deref().unwrap_or_default();
            if let Err(e) = queue.retry_after(handle, delay).await {
                // The visibility timeout still brings the job back, only later.
                tracing::warn!(error = %e, "could not shorten a failed job's wait");
            }
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use time::macros::datetime;

    use super::*;

    #[test]
    fn new_work_stops_the_margin_before_the_deadline() {
        let now = datetime!(2026-11-23 10:15:00 UTC);
        let deadline = SystemTime::from(now + Duration::from_secs(840));
        assert_eq!(
            stop_at(deadline, now, Duration::from_secs(60)),
            datetime!(2026-11-23 10:28:00 UTC)
        );
    }

    #[test]
    fn a_deadline_already_passed_is_reckoned_from_the_longest_timeout() {
        let now = datetime!(2026-11-23 10:15:00 UTC);
        // What `cargo lambda watch` 1.9.2 sends.
        let emulated = UNIX_EPOCH + Duration::from_millis(600_000);
        assert_eq!(
            stop_at(emulated, now, Duration::from_secs(60)),
            datetime!(2026-11-23 10:29:00 UTC)
        );
        assert_eq!(
            stop_at(SystemTime::from(now), now, Duration::from_secs(60)),
            datetime!(2026-11-23 10:29:00 UTC)
        );
    }
}
