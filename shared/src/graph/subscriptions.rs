//! Change-notification subscriptions on a mailbox folder (docs/graph.md §6): create, renew,
//! delete. Subscriptions live under `/v1.0/subscriptions`, not under the mailbox, but the calls
//! still go through the mailbox's in-flight slots and retries.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::Url;

use super::client::{MailboxClient, Request, encode};
use super::error::{GraphError, Operation};
use crate::domain::ClientState;

/// A subscription as Graph returns it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphSubscription {
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expiration_date_time: OffsetDateTime,
    #[serde(default)]
    pub resource: String,
}

/// What to subscribe to and where Graph should deliver.
#[derive(Debug)]
pub struct SubscriptionRequest<'a> {
    /// The folder's id (immutable within the mailbox).
    pub folder_id: &'a str,
    pub notification_url: &'a str,
    pub lifecycle_url: &'a str,
    pub client_state: &'a ClientState,
    /// The expiry to ask for; Graph may grant a different one (the reply has it).
    pub expires_at: OffsetDateTime,
}

impl MailboxClient {
    /// `{graph}/v1.0/subscriptions[/{id}[/{action}]]`.
    fn subscriptions_url(&self, segments: &[&str]) -> Url {
        let mut path = "subscriptions".to_owned();
        for segment in segments {
            path.push('/');
            path.push_str(&encode(segment));
        }
        self.client.inner.config.v1_url(&path)
    }

    /// Subscribes to messages created in a folder of this mailbox. Graph validates the
    /// notification and lifecycle URLs before answering (the webhook must echo the
    /// `validationToken`), so this fails with a 400 when the webhook cannot be reached.
    pub async fn create_subscription(
        &self,
        request: &SubscriptionRequest<'_>,
    ) -> Result<GraphSubscription, GraphError> {
        let resource = format!(
            "users/{}/mailFolders('{}')/messages",
            self.mailbox.as_str(),
            request.folder_id
        );
        self.json(Request {
            operation: Operation::CreateSubscription,
            method: Method::POST,
            url: self.subscriptions_url(&[]),
            json: Some(json!({
                "changeType": "created",
                "notificationUrl": request.notification_url,
                "lifecycleNotificationUrl": request.lifecycle_url,
                "resource": resource,
                "expirationDateTime": rfc3339(request.expires_at)?,
                "clientState": request.client_state.expose(),
            })),
            max_page_size: None,
        })
        .await
    }

    /// Extends a subscription (which also reauthorizes it). A subscription Graph no longer has
    /// fails with [`GraphError::is_not_found`]: create a new one.
    pub async fn renew_subscription(
        &self,
        id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<GraphSubscription, GraphError> {
        self.json(Request {
            operation: Operation::RenewSubscription,
            method: Method::PATCH,
            url: self.subscriptions_url(&[id]),
            json: Some(json!({ "expirationDateTime": rfc3339(expires_at)? })),
            max_page_size: None,
        })
        .await
    }

    /// Deletes a subscription; one Graph no longer has counts as deleted.
    pub async fn delete_subscription(&self, id: &str) -> Result<(), GraphError> {
        match self
            .send(Request {
                operation: Operation::DeleteSubscription,
                method: Method::DELETE,
                url: self.subscriptions_url(&[id]),
                json: None,
                max_page_size: None,
            })
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> Result<String, GraphError> {
    t.format(&Rfc3339)
        .map_err(|e| GraphError::Config(format!("subscription expiry {t}: {e}")))
}
