//! Push in one process (`mailroom serve --listen`): a [`JobQueue`] on a channel, and the loop
//! that runs its jobs with the engine. Jobs run one at a time, in arrival order; an identical job
//! already waiting absorbs a new one (a burst of notifications for one folder is one import).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::engine::{Engine, JobOutcome};
use crate::ports::{JobQueue, QueueError, SyncJob};

/// The sending side: what the webhook enqueues on.
#[derive(Clone)]
pub struct LocalJobQueue {
    sender: mpsc::UnboundedSender<SyncJob>,
    waiting: Arc<Mutex<HashSet<String>>>,
}

/// The receiving side, for [`run_local_jobs`].
pub struct LocalJobs {
    receiver: mpsc::UnboundedReceiver<SyncJob>,
    waiting: Arc<Mutex<HashSet<String>>>,
}

/// A new, empty queue.
pub fn local_queue() -> (LocalJobQueue, LocalJobs) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let waiting: Arc<Mutex<HashSet<String>>> = Arc::default();
    (
        LocalJobQueue {
            sender,
            waiting: waiting.clone(),
        },
        LocalJobs { receiver, waiting },
    )
}

fn job_key(job: &SyncJob) -> String {
    format!("{}\n{}\n{}", job.mailbox, job.kind.as_str(), job.folder)
}

fn lock(waiting: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    waiting.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl JobQueue for LocalJobQueue {
    async fn enqueue(&self, job: &SyncJob) -> Result<(), QueueError> {
        if !lock(&self.waiting).insert(job_key(job)) {
            return Ok(());
        }
        self.sender
            .send(job.clone())
            .map_err(|_| QueueError::Unavailable {
                operation: "enqueue",
                detail: "the job runner has stopped".into(),
            })
    }
}

/// Runs jobs as they arrive until `stop` is set (or every sender is gone). A job to retry (the
/// mailbox was busy, say) is queued again after `retry_after`. `report` sees every outcome.
pub async fn run_local_jobs(
    engine: Arc<Engine>,
    mut jobs: LocalJobs,
    queue: LocalJobQueue,
    stop: Arc<AtomicBool>,
    retry_after: Duration,
    report: impl Fn(&SyncJob, &JobOutcome),
) {
    loop {
        let job = tokio::select! {
            job = jobs.receiver.recv() => job,
            _ = stopped(&stop) => None,
        };
        let Some(job) = job else { return };
        lock(&jobs.waiting).remove(&job_key(&job));
        // A job has as long as a Lambda invocation would.
        let stop_at = time::OffsetDateTime::now_utc() + time::Duration::minutes(14);
        let outcome = engine.run_job(&job, stop_at).await;
        report(&job, &outcome);
        if outcome.retry() && !stop.load(Ordering::SeqCst) {
            let queue = queue.clone();
            tokio::spawn(async move {
                tokio::time::sleep(retry_after).await;
                if let Err(e) = queue.enqueue(&job).await {
                    tracing::warn!(error = %e, "could not queue a job again");
                }
            });
        }
    }
}

/// Returns once `stop` is set (checked every 100 ms).
pub async fn stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MailboxAddress;
    use crate::ports::JobKind;

    #[tokio::test]
    async fn an_identical_waiting_job_absorbs_a_new_one() {
        let (queue, mut jobs) = local_queue();
        let job = SyncJob {
            mailbox: MailboxAddress::parse("a@contoso.com").unwrap(),
            folder: "Inbox".into(),
            kind: JobKind::Sync,
        };
        let full = SyncJob {
            kind: JobKind::FullResync,
            ..job.clone()
        };
        for j in [&job, &job, &full, &job] {
            queue.enqueue(j).await.unwrap();
        }
        assert_eq!(jobs.receiver.recv().await.unwrap(), job);
        assert_eq!(jobs.receiver.recv().await.unwrap(), full);
        assert!(jobs.receiver.try_recv().is_err());
    }
}
