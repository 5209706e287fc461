//! Jobs from the queue: a mailbox folder's sync job from push (docs/push.md), and a mailbox's
//! job from the scheduled run's fan-out, which works a time slice and queues its continuation
//! (docs/architecture.md, "Fan-out").

use serde::Serialize;
use time::OffsetDateTime;

use super::Engine;
use super::report::{MailboxReport, MailboxStatus};
use crate::domain::job::{JobKind, QueuedJob, SyncJob};
use crate::domain::{MailboxAddress, MailboxConfig};
use crate::ports::{JobQueue, QueueError, StoreError};

/// How a job went; decides whether the queue delivers it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum JobOutcome {
    /// Done: imported what was there, or renewed the subscription.
    Done { imported: u64 },
    /// Nothing to do, and nothing to retry (the folder is no longer configured, say).
    Skipped(String),
    /// Another runner holds the mailbox (or the subscriptions); try again later.
    Busy(String),
    /// Stopped at the deadline with work left; try again.
    Incomplete,
    /// A mailbox job used its time slice with work left and queued its continuation: done here.
    Continued { imported: u64 },
    /// Failed; try again (the queue's redrive policy ends hopeless cases in the dead-letter
    /// queue, where they raise an alarm). `retry_can_help` says whether the cause is one a later
    /// attempt can get past (throttling, an unreachable service) or one that needs a person (a
    /// missing permission or folder, a malformed item), for the log and the operator.
    Failed { error: String, retry_can_help: bool },
}

impl JobOutcome {
    /// Whether the queue should deliver the job again.
    pub fn retry(&self) -> bool {
        matches!(self, Self::Busy(_) | Self::Incomplete | Self::Failed { .. })
    }
}

impl Engine {
    /// Queues one [`JobKind::Mailbox`] job for each mailbox with an enabled folder: the
    /// scheduled run, fanned out. A mailbox whose job cannot be queued is in the report's
    /// `failed`; the others are queued all the same.
    pub async fn enqueue_mailboxes(&self, queue: &dyn JobQueue) -> Result<FanOut, StoreError> {
        let mut mailboxes: Vec<MailboxAddress> = self
            .state
            .list_mailboxes()
            .await?
            .into_iter()
            .filter(|c| c.enabled)
            .map(|c| c.address)
            .collect();
        mailboxes.dedup();
        let jobs: Vec<SyncJob> = mailboxes.into_iter().map(SyncJob::mailbox).collect();
        let failed = enqueue_many(queue, &jobs).await;
        let mut report = FanOut {
            queued: jobs.len() - failed.len(),
            failed: Vec::new(),
        };
        for (job, e) in failed {
            tracing::warn!(mailbox = %job.mailbox, error = %e, "could not queue the mailbox's job; the next scheduled run queues it again");
            report.failed.push(format!("{}: {e}", job.mailbox));
        }
        Ok(report)
    }

    /// [`Self::run_job`], and for a [`JobKind::Mailbox`] job that ran out of its time slice
    /// with work left, its continuation queued on `queue` (a new message, so a long backlog
    /// never reaches the queue's delivery limit).
    pub async fn run_job_continuing(
        &self,
        job: &SyncJob,
        stop_at: OffsetDateTime,
        queue: &dyn JobQueue,
    ) -> JobOutcome {
        let (outcome, imported) = self.run_job_counting(job, stop_at).await;
        if job.kind != JobKind::Mailbox || outcome != JobOutcome::Incomplete {
            return outcome;
        }
        match queue.enqueue(&job.continuation()).await {
            Ok(()) => {
                tracing::info!("work left: continuation queued");
                JobOutcome::Continued { imported }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not queue the continuation; the job is delivered again instead");
                JobOutcome::Incomplete
            }
        }
    }

    /// Runs one job, stopping new work at `stop_at`.
    pub async fn run_job(&self, job: &SyncJob, stop_at: OffsetDateTime) -> JobOutcome {
        self.run_job_counting(job, stop_at).await.0
    }

