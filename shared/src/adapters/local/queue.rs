//! The job queue in one process (`mailroom serve --listen`): a [`JobQueue`] on a channel, the
//! local stand-in for the SQS FIFO queue. Jobs come out in arrival order; an identical job
//! already waiting absorbs a new one (a burst of notifications for one folder is one import).
//! The CLI runs them with the engine.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::domain::job::SyncJob;
use crate::ports::{JobQueue, QueueError};

/// The sending side: what the webhook enqueues on.
#[derive(Clone)]
pub struct LocalJobQueue {
    sender: mpsc::UnboundedSender<SyncJob>,
    waiting: Arc<Mutex<HashSet<String>>>,
}

/// The receiving side: the runner takes jobs from it.
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

impl LocalJobs {
    /// The next job, once one is queued; `None` when every sender is gone. A job taken is no
    /// longer waiting, so the same job queued again is queued anew.
    pub async fn recv(&mut self) -> Option<SyncJob> {
        let job = self.receiver.recv().await?;
        lock(&self.waiting).remove(&job_key(&job));
        Some(job)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MailboxAddress;
    use crate::domain::job::JobKind;

    #[tokio::test]
    async fn an_identical_waiting_job_absorbs_a_new_one() {
        let (queue, mut jobs) = local_queue();
        let job = SyncJob {
            mailbox: MailboxAddress::parse("a@contoso.com").unwrap(),
            folder: "Inbox".into(),
            kind: JobKind::Sync,
            slice: 0,
        };
        let full = SyncJob {
            kind: JobKind::FullResync,
            slice: 0,
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
