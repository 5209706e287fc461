//! [`JobQueue`] on an SQS FIFO queue: one message group per mailbox, so the jobs of a mailbox run
//! in order while different mailboxes run in parallel.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::clock::{Clock, SystemClock};
#[cfg(feature = "lambda")]
use crate::domain::job::QueuedJob;
use crate::domain::job::{NotAJob, SyncJob};
use crate::ports::{JobQueue, QueueError};

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

    /// The SQS operations the sending side makes (SDK method, the IAM action it needs), on the
    /// queue's ARN: the webhook's.
    pub const IAM_ACTIONS: &[(&str, &str)] = &[
        ("send_message", "sqs:SendMessage"),
        // SendMessageBatch is authorised as SendMessage.
        ("send_message_batch", "sqs:SendMessage"),
    ];

    /// The most messages one SendMessageBatch takes.
    const BATCH: usize = 10;

    /// The SQS operations the consuming side makes on top of what Lambda's poller does:
    /// [`Self::retry_after`]. The import function's.
    pub const CONSUMER_IAM_ACTIONS: &[(&str, &str)] =
        &[("change_message_visibility", "sqs:ChangeMessageVisibility")];

    /// How long a job that could not run waits before it is delivered again, by how often it has
    /// been delivered: 30 s, doubling, at most 15 minutes (the queue's visibility timeout, which
    /// would apply anyway). A busy mailbox is usually free again within seconds; a job failing
    /// for good reaches the dead-letter queue after about an hour instead of minutes.
    pub fn retry_delay(receive_count: u32) -> std::time::Duration {
        let doublings = receive_count.saturating_sub(1).min(5);
        std::time::Duration::from_secs((30u64 << doublings).min(900))
    }

    /// Makes a received message visible again after `delay`, instead of after the queue's
    /// visibility timeout.
    pub async fn retry_after(
        &self,
        receipt_handle: &str,
        delay: std::time::Duration,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(i32::try_from(delay.as_secs()).unwrap_or(900))
            .send()
            .await
            .map_err(|e| QueueError::Unavailable {
                operation: "change message visibility",
                detail: DisplayErrorContext(e).to_string(),
            })?;
        Ok(())
    }

    /// The queue this adapter sends to.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// A job from a message body this adapter sent (the consumer side).
    pub fn parse_job(body: &str) -> Result<SyncJob, NotAJob> {
        serde_json::from_str(body).map_err(NotAJob)
    }
}

/// The consuming side, in the import function: Lambda's SQS event in, the partial batch response
/// out (the event source mapping has `ReportBatchItemFailures`).
#[cfg(feature = "lambda")]
impl SqsJobQueue {
    /// The jobs of a batch, in delivery order, each with its message id and FIFO group.
    pub fn jobs_of(batch: &aws_lambda_events::sqs::SqsEvent) -> Vec<QueuedJob> {
        batch
            .records
            .iter()
            .map(|record| QueuedJob {
                id: record.message_id.clone().unwrap_or_default(),
                group: record
                    .attributes
                    .get("MessageGroupId")
                    .cloned()
                    .unwrap_or_default(),
                job: Self::parse_job(record.body.as_deref().unwrap_or_default()),
            })
            .collect()
    }

    /// Brings each failed message of `batch` back after [`Self::retry_delay`] of its receive
    /// count, instead of after the queue's visibility timeout. Best effort: a message whose wait
    /// cannot be shortened still comes back, only later.
    pub async fn retry_failed(&self, batch: &aws_lambda_events::sqs::SqsEvent, failed: &[String]) {
        for record in &batch.records {
            let Some(id) = record.message_id.as_ref() else {
                continue;
            };
            if !failed.contains(id) {
                continue;
            }
            let receives = record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let handle = record.receipt_handle.as_deref().unwrap_or_default();
            if let Err(e) = self.retry_after(handle, Self::retry_delay(receives)).await {
                tracing::warn!(error = %e, "could not shorten a failed job's wait");
            }
        }
    }