    /// [`Self::run_job`], with the messages the job stored (whatever its outcome).
    #[tracing::instrument(skip_all, fields(mailbox = %job.mailbox, folder = %job.folder, kind = job.kind.as_str()))]
    async fn run_job_counting(&self, job: &SyncJob, stop_at: OffsetDateTime) -> (JobOutcome, u64) {
        let (outcome, imported) = self.run_job_inner(job, stop_at).await;
        tracing::info!(outcome = ?outcome, retry = outcome.retry(), "sync job finished");
        (outcome, imported)
    }

    async fn run_job_inner(&self, job: &SyncJob, stop_at: OffsetDateTime) -> (JobOutcome, u64) {
        match job.kind {
            JobKind::Subscription | JobKind::Resubscribe => (self.subscription_job(job).await, 0),
            JobKind::Mailbox | JobKind::Sync | JobKind::FullResync => {
                self.import_job(job, stop_at).await
            }
        }
    }

    async fn import_job(&self, job: &SyncJob, stop_at: OffsetDateTime) -> (JobOutcome, u64) {
        let configs = match self.state.mailbox_folders(&job.mailbox).await {
            Ok(configs) => configs,
            Err(e) => {
                let failed = JobOutcome::Failed {
                    retry_can_help: e.is_retryable(),
                    error: e.to_string(),
                };
                return (failed, 0);
            }
        };
        // The enabled folders the job is about: the mailbox's, or the one folder's.
        let mine: Vec<MailboxConfig> = configs
            .into_iter()
            .filter(|c| c.enabled && (job.kind == JobKind::Mailbox || c.key() == job.key()))
            .collect();
        if mine.is_empty() {
            let skipped = JobOutcome::Skipped(match job.kind {
                JobKind::Mailbox => {
                    format!("{} has no (or no longer an) enabled folder", job.mailbox)
                }
                _ => format!(
                    "{} is not (or no longer) a configured, enabled mailbox folder",
                    job.key()
                ),
            });
            return (skipped, 0);
        }
        let report = if job.kind == JobKind::Mailbox {
            // One slice, so a mailbox with a long backlog takes turns with the others.
            let stop_at = stop_at.min(self.clock.now() + self.options.job_slice);
            self.import_mailbox(job.mailbox.clone(), mine, stop_at)
                .await
        } else {
            let full_resync = job.kind == JobKind::FullResync;
            self.import_mailbox_with(job.mailbox.clone(), mine, stop_at, full_resync)
                .await
        };
        (outcome_of(&report), report.imported())
    }

    /// A [`JobKind::Subscription`] job keeps the folder's subscription; a
    /// [`JobKind::Resubscribe`] job (a lifecycle event) renews it even when it is not due.
    async fn subscription_job(&self, job: &SyncJob) -> JobOutcome {
        let Some(push) = &self.options.push else {
            return JobOutcome::Skipped(
                "push is not configured here (no public webhook URL)".into(),
            );
        };
        let force = job.kind == JobKind::Resubscribe;
        match self.keep_folder_subscription(push, &job.key(), force).await {
            Ok(Some(_)) => JobOutcome::Done { imported: 0 },
            Ok(None) => JobOutcome::Busy(format!(
                "another runner is keeping {}'s subscriptions",
                job.mailbox
            )),
            Err(e) => JobOutcome::Failed {
                retry_can_help: e.retry_can_help(),
                error: e.to_string(),
            },
        }
    }
}

