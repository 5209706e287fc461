//! Change and lifecycle notification payloads (docs/graph.md §6). Graph posts a collection,
//! `{"value":[…]}`, possibly for several subscriptions at once. Only the fields Mailroom acts on
//! are read; unknown fields are ignored, because Graph adds fields over time.

use std::fmt;

use serde::Deserialize;

/// A POSTed batch.
#[derive(Debug, Deserialize)]
pub struct NotificationCollection {
    pub value: Vec<Notification>,
}

/// One change notification or lifecycle notification. `Debug` hides `clientState`.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub subscription_id: String,
    #[serde(default)]
    pub client_state: Option<String>,
    /// `created`, `updated`, `deleted`: change notifications only.
    #[serde(default)]
    pub change_type: Option<String>,
    /// `reauthorizationRequired`, `subscriptionRemoved`, `missed`: lifecycle notifications only.
    #[serde(default)]
    pub lifecycle_event: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
}

impl fmt::Debug for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notification")
            .field("subscription_id", &self.subscription_id)
            .field(
                "client_state",
                &self.client_state.as_ref().map(|_| "<redacted>"),
            )
            .field("change_type", &self.change_type)
            .field("lifecycle_event", &self.lifecycle_event)
            .field("tenant_id", &self.tenant_id)
            .finish()
    }
}

/// A lifecycle event Mailroom acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// The subscription's authorization is about to lapse: reauthorize or renew it.
    ReauthorizationRequired,
    /// Graph removed the subscription: create a new one, and catch up on what arrived meanwhile.
    SubscriptionRemoved,
    /// Graph could not deliver some notifications: read the folder in full.
    Missed,
}

/// What a notification reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message was created in the subscribed folder.
    Created,
    /// Another change type (Mailroom subscribes to `created` only; ignored).
    OtherChange(String),
    Lifecycle(LifecycleEvent),
    /// A lifecycle event this version does not know (ignored, logged).
    UnknownLifecycle(String),
    /// Neither `changeType` nor `lifecycleEvent`.
    Unrecognised,
}

impl Notification {
    pub fn event(&self) -> Event {
        if let Some(event) = &self.lifecycle_event {
            return match event.as_str() {
                e if e.eq_ignore_ascii_case("reauthorizationRequired") => {
                    Event::Lifecycle(LifecycleEvent::ReauthorizationRequired)
                }
                e if e.eq_ignore_ascii_case("subscriptionRemoved") => {
                    Event::Lifecycle(LifecycleEvent::SubscriptionRemoved)
                }
                e if e.eq_ignore_ascii_case("missed") => Event::Lifecycle(LifecycleEvent::Missed),
                other => Event::UnknownLifecycle(other.to_owned()),
            };
        }
        match &self.change_type {
            Some(c) if c.eq_ignore_ascii_case("created") => Event::Created,
            Some(other) => Event::OtherChange(other.clone()),
            None => Event::Unrecognised,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_payloads_parse() {
        // docs/graph.md §6 (MGD concepts/change-notifications-delivery-webhooks.md).
        let change = r##"{"value":[{"subscriptionId":"7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
            "subscriptionExpirationDateTime":"2026-11-26T18:23:45.9356913Z","changeType":"created",
            "clientState":"secretClientValue","tenantId":"84bd8158-6d4d-4958-8b9f-9d6445542f95",
            "resource":"Users/abc/Messages/AAMk=","resourceData":{"@odata.type":"#Microsoft.Graph.Message",
            "@odata.id":"Users/abc/Messages/AAMk=","@odata.etag":"W/\"CQAAAA==\"","id":"AAMk="}}]}"##;
        let batch: NotificationCollection = serde_json::from_str(change).unwrap();
        assert_eq!(batch.value.len(), 1);
        assert_eq!(batch.value[0].event(), Event::Created);
        assert_eq!(
            batch.value[0].client_state.as_deref(),
            Some("secretClientValue")
        );

        let lifecycle = r#"{"value":[{"subscriptionId":"a","lifecycleEvent":"missed","clientState":"x",
            "subscriptionExpirationDateTime":"2026-11-26T18:23:45Z","tenantId":"t"},
            {"subscriptionId":"b","lifecycleEvent":"reauthorizationRequired"},
            {"subscriptionId":"c","lifecycleEvent":"subscriptionRemoved"},
            {"subscriptionId":"d","lifecycleEvent":"somethingNew"}]}"#;
        let batch: NotificationCollection = serde_json::from_str(lifecycle).unwrap();
        let events: Vec<Event> = batch.value.iter().map(Notification::event).collect();
        assert_eq!(
            events,
            [
                Event::Lifecycle(LifecycleEvent::Missed),
                Event::Lifecycle(LifecycleEvent::ReauthorizationRequired),
                Event::Lifecycle(LifecycleEvent::SubscriptionRemoved),
                Event::UnknownLifecycle("somethingNew".into()),
            ]
        );
    }

    #[test]
    fn debug_hides_the_client_state() {
        let n: Notification = serde_json::from_str(
            r#"{"subscriptionId":"s","clientState":"hunter2-client-state","changeType":"created"}"#,
        )
        .unwrap();
        let shown = format!("{n:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
