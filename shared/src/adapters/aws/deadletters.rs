//! The outbox's dead-letter queue (docs/sending.md): a send request that cannot be sent is put
//! there by the outbox function itself, with the reason as a message attribute, so whoever reads
//! the queue sees why without searching the logs.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::MessageAttributeValue;

use crate::ports::QueueError;

/// The message attribute carrying why a request was dead-lettered.
pub const REASON_ATTRIBUTE: &str = "reason";

/// One SQS FIFO dead-letter queue.
#[derive(Clone, Debug)]
pub struct SqsDeadLetters {
    client: Client,
    url: String,
}

impl SqsDeadLetters {
    /// The SQS operations it makes (SDK method, the IAM action it needs), on the queue's ARN.
    pub const IAM_ACTIONS: &[(&str, &str)] = &[("send_message", "sqs:SendMessage")];

    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    /// Puts `body` on the queue in message group `group`, deduplicated by `id` (the original
    /// message's id, so a retried hand-over is one dead letter), with `reason`.
    pub async fn put(
        &self,
        body: &str,
        group: &str,
        id: &str,
        reason: &str,
    ) -> Result<(), QueueError> {
        // An attribute value may not be empty, and SQS takes 256 KB in all: a reason is short.
        let reason: String = reason.chars().take(4000).collect();
        let attribute = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(if reason.is_empty() {
                "unknown"
            } else {
                &reason
            })
            .build()
            .map_err(|e| QueueError::Unavailable {
                operation: "dead-letter",
                detail: e.to_string(),
            })?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .message_group_id(if group.is_empty() { "outbox" } else { group })
            .message_deduplication_id(id)
            .message_attributes(REASON_ATTRIBUTE, attribute)
            .send()
            .await
            .map_err(|e| QueueError::Unavailable {
                operation: "dead-letter",
                detail: format!("{}: {}", self.url, DisplayErrorContext(e)),
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_actions_cover_exactly_the_operations_called() {
        let called = crate::adapters::aws::sdk_calls(include_str!("deadletters.rs"), &[]);
        assert_eq!(
            called,
            crate::adapters::aws::listed_calls(SqsDeadLetters::IAM_ACTIONS)
        );
    }
}
