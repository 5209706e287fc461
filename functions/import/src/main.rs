//! The import Lambda function, with two triggers:
//! - an EventBridge schedule: apply the discovery rules that are due (daily by default), keep the
//!   Graph subscriptions (when `MAILROOM_WEBHOOK_URL` is set), then fan out: queue one job per
//!   mailbox on the FIFO queue (`MAILROOM_QUEUE_URL`; without it, import every enabled mailbox
//!   folder in this invocation until shortly before its deadline);
//! - the SQS FIFO queue: the webhook's sync jobs and the fan-out's mailbox jobs. Run each job
//!   (a mailbox job for one time slice, queueing its continuation if work is left), and report
//!   the ones to deliver again as partial batch failures.
//!
//! Glue only: configuration from the environment, clients built once per cold start, the engine
//! does the work (docs/architecture.md).

use std::sync::Arc;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use mailroom::adapters::aws::{AwsClients, EventBridgePublisher, SqsJobQueue};
use mailroom::config::ImportSettings;
use mailroom::engine::{
    DiscoveryReport, Engine, EngineOptions, FanOut, JobOutcome, RunReport, SubscriptionReport,
    run_batch,
};
use mailroom::lambda::{Trigger, init_tracing, stop_at, to_json};
use mailroom::ports::JobQueue;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

const TRIGGERS: &str =
    "the import function is invoked by its EventBridge schedule and its SQS queue only";

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let settings = ImportSettings::from_env()?;
    let clients = AwsClients::from_env(settings.aws.s3_path_style).await;
    let mut engine = mailroom::adapters::aws::engine(&settings.aws, &clients)?;
    engine.events = settings.event_bus.as_ref().map(|bus| {
        Arc::new(EventBridgePublisher::new(clients.eventbridge.clone(), bus))
            as Arc<dyn mailroom::ports::EventPublisher>
    });
    engine.options = EngineOptions {
        mailbox_parallelism: settings.mailbox_parallelism,
        job_slice: settings.job_slice,
        push: settings.push.clone(),
        ..EngineOptions::default()
    };
    let queue = settings
        .queue_url
        .as_ref()
        .map(|url| SqsJobQueue::new(clients.sqs.clone(), url));
    let (engine, queue, margin) = (&engine, queue.as_ref(), settings.stop_margin);
    let discover_every = settings.discover_every;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let stop_at = stop_at(event.context.deadline(), OffsetDateTime::now_utc(), margin);
        match Trigger::parse(event.payload, TRIGGERS)? {
            Trigger::Schedule => {
                to_json(&scheduled_import(engine, queue, discover_every, stop_at).await?)
            }
            Trigger::Queue(batch) => to_json(&sync_jobs(engine, queue, batch, stop_at).await),
            other => Err(other.unexpected(TRIGGERS)),
        }
    }))
    .await
}

/// What a scheduled run returns.
#[derive(Serialize)]
struct ScheduledReport {
    /// The discovery rules applied in this run (those due).
    discovery: DiscoverySummary,
    /// Present when push is configured.
    subscriptions: Option<SubscriptionReport>,
    /// With the queue: the mailbox jobs queued.
    fan_out: Option<FanOut>,
    /// Without the queue: the import, run here.
    #[serde(flatten)]
    run: Option<RunReport>,
}

/// Counts of a discovery run, for the invocation's result.
#[derive(Serialize)]
struct DiscoverySummary {
    rules: usize,
    failed_rules: usize,
    added: usize,
    enabled: usize,
    disabled: usize,
}

impl From<&DiscoveryReport> for DiscoverySummary {
    fn from(report: &DiscoveryReport) -> Self {
        let plans = || report.rules.iter().filter_map(|r| r.outcome.as_ref().ok());
        Self {
            rules: report.rules.len(),
            failed_rules: report.failed(),
            added: plans().map(|c| c.plan.add.len()).sum(),
            enabled: plans().map(|c| c.plan.enable.len()).sum(),
            disabled: plans().map(|c| c.plan.disable.len()).sum::<usize>() + report.orphaned.len(),
        }
    }
}

/// One scheduled run: discovery first (a new user's mailbox is imported in the same run), then
/// subscriptions (so a folder subscribed now gets push while it is imported), then every mailbox:
/// one job each on the queue, or imported here without one. Per-rule and per-mailbox failures
/// are in the report (and logged by the engine); only a failure to read or write the
/// configuration fails the invocation.
async fn scheduled_import(
    engine: &Engine,
    queue: Option<&SqsJobQueue>,
    discover_every: std::time::Duration,
    stop_at: OffsetDateTime,
) -> Result<ScheduledReport, Diagnostic> {
    let discovery = DiscoverySummary::from(&engine.discover_due(discover_every).await?);
    // With the queue, the folders whose subscription is due get a job each, as mailboxes do.
    let subscriptions = match engine.options.push {
        Some(_) => Some(
            engine
                .maintain_subscriptions(queue.map(|q| q as &dyn JobQueue))
                .await?,
        ),
        None => None,
    };
    if let Some(queue) = queue {
        let fan_out = engine.enqueue_mailboxes(queue).await?;
        tracing::info!(
            queued = fan_out.queued,
            not_queued = fan_out.failed.len(),
            "scheduled fan-out finished"
        );
        return Ok(ScheduledReport {
            discovery,
            subscriptions,
            fan_out: Some(fan_out),
            run: None,
        });
    }
    let run = engine.run(stop_at, None).await?;
    tracing::info!(
        mailboxes = run.mailboxes.len(),
        imported = run.imported(),
        failed_mailboxes = run.failed_mailboxes(),
        "scheduled import finished"
    );
    Ok(ScheduledReport {
        discovery,
        subscriptions,
        fan_out: None,
        run: Some(run),
    })
}

/// A batch of jobs from the FIFO queue. A job started too close to the deadline is one to
/// deliver again; with the queue's URL those come back after a short backoff, and a mailbox job
/// with work left after its slice queues its continuation.
async fn sync_jobs(
    engine: &Engine,
    queue: Option<&SqsJobQueue>,
    batch: SqsEvent,
    stop_at: OffsetDateTime,
) -> SqsBatchResponse {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let jobs = SqsJobQueue::jobs_of(&batch);
    let count = jobs.len();
    let failed_mailboxes = &AtomicUsize::new(0);
    let failed = run_batch(jobs, engine.options.mailbox_parallelism, |job| async move {
        if OffsetDateTime::now_utc() >= stop_at {
            return JobOutcome::Incomplete;
        }
        let outcome = match queue {
            Some(queue) => engine.run_job_continuing(&job, stop_at, queue).await,
            None => engine.run_job(&job, stop_at).await,
        };
        if matches!(outcome, JobOutcome::Failed { .. }) {
            failed_mailboxes.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    })
    .await;
    // `failed_mailboxes` feeds the FailedMailboxes alarm, as the in-process run's line does.
    tracing::info!(
        jobs = count,
        retried = failed.len(),
        failed_mailboxes = failed_mailboxes.load(Ordering::Relaxed),
        "sync job batch finished"
    );
    if let Some(queue) = queue {
        queue.retry_failed(&batch, &failed).await;
    }
    SqsJobQueue::batch_response(failed)
}
