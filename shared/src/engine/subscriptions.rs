//! Keeping one Graph subscription per watched folder (docs/push.md; docs/graph.md §6).
//!
//! The scheduled run calls [`Engine::maintain_subscriptions`]: it creates a subscription for
//! every enabled folder that has none, renews those within `renew_margin` of expiry, recreates
//! those Graph lost, and deletes those of folders no longer configured. A `Resubscribe` job (a
//! lifecycle event) renews one folder's subscription at once. The scheduled poll stays the
//! safety net: whatever a lost notification missed, the next run imports.
//!
//! Both hold the `subscriptions` lease, so two runners never create two subscriptions for one
//! folder.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::{Engine, ImportError};
use crate::domain::{ClientState, FolderKey, MailboxConfig, SubscriptionRecord};
use crate::graph::{MailboxClient, SubscriptionRequest};
use crate::ports::{LeaseOutcome, StoreError};
use crate::push::PushUrls;

/// How the engine keeps subscriptions.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Where Graph delivers.
    pub urls: PushUrls,
    /// The lifetime asked for when creating or renewing. Outlook allows at most 4,230 minutes
    /// (docs/graph.md §6); the default stays under it.
    pub lifetime: Duration,
    /// Renew a subscription once less than this is left. The scheduled run comes every 15
    /// minutes, so a day leaves many chances.
    pub renew_margin: Duration,
}

impl PushOptions {
    pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(4200 * 60);
    pub const DEFAULT_RENEW_MARGIN: Duration = Duration::from_secs(24 * 3600);

    pub fn new(urls: PushUrls) -> Self {
        Self {
            urls,
            lifetime: Self::DEFAULT_LIFETIME,
            renew_margin: Self::DEFAULT_RENEW_MARGIN,
        }
    }
}

/// What [`Engine::maintain_subscriptions`] did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SubscriptionReport {
    pub created: u32,
    pub renewed: u32,
    pub unchanged: u32,
    pub removed: u32,
    /// Another runner was maintaining subscriptions; nothing was done.
    pub busy: bool,
    /// One line per folder that could not be subscribed (the poll still imports it).
    pub errors: Vec<String>,
}

/// What happened to one folder's subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    Created,
    Renewed,
    Unchanged,
}

const LEASE: &str = "subscriptions";
const LEASE_TIME: Duration = Duration::from_secs(5 * 60);

impl Engine {
    /// Brings the subscriptions in line with the configured folders. Errors of one folder are
    /// reported and do not stop the others; only a state store failure ends it early.
    pub async fn maintain_subscriptions(&self) -> Result<SubscriptionReport, StoreError> {
        let mut report = SubscriptionReport::default();
        let Some(push) = &self.options.push else {
            return Ok(report);
        };
        if !self.take_subscription_lease().await? {
            report.busy = true;
            return Ok(report);
        }
        let result = self.maintain(push, &mut report).await;
        self.release_subscription_lease().await;
        result?;
        tracing::info!(
            created = report.created,
            renewed = report.renewed,
            unchanged = report.unchanged,
            removed = report.removed,
            errors = report.errors.len(),
            "subscriptions maintained"
        );
        Ok(report)
    }

    async fn maintain(
        &self,
        push: &PushOptions,
        report: &mut SubscriptionReport,
    ) -> Result<(), StoreError> {
        let configs: Vec<MailboxConfig> = self
            .state
            .list_mailboxes()
            .await?
            .into_iter()
            // `folder = "*"` is polled only: its folders change, and a subscription is per
            // folder (docs/push.md).
            .filter(|c| c.enabled && !c.is_every_folder())
            .collect();
        let mut by_key: BTreeMap<FolderKey, Vec<SubscriptionRecord>> = BTreeMap::new();
        for record in self.state.list_subscriptions().await? {
            by_key.entry(record.key()).or_default().push(record);
        }

        for config in &configs {
            let records = by_key.remove(&config.key()).unwrap_or_default();
            match self.keep_subscription(push, config, records, false).await {
                Ok(Kept::Created) => report.created += 1,
                Ok(Kept::Renewed) => report.renewed += 1,
                Ok(Kept::Unchanged) => report.unchanged += 1,
                Err(ImportError::Store(e)) => return Err(e),
                Err(e) => {
                    tracing::warn!(mailbox = %config.address, folder = %config.folder, error = %e, "could not subscribe to the folder; the scheduled poll still imports it");
                    report.errors.push(format!("{}: {e}", config.key()));
                }
            }
        }
        // What is left belongs to folders no longer configured (or disabled).
        for record in by_key.into_values().flatten() {
            self.remove_subscription(&record).await?;
            report.removed += 1;
        }
        Ok(())
    }

