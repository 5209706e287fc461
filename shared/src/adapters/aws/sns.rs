//! [`Alerter`] on an SNS topic: one message per alert, with a subject for e-mail subscriptions.

use async_trait::async_trait;
use aws_sdk_sns::Client;
use aws_sdk_sns::error::DisplayErrorContext;

use crate::expiry::Alert;
use crate::ports::{AlertError, Alerter};

/// Publishes alerts to one SNS topic.
#[derive(Clone, Debug)]
pub struct SnsAlerter {
    client: Client,
    topic_arn: String,
}

impl SnsAlerter {
    /// The SNS operations this alerter makes (SDK method, the IAM action it needs), on the
    /// topic's ARN. A topic encrypted with a customer managed KMS key also needs
    /// `kms:GenerateDataKey` and `kms:Decrypt` on that key.
    pub const IAM_ACTIONS: &[(&str, &str)] = &[("publish", "sns:Publish")];

    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
        }
    }

    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }
}

#[async_trait]
impl Alerter for SnsAlerter {
    async fn send(&self, alert: &Alert) -> Result<(), AlertError> {
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            // ASCII, one line, at most 100 characters: what SNS accepts as a subject.
            .subject(alert.subject())
            .message(alert.text())
            .send()
            .await
            .map_err(|e| AlertError::Failed {
                channel: "SNS",
                detail: format!("topic {}: {}", self.topic_arn, DisplayErrorContext(e)),
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_actions_cover_exactly_the_operations_called() {
        let called = crate::adapters::aws::sdk_calls(include_str!("sns.rs"), &[]);
        assert_eq!(
            called,
            crate::adapters::aws::listed_calls(SnsAlerter::IAM_ACTIONS)
        );
    }
}
