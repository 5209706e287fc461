//! [`JobQueue`] on an SQS FIFO queue: one message group per mailbox, so the jobs of a mailbox run
//! in order while different mailboxes run in parallel.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;

use crate::clock::{Clock, SystemClock};
use crate::ports::{JobQueue, QueueError, SyncJob};

/// A [`JobQueue`] on one SQS FIFO queue (the queue needs `FifoQueue=true`; content-based
/// deduplication is not needed, every message carries its own deduplication id).
#[derive(Clone)]
pub struct SqsJobQueue {
    client: Client,
    queue_url: String,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SqsJobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsJobQueue")
            .field("queue_url", &self.queue_url)
            .finish_non_exhaustive()
    }
}

impl SqsJobQueue {
    /// A queue on `queue_url`, deduplicating by the system clock.
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Reads the deduplication window from `clock` instead (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The SQS operations this queue makes (SDK method, the IAM action it needs), on the queue's
    /// ARN.
    pub const IAM_ACTIONS: &[(&str, &str)] = &[("send_message", "sqs:SendMessage")];

    /// The queue this adapter sends to.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// A job from a message body this adapter sent (the consumer side).
    pub fn parse_job(body: &str) -> Result<SyncJob, String> {
        serde_json::from_str(body).map_err(|e| format!("the message body is not a sync job: {e}"))
    }
}

#[async_trait]
impl JobQueue for SqsJobQueue {
    async fn enqueue(&self, job: &SyncJob) -> Result<(), QueueError> {
        let unavailable = |detail: String| QueueError::Unavailable {
            operation: "enqueue",
            detail: format!(
                "sync job for {} folder '{}' on {}: {detail}",
                job.mailbox.as_str(),
                job.folder,
                self.queue_url
            ),
        };
        let body = serde_json::to_string(job).map_err(|e| unavailable(e.to_string()))?;
        // Graph sends a burst of notifications when several messages arrive together, and may
        // repeat one. The deduplication id is a hash of the job and of a 10-second window of the
        // clock (`SyncJob::deduplication_id`): SQS drops a message whose id it saw in the last
        // 5 minutes, so a burst for one folder becomes one job, while a notification in a later
        // window gets a new id and enqueues again (a job already running may have listed the
        // folder before that message arrived). A burst straddling a window boundary gives two
        // jobs: harmless, the import is idempotent. SHA-256 hex is 64 characters, under SQS's
        // 128.
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_group_id(job.mailbox.as_str())
            .message_deduplication_id(job.deduplication_id(self.clock.now()))
            .send()
            .await
            .map_err(|e| unavailable(DisplayErrorContext(e).to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MailboxAddress;

    #[test]
    fn iam_actions_cover_exactly_the_operations_called() {
        let called = crate::adapters::aws::sdk_calls(include_str!("sqs.rs"), &[]);
        assert_eq!(
            called,
            crate::adapters::aws::listed_calls(SqsJobQueue::IAM_ACTIONS)
        );
    }

    #[test]
    fn parse_job_round_trips_and_rejects_junk() {
        let job = SyncJob {
            mailbox: MailboxAddress::parse("a@contoso.com").unwrap(),
            folder: "Inbox/Reports".into(),
            kind: crate::ports::JobKind::FullResync,
        };
        let body = serde_json::to_string(&job).unwrap();
        assert_eq!(SqsJobQueue::parse_job(&body).unwrap(), job);
        let err = SqsJobQueue::parse_job(r#"{"mailbox":"not an address"}"#).unwrap_err();
        assert!(
            err.starts_with("the message body is not a sync job"),
            "{err}"
        );
    }
}
