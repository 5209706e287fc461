//! Graph subscriptions to mail folders (docs/graph.md section 6): the table, what matches an
//! arriving message, and the JSON shapes of a subscription and of a change notification.

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::notify::Item;
use crate::state::Arrival;

/// A subscription as the sandbox keeps it.
#[derive(Clone, Debug)]
pub(crate) struct Subscription {
    pub(crate) id: String,
    pub(crate) tenant: usize,
    pub(crate) tenant_id: String,
    /// The app that created it (client id); only that app sees it.
    pub(crate) application_id: String,
    pub(crate) creator_id: String,
    pub(crate) mailbox: usize,
    pub(crate) mailbox_address: String,
    /// `None`: `users/{id}/messages`, every visible folder.
    pub(crate) folder: Option<usize>,
    pub(crate) folder_path: Option<String>,
    /// As given at creation.
    pub(crate) resource: String,
    pub(crate) change_type: String,
    pub(crate) notification_url: String,
    pub(crate) lifecycle_url: Option<String>,
    pub(crate) client_state: Option<String>,
    pub(crate) expiration: OffsetDateTime,
    /// Created with `Prefer: IdType="ImmutableId"`: notifications carry immutable ids.
    pub(crate) immutable_ids: bool,
    /// A `reauthorizationRequired` was sent and neither reauthorize nor a renewal followed.
    pub(crate) reauthorization_required: bool,
    /// The automatic `reauthorizationRequired` before expiry was sent (once per renewal).
    pub(crate) reauthorization_notified: bool,
}

impl Subscription {
    fn watches_created(&self) -> bool {
        self.change_type
            .split(',')
            .any(|c| c.trim().eq_ignore_ascii_case("created"))
    }

    fn matches(&self, a: &Arrival) -> bool {
        self.watches_created()
            && self.mailbox == a.mailbox
            && self.folder.map_or(a.visible, |f| f == a.folder)
    }

    /// The subscription resource as Graph returns it (docs/graph.md section 6).
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": self.change_type,
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": null,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": precise_time(self.expiration),
            "creatorId": self.creator_id,
            "includeResourceData": null,
            "latestSupportedTlsVersion": "v1_2",
            "encryptionCertificate": null,
            "encryptionCertificateId": null,
            "notificationUrlAppId": null,
        })
    }

    /// The change notification for an arrival (docs/graph.md section 6); the user appears by
    /// id, the message by immutable or REST id as the subscription was created.
    fn notification(&self, a: &Arrival) -> Value {
        let id = if self.immutable_ids {
            &a.immutable_id
        } else {
            &a.rest_id
        };
        let resource = format!("Users/{}/Messages/{id}", a.user_id);
        json!({
            "subscriptionId": self.id,
            "subscriptionExpirationDateTime": precise_time(self.expiration),
            "changeType": "created",
            "clientState": self.client_state,
            "tenantId": self.tenant_id,
            "resource": resource,
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Message",
                "@odata.id": resource,
                "@odata.etag": a.etag,
                "id": id,
            }
        })
    }

    pub(crate) fn info(&self) -> SubscriptionInfo {
        SubscriptionInfo {
            id: self.id.clone(),
            resource: self.resource.clone(),
            change_type: self.change_type.clone(),
            notification_url: self.notification_url.clone(),
            lifecycle_notification_url: self.lifecycle_url.clone(),
            client_state: self.client_state.clone(),
            expiration: self.expiration,
            application_id: self.application_id.clone(),
            mailbox: self.mailbox_address.clone(),
            folder_path: self.folder_path.clone(),
            immutable_ids: self.immutable_ids,
            reauthorization_required: self.reauthorization_required,
        }
    }
}

/// A live subscription, for assertions in tests ([`crate::Sandbox::subscriptions`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionInfo {
    /// The subscription id (a GUID).
    pub id: String,
    /// `resource` as given at creation.
    pub resource: String,
    /// `changeType`, e.g. "created".
    pub change_type: String,
    /// `notificationUrl`.
    pub notification_url: String,
    /// `lifecycleNotificationUrl`, if given.
    pub lifecycle_notification_url: Option<String>,
    /// `clientState`, if given.
    pub client_state: Option<String>,
    /// `expirationDateTime` (sandbox clock).
    #[serde(with = "time::serde::rfc3339")]
    pub expiration: OffsetDateTime,
    /// The creating app's client id.
    pub application_id: String,
    /// The watched mailbox's address (lowercase).
    pub mailbox: String,
    /// The watched folder's display-name path; `None` for `users/{id}/messages`.
    pub folder_path: Option<String>,
    /// Whether notifications carry immutable ids (`Prefer: IdType="ImmutableId"` at creation).
    pub immutable_ids: bool,
    /// A `reauthorizationRequired` was sent and not yet answered by reauthorize or a renewal.
    pub reauthorization_required: bool,
}

/// Every live subscription, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    list: Vec<Subscription>,
}

impl Subscriptions {
    pub(crate) fn insert(&mut self, s: Subscription) {
        self.list.push(s);
    }

    /// A subscription past its expiry receives nothing and disappears (docs/graph.md section 6).
    pub(crate) fn remove_expired(&mut self, now: OffsetDateTime) {
        self.list.retain(|s| s.expiration > now);
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Subscription> {
        self.list.iter()
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Subscription> {
        self.list.iter_mut()
    }

    /// A subscription by id, only if `app` (tenant, client id) owns it; `None` for any app.
    pub(crate) fn get_mut(
        &mut self,
        id: &str,
        app: Option<(usize, &str)>,
    ) -> Option<&mut Subscription> {
        self.list
            .iter_mut()
            .find(|s| s.id.eq_ignore_ascii_case(id) && owned_by(s, app))
    }

    pub(crate) fn remove(&mut self, id: &str, app: Option<(usize, &str)>) -> Option<Subscription> {
        let i = self
            .list
            .iter()
            .position(|s| s.id.eq_ignore_ascii_case(id) && owned_by(s, app))?;
        Some(self.list.remove(i))
    }

    /// The change notifications for arrivals, in arrival order then subscription order.
    pub(crate) fn notifications(&self, arrivals: &[Arrival]) -> Vec<Item> {
        let mut out = Vec::new();
        for a in arrivals {
            for s in self.list.iter().filter(|s| s.matches(a)) {
                out.push(Item {
                    url: s.notification_url.clone(),
                    subscription_id: s.id.clone(),
                    value: s.notification(a),
                });
            }
        }
        out
    }
}

fn owned_by(s: &Subscription, app: Option<(usize, &str)>) -> bool {
    app.is_none_or(|(tenant, client_id)| {
        s.tenant == tenant && s.application_id.eq_ignore_ascii_case(client_id)
    })
}

/// Graph's subscription timestamps, and the times Entra writes in error descriptions: seven
/// fractional digits, `2025-06-03T10:00:00.0000000Z`.
pub(crate) fn precise_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() / 100
    )
}