    /// The answer that makes Lambda deliver `failed` again and delete the rest.
    pub fn batch_response(failed: Vec<String>) -> aws_lambda_events::sqs::SqsBatchResponse {
        let mut response = aws_lambda_events::sqs::SqsBatchResponse::default();
        response.batch_item_failures = failed
            .into_iter()
            .map(|id| {
                let mut failure = aws_lambda_events::sqs::BatchItemFailure::default();
                failure.item_identifier = id;
                failure
            })
            .collect();
        response
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

    /// Ten jobs per SendMessageBatch (a tenth of the requests, and of their cost), with the same
    /// group and deduplication ids as [`Self::enqueue`]. A job is queued when SQS lists its entry
    /// as successful; a batch that fails as a whole fails each of its jobs.
    async fn enqueue_all(&self, jobs: &[SyncJob]) -> Vec<(SyncJob, QueueError)> {
        let now = self.clock.now();
        let mut failed = Vec::new();
        for chunk in jobs.chunks(Self::BATCH) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, job) in chunk.iter().enumerate() {
                let entry = serde_json::to_string(job)
                    .map_err(|e| e.to_string())
                    .and_then(|body| {
                        SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(body)
                            .message_group_id(job.mailbox.as_str())
                            .message_deduplication_id(job.deduplication_id(now))
                            .build()
                            .map_err(|e| e.to_string())
                    });
                match entry {
                    Ok(entry) => entries.push(entry),
                    Err(detail) => failed.push((job.clone(), self.batch_error(detail))),
                }
            }
            if entries.is_empty() {
                continue;
            }
            let sent = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            match sent {
                Ok(output) => {
                    // An entry is sent when SQS lists it as successful; any other is not.
                    for (i, job) in chunk.iter().enumerate() {
                        let id = i.to_string();
                        if output.successful().iter().any(|e| e.id() == id) {
                            continue;
                        }
                        let detail = match output.failed().iter().find(|e| e.id() == id) {
                            Some(e) => {
                                format!("{} ({})", e.message().unwrap_or("no message"), e.code())
                            }
                            None => "SQS did not confirm it".to_owned(),
                        };
                        failed.push((job.clone(), self.batch_error(detail)));
                    }
                }
                Err(e) => {
                    let detail = DisplayErrorContext(e).to_string();
                    failed.extend(
                        chunk
                            .iter()
                            .map(|job| (job.clone(), self.batch_error(detail.clone()))),
                    );
                }
            }
        }
        failed
    }
}

impl SqsJobQueue {
    fn batch_error(&self, detail: String) -> QueueError {
        QueueError::Unavailable {
            operation: "enqueue",
            detail: format!("a batch of jobs on {}: {detail}", self.queue_url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MailboxAddress;

    #[test]
    fn iam_actions_cover_exactly_the_operations_called() {
        let called = crate::adapters::aws::sdk_calls(include_str!("sqs.rs"), &[]);
        let mut listed = crate::adapters::aws::listed_calls(SqsJobQueue::IAM_ACTIONS);
        listed.extend(crate::adapters::aws::listed_calls(
            SqsJobQueue::CONSUMER_IAM_ACTIONS,
        ));
        assert_eq!(called, listed);
    }

    #[test]
    fn retries_back_off_from_30_seconds_to_the_visibility_timeout() {
        let delays: Vec<u64> = (1..=8)
            .map(|n| SqsJobQueue::retry_delay(n).as_secs())
            .collect();
        assert_eq!(delays, [30, 60, 120, 240, 480, 900, 900, 900]);
        assert_eq!(SqsJobQueue::retry_delay(0).as_secs(), 30);
    }

    #[test]
    fn parse_job_round_trips_and_rejects_junk() {
        let job = SyncJob {
            mailbox: MailboxAddress::parse("a@contoso.com").unwrap(),
            folder: "Inbox/Reports".into(),
            kind: crate::domain::job::JobKind::FullResync,
            slice: 0,
        };
        let body = serde_json::to_string(&job).unwrap();
        assert_eq!(SqsJobQueue::parse_job(&body).unwrap(), job);
        let err = SqsJobQueue::parse_job(r#"{"mailbox":"not an address"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("the message body is not a sync job"),
            "{err}"
        );
    }
}