    /// Renews (or recreates) one folder's subscription now: a `Resubscribe` job.
    pub(super) async fn resubscribe(&self, config: &MailboxConfig) -> Result<bool, ImportError> {
        let Some(push) = &self.options.push else {
            return Ok(true);
        };
        if !self.take_subscription_lease().await? {
            return Ok(false);
        }
        let records: Vec<SubscriptionRecord> = self
            .state
            .list_subscriptions()
            .await?
            .into_iter()
            .filter(|r| r.key() == config.key())
            .collect();
        let result = self.keep_subscription(push, config, records, true).await;
        self.release_subscription_lease().await;
        let kept = result?;
        tracing::info!(mailbox = %config.address, folder = %config.folder, outcome = ?kept, "subscription renewed on request");
        Ok(true)
    }

    /// One folder: keep its newest subscription alive (renewing it when `force`d or close to
    /// expiry), create one if there is none or Graph lost it, and delete any extra ones.
    async fn keep_subscription(
        &self,
        push: &PushOptions,
        config: &MailboxConfig,
        mut records: Vec<SubscriptionRecord>,
        force: bool,
    ) -> Result<Kept, ImportError> {
        // Newest expiry first; a subscription for another URL (the webhook moved) is replaced.
        records.sort_by_key(|r| std::cmp::Reverse(r.expires_at));
        let (current, stale): (Vec<_>, Vec<_>) = records
            .into_iter()
            .partition(|r| r.notification_url == push.urls.notification_url);
        let mut current = current.into_iter();
        let keep = current.next();
        for extra in stale.into_iter().chain(current) {
            self.remove_subscription(&extra).await?;
        }

        let now = self.clock.now();
        let lifetime = time::Duration::try_from(push.lifetime).unwrap_or(time::Duration::DAY);
        let margin = time::Duration::try_from(push.renew_margin).unwrap_or(time::Duration::DAY);
        if let Some(record) = &keep
            && record.expires_at > now
            && record.expires_at - now >= margin
            && !force
        {
            // Nothing to do: no credential read, no Graph call.
            return Ok(Kept::Unchanged);
        }
        let graph = self.connect(config).await?;
        if let Some(mut record) = keep {
            if record.expires_at > now {
                match graph.renew_subscription(&record.id, now + lifetime).await {
                    Ok(renewed) => {
                        record.expires_at = renewed.expiration_date_time;
                        self.state.put_subscription(&record).await?;
                        return Ok(Kept::Renewed);
                    }
                    Err(e) if e.is_not_found() => {
                        tracing::info!(subscription = %record.id, "Graph no longer has the subscription; creating a new one");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            self.state.delete_subscription(&record.id).await?;
        }
        self.create_subscription(&graph, push, config, now + lifetime)
            .await?;
        Ok(Kept::Created)
    }

    async fn create_subscription(
        &self,
        graph: &MailboxClient,
        push: &PushOptions,
        config: &MailboxConfig,
        expires_at: OffsetDateTime,
    ) -> Result<(), ImportError> {
        let folder = graph.resolve_folder(&config.folder).await?;
        let client_state = ClientState::generate();
        let created = graph
            .create_subscription(&SubscriptionRequest {
                folder_id: &folder.id,
                notification_url: &push.urls.notification_url,
                lifecycle_url: &push.urls.lifecycle_url,
                client_state: &client_state,
                expires_at,
            })
            .await?;
        // A notification arriving before this write finds no record and is dropped; the
        // scheduled poll imports that message.
        let record = SubscriptionRecord {
            id: created.id,
            mailbox: config.address.clone(),
            folder: config.folder.clone(),
            credential: config.credential.clone(),
            client_state,
            expires_at: created.expiration_date_time,
            notification_url: push.urls.notification_url.clone(),
            created_at: self.clock.now(),
        };
        self.state.put_subscription(&record).await?;
        tracing::info!(mailbox = %config.address, folder = %config.folder, subscription = %record.id, expires_at = %record.expires_at, "subscription created");
        Ok(())
    }

    /// Deletes a subscription at Graph (best effort: an unreachable one expires by itself within
    /// days, and its notifications are dropped as unknown) and then its record.
    async fn remove_subscription(&self, record: &SubscriptionRecord) -> Result<(), StoreError> {
        let deleted = async {
            let credential = self.credentials.get(&record.credential).await?;
            self.graph
                .mailbox(credential, record.mailbox.clone())
                .delete_subscription(&record.id)
                .await?;
            Ok::<(), ImportError>(())
        }
        .await;
        if let Err(e) = deleted {
            tracing::warn!(subscription = %record.id, mailbox = %record.mailbox, error = %e, "could not delete the subscription at Graph; it will expire on its own");
        }
        self.state.delete_subscription(&record.id).await?;
        tracing::info!(subscription = %record.id, mailbox = %record.mailbox, folder = %record.folder, "subscription removed");
        Ok(())
    }

    async fn take_subscription_lease(&self) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let until = now + time::Duration::try_from(LEASE_TIME).unwrap_or(time::Duration::MINUTE);
        Ok(matches!(
            self.state
                .acquire_lease(LEASE, &self.options.owner, now, until)
                .await?,
            LeaseOutcome::Acquired
        ))
    }

    async fn release_subscription_lease(&self) {
        if let Err(e) = self.state.release_lease(LEASE, &self.options.owner).await {
            tracing::warn!(error = %e, "could not release the subscriptions lease");
        }
    }
}
