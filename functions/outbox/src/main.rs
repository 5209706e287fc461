//! The outbox Lambda function (docs/sending.md): applications put send requests on the outbox
//! queue (SQS FIFO, message group = the sending mailbox); this function sends each from its
//! mailbox, exactly once per idempotency key ([`mailroom::engine::Engine::send`]).
//!
//! A request that cannot succeed as it is (not a request, no recipient, an unknown mailbox, a
//! missing attachment) goes to the dead-letter queue at once, with the reason as its `reason`
//! attribute. One that may succeed later (throttling, an outage, a permission not granted yet)
//! is handed back to the queue and tried again; at the last attempt it goes to the dead-letter
//! queue with its last error.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{LambdaEvent, service_fn};
use mailroom::adapters::aws::{AwsClients, S3Attachments, SqsDeadLetters, SqsJobQueue};
use mailroom::config::OutboxSettings;
use mailroom::domain::send::SendRequest;
use mailroom::engine::{Engine, SendOutcome};
use mailroom::lambda::init_tracing;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let settings = OutboxSettings::from_env()?;
    let clients = AwsClients::from_env(settings.aws.s3_path_style).await;
    // Sending stores nothing: the engine's blob store and events go unused.
    let engine = mailroom::adapters::aws::engine(&settings.aws, &clients)?;
    let outbox = Outbox {
        engine,
        attachments: S3Attachments::new(clients.s3, &settings.aws.bucket)
            .with_prefix(OutboxSettings::ATTACHMENT_PREFIX),
        dead_letters: SqsDeadLetters::new(clients.sqs, &settings.dead_letter_url),
        max_receives: settings.max_receives,
    };
    let outbox = &outbox;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, lambda_runtime::Error>(outbox.batch(event.payload).await)
    }))
    .await
}

struct Outbox {
    engine: Engine,
    attachments: S3Attachments,
    dead_letters: SqsDeadLetters,
    max_receives: u32,
}

/// Why a request was not sent, and whether a later attempt can help.
struct NotSent {
    reason: String,
    retry_can_help: bool,
}

impl Outbox {
    /// Sends a batch in order. Once a request is handed back, the rest of the batch is too: a
    /// FIFO queue must deliver them after it.
    async fn batch(&self, batch: SqsEvent) -> SqsBatchResponse {
        let mut failed: Vec<String> = Vec::new();
        let (mut sent, mut dead) = (0usize, 0usize);
        for message in &batch.records {
            let id = message.message_id.clone().unwrap_or_default();
            if !failed.is_empty() {
                failed.push(id);
                continue;
            }
            let Err(not_sent) = self.one(message).await else {
                sent += 1;
                continue;
            };
            let receives: u32 = message
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            if not_sent.retry_can_help && receives < self.max_receives {
                tracing::warn!(message = %id, attempt = receives, reason = %not_sent.reason, "not sent; the queue delivers it again");
                failed.push(id);
                continue;
            }
            let group = message
                .attributes
                .get("MessageGroupId")
                .map(String::as_str)
                .unwrap_or_default();
            let body = message.body.as_deref().unwrap_or_default();
            match self
                .dead_letters
                .put(body, group, &id, &not_sent.reason)
                .await
            {
                Ok(()) => {
                    dead += 1;
                    tracing::error!(message = %id, reason = %not_sent.reason, "not sent: moved to the dead-letter queue");
                }
                Err(e) => {
                    tracing::error!(message = %id, error = %e, "could not move the request to the dead-letter queue; the queue delivers it again");
                    failed.push(id);
                }
            }
        }
        // `dead_lettered` feeds the outbox alarm's log line, as the dead-letter queue's depth does.
        tracing::info!(
            requests = batch.records.len(),
            sent,
            dead_lettered = dead,
            retried = failed.len(),
            "outbox batch finished"
        );
        SqsJobQueue::batch_response(failed)
    }

    async fn one(&self, message: &SqsMessage) -> Result<(), NotSent> {
        let body = message.body.as_deref().unwrap_or_default();
        let request: SendRequest = serde_json::from_str(body).map_err(|e| NotSent {
            reason: format!("the message is not a send request (docs/sending.md): {e}"),
            retry_can_help: false,
        })?;
        match self.engine.send(&request, &self.attachments).await {
            Ok(SendOutcome::Sent { message }) => {
                tracing::info!(from = %request.from, %message, "sent");
                Ok(())
            }
            Ok(SendOutcome::AlreadySent) => {
                tracing::info!(from = %request.from, "sent before with this idempotency key; not sent again");
                Ok(())
            }
            Err(e) => Err(NotSent {
                retry_can_help: e.retry_can_help(),
                reason: e.to_string(),
            }),
        }
    }
}