/// Hands `jobs` to `queue` [`ENQUEUE_CHUNK`] at a time, [`ENQUEUE_CONCURRENCY`] hand-overs in
/// flight; returns the jobs not queued, each with why.
pub(super) async fn enqueue_many(
    queue: &dyn JobQueue,
    jobs: &[SyncJob],
) -> Vec<(SyncJob, QueueError)> {
    use futures::StreamExt;
    futures::stream::iter(jobs.chunks(ENQUEUE_CHUNK))
        .map(|chunk| queue.enqueue_all(chunk))
        .buffer_unordered(ENQUEUE_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Jobs the fan-out hands the queue at once (SQS sends them ten to a request), and how many such
/// hand-overs are in flight.
const ENQUEUE_CHUNK: usize = 50;
const ENQUEUE_CONCURRENCY: usize = 8;

/// What the scheduled run's fan-out queued.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FanOut {
    /// Mailboxes whose job is queued.
    pub queued: usize,
    /// Mailboxes whose job could not be queued, each with why.
    pub failed: Vec<String>,
}

/// A job's outcome from the import report of its mailbox.
fn outcome_of(report: &MailboxReport) -> JobOutcome {
    let error = report
        .error
        .clone()
        .or_else(|| report.folders.iter().find_map(|f| f.error.clone()));
    match report.status {
        MailboxStatus::Busy => JobOutcome::Busy(error.unwrap_or_default()),
        // Only the person can fix it (`mailroom credentials login`); the queue's redrive still
        // applies, and the next scheduled run tries again.
        MailboxStatus::NeedsSignIn => JobOutcome::Failed {
            error: error.unwrap_or_default(),
            retry_can_help: false,
        },
        MailboxStatus::Failed => JobOutcome::Failed {
            error: error.unwrap_or_else(|| format!("{} message(s) failed", report.failed())),
            // The report keeps the error's text, not its kind: assume it may pass.
            retry_can_help: true,
        },
        MailboxStatus::Ok if report.folders.iter().any(|f| f.stopped_at_deadline) => {
            JobOutcome::Incomplete
        }
        MailboxStatus::Ok => JobOutcome::Done {
            imported: report.imported(),
        },
    }
}

/// Runs a batch from a FIFO queue and returns the ids of the messages to deliver again.
///
/// Groups run in parallel (up to `parallelism`), the messages of a group one after another.
/// Once a message fails, the later messages of its group are not run and are reported failed
/// too: the queue must deliver them again, after the failed one, or the group's order breaks.
pub async fn run_batch<F, Fut>(batch: Vec<QueuedJob>, parallelism: usize, run: F) -> Vec<String>
where
    F: Fn(SyncJob) -> Fut,
    Fut: std::future::Future<Output = JobOutcome>,
{
    use futures::StreamExt;

    let mut groups: Vec<(String, Vec<QueuedJob>)> = Vec::new();
    for item in batch {
        match groups.iter_mut().find(|(g, _)| *g == item.group) {
            Some((_, items)) => items.push(item),
            None => groups.push((item.group.clone(), vec![item])),
        }
    }
    let run = &run;
    let failed: Vec<Vec<String>> = futures::stream::iter(groups)
        .map(|(group, items)| async move {
            let mut failed: Vec<String> = Vec::new();
            for item in items {
                if !failed.is_empty() {
                    tracing::info!(message = %item.id, %group, "not run: an earlier job of its group failed");
                    failed.push(item.id);
                    continue;
                }
                let retry = match item.job {
                    Ok(job) => run(job).await.retry(),
                    Err(e) => {
                        tracing::error!(message = %item.id, %group, error = %e, "queue message is not a sync job; it will end in the dead-letter queue");
                        true
                    }
                };
                if retry {
                    failed.push(item.id);
                }
            }
            failed
        })
        .buffered(parallelism.max(1))
        .collect()
        .await;
    failed.into_iter().flatten().collect()
}

/// Runs the jobs of a local queue (`mailroom serve`) with `workers` workers until `stop`, each
/// job with as long as a Lambda invocation would have, a mailbox job for its slice (queueing its
/// continuation); a job whose outcome asks for a retry is queued again after `retry_after`.
/// `report` hears of every outcome. Returns once every worker has finished the job in hand.
#[cfg(feature = "local")]
pub async fn run_local_jobs(
    engine: std::sync::Arc<Engine>,
    jobs: crate::adapters::local::LocalJobs,
    queue: crate::adapters::local::LocalJobQueue,
    stop: tokio_util::sync::CancellationToken,
    retry_after: std::time::Duration,
    workers: usize,
    report: impl Fn(&SyncJob, &JobOutcome),
) {
    use crate::ports::JobQueue;
    let jobs = tokio::sync::Mutex::new(jobs);
    let worker = || async {
        loop {
            let job = tokio::select! {
                job = async { jobs.lock().await.recv().await } => job,
                _ = stop.cancelled() => None,
            };
            let Some(job) = job else { return };
            let stop_at = OffsetDateTime::now_utc() + time::Duration::minutes(14);
            let outcome = engine.run_job_continuing(&job, stop_at, &queue).await;
            report(&job, &outcome);
            if outcome.retry() && !stop.is_cancelled() {
                let queue = queue.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(retry_after).await;
                    if let Err(e) = queue.enqueue(&job).await {
                        tracing::warn!(error = %e, "could not queue a job again");
                    }
                });
            }
        }
    };
    futures::future::join_all((0..workers.max(1)).map(|_| worker())).await;
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::domain::MailboxAddress;

    fn item(id: &str, mailbox: &str, folder: &str) -> QueuedJob {
        QueuedJob {
            id: id.into(),
            group: mailbox.into(),
            job: Ok(SyncJob {
                mailbox: MailboxAddress::parse(mailbox).unwrap(),
                folder: folder.into(),
                kind: JobKind::Sync,
                slice: 0,
            }),
        }
    }

    #[tokio::test]
    async fn a_failure_fails_the_rest_of_its_group_and_no_other_group() {
        let ran = Mutex::new(Vec::new());
        let batch = vec![
            item("1", "a@x.com", "Inbox"),
            item("2", "b@x.com", "Inbox"),
            item("3", "a@x.com", "Fails"),
            item("4", "b@x.com", "Reports"),
            item("5", "a@x.com", "Inbox"),
            QueuedJob {
                id: "6".into(),
                group: "c@x.com".into(),
                job: Err(crate::domain::job::NotAJob(
                    serde_json::from_str::<SyncJob>("{}").unwrap_err(),
                )),
            },
            item("7", "c@x.com", "Inbox"),
            item("8", "d@x.com", "Busy"),
        ];
        let failed = run_batch(batch, 4, |job| {
            ran.lock()
                .unwrap()
                .push(format!("{}/{}", job.mailbox, job.folder));
            async move {
                match job.folder.as_str() {
                    "Fails" => JobOutcome::Failed {
                        error: "boom".into(),
                        retry_can_help: true,
                    },
                    "Busy" => JobOutcome::Busy("leased".into()),
                    _ => JobOutcome::Done { imported: 1 },
                }
            }
        })
        .await;
        let mut failed = failed;
        failed.sort();
        assert_eq!(failed, ["3", "5", "6", "7", "8"]);
        let mut ran = ran.into_inner().unwrap();
        ran.sort();
        // 5 and 7 never ran: they come after a failure in their group.
        assert_eq!(
            ran,
            [
                "a@x.com/Fails",
                "a@x.com/Inbox",
                "b@x.com/Inbox",
                "b@x.com/Reports",
                "d@x.com/Busy"
            ]
        );
    }

    #[test]
    fn only_busy_incomplete_and_failed_jobs_are_retried() {
        assert!(!JobOutcome::Done { imported: 0 }.retry());
        assert!(!JobOutcome::Skipped("gone".into()).retry());
        assert!(JobOutcome::Busy("x".into()).retry());
        assert!(JobOutcome::Incomplete.retry());
        assert!(
            JobOutcome::Failed {
                error: "x".into(),
                retry_can_help: true
            }
            .retry()
        );
    }

    #[test]
    fn a_failure_says_whether_a_retry_can_help() {
        use crate::engine::ImportError;
        use crate::ports::StoreError;
        let store = |e: StoreError| ImportError::Store(e).retry_can_help();
        assert!(store(StoreError::Throttled {
            operation: "get record",
            detail: "slow down".into(),
            cause: None,
        }));
        assert!(store(StoreError::unavailable("get record", "unreachable")));
        assert!(!store(StoreError::Malformed {
            operation: "get record",
            detail: "'size' is not a number".into()
        }));
        let missing = crate::graph::GraphError::Config("folder path '' is empty".into());
        assert!(!ImportError::Graph(missing).retry_can_help());
    }
}
