//! [`EventPublisher`] on an EventBridge bus: `PutEvents`, ten entries a request (EventBridge's
//! limit), `source` `mailroom`, `detail-type` `Message Stored`, the event as `detail`
//! (docs/events.md).

use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::error::DisplayErrorContext;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::domain::event::{DETAIL_TYPE, MessageEvent, SOURCE};
use crate::ports::{EventPublisher, PublishError};

/// Entries EventBridge takes in one `PutEvents` request.
const ENTRIES_PER_REQUEST: usize = 10;

/// Publishes events to one EventBridge bus.
#[derive(Clone, Debug)]
pub struct EventBridgePublisher {
    client: Client,
    bus: String,
}

impl EventBridgePublisher {
    /// The EventBridge operations this publisher makes (SDK method, the IAM action it needs), on
    /// the bus's ARN.
    pub const IAM_ACTIONS: &[(&str, &str)] = &[("put_events", "events:PutEvents")];

    /// A publisher to `bus`: a name (`default` is the account's default bus) or an ARN.
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }

    async fn put(&self, events: &[MessageEvent]) -> Vec<Result<(), PublishError>> {
        let failed = |detail: String| PublishError {
            channel: "EventBridge",
            detail: format!("bus {}: {detail}", self.bus),
        };
        let mut entries = Vec::with_capacity(events.len());
        for event in events {
            let detail = match serde_json::to_string(event) {
                Ok(detail) => detail,
                Err(e) => return events.iter().map(|_| Err(failed(e.to_string()))).collect(),
            };
            entries.push(
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(SOURCE)
                    .detail_type(DETAIL_TYPE)
                    .detail(detail)
                    .build(),
            );
        }
        let output = match self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) => {
                let detail = DisplayErrorContext(e).to_string();
                return events.iter().map(|_| Err(failed(detail.clone()))).collect();
            }
        };
        // One result entry per request entry, in order; a failed one carries an error code.
        let results = output.entries();
        events
            .iter()
            .enumerate()
            .map(|(i, _)| match results.get(i) {
                Some(entry) if entry.error_code().is_none() => Ok(()),
                Some(entry) => Err(failed(format!(
                    "{}: {}",
                    entry.error_code().unwrap_or_default(),
                    entry.error_message().unwrap_or_default()
                ))),
                None => Err(failed(
                    "EventBridge returned fewer results than entries".into(),
                )),
            })
            .collect()
    }
}

#[async_trait]
impl EventPublisher for EventBridgePublisher {
    async fn publish(&self, events: &[MessageEvent]) -> Vec<Result<(), PublishError>> {
        let mut results = Vec::with_capacity(events.len());
        for chunk in events.chunks(ENTRIES_PER_REQUEST) {
            results.extend(self.put(chunk).await);
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_actions_cover_exactly_the_operations_called() {
        let called = crate::adapters::aws::sdk_calls(include_str!("eventbridge.rs"), &[]);
        assert_eq!(
            called,
            crate::adapters::aws::listed_calls(EventBridgePublisher::IAM_ACTIONS)
        );
    }
}
