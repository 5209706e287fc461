//! Keeping one Graph subscription per watched folder (docs/push.md; docs/graph.md §6).
//!
//! Upkeep has two halves. The scheduled run decides, from the state store alone, which folders'
//! subscriptions are due: none yet, within `renew_margin` of expiry, made for another webhook
//! URL, more than one, or left over from a folder no longer subscribed. Only those need Graph.
//! [`Engine::maintain_subscriptions`] then works each due folder here, or, given the job queue,
//! queues one [`crate::domain::job::JobKind::Subscription`] job per due folder so the upkeep of a thousand mailboxes
//! fans out across the queue's consumers as their imports do (docs/architecture.md, "Fan-out").
//! A `Resubscribe` job (a lifecycle event) renews one folder's subscription at once.
//!
//! The scheduled poll stays the safety net: whatever a lost notification missed, the next run
//! imports.
//!
//! Working a folder holds the lease `subscriptions#{mailbox}` and reads the folder's records
//! after taking it, so two runners never create two subscriptions for one folder.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::{Engine, ImportError};
use crate::domain::job::SyncJob;
use crate::domain::{ClientState, FolderKey, MailboxConfig, SubscriptionRecord};
use crate::graph::{MailboxClient, SubscriptionRequest};
use crate::ports::{JobQueue, LeaseOutcome, StoreError};
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

    /// Whether `record` can be left as it is at `now`: made for this webhook and not within
    /// the renewal margin of its expiry. Nothing to read, no Graph call.
    fn is_fresh(&self, record: &SubscriptionRecord, now: OffsetDateTime) -> bool {
        let margin = time::Duration::try_from(self.renew_margin).unwrap_or(time::Duration::DAY);
        record.notification_url == self.urls.notification_url && record.expires_at - now >= margin
    }
}

/// What [`Engine::maintain_subscriptions`] did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SubscriptionReport {
    pub created: u32,
    pub renewed: u32,
    /// Folders whose subscription was fresh: nothing to do.
    pub unchanged: u32,
    pub removed: u32,
    /// With the queue: folders whose upkeep was queued, one job each (the job creates, renews
    /// or removes).
    pub queued: u32,
    /// Folders another runner was keeping at the time; the next run looks again.
    pub busy: u32,
    /// One line per folder that could not be subscribed or queued (the poll still imports it).
    pub errors: Vec<String>,
}

/// What happened to one folder's subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kept {
    Created,
    Renewed,
    Unchanged,
    /// The folder is no longer subscribed; this many records (and their subscriptions) went.
    Removed(u32),
}

const LEASE_PREFIX: &str = "subscriptions#";
const LEASE_TIME: Duration = Duration::from_secs(5 * 60);

impl Engine {
    /// Brings the subscriptions in line with the configured folders: works each due folder here,
    /// or with `queue`, queues one [`crate::domain::job::JobKind::Subscription`] job per due folder. Errors of one
    /// folder are reported and do not stop the others; only a state store failure ends it early.
    pub async fn maintain_subscriptions(
        &self,
        queue: Option<&dyn JobQueue>,
    ) -> Result<SubscriptionReport, StoreError> {
        let mut report = SubscriptionReport::default();
        let Some(push) = &self.options.push else {
            return Ok(report);
        };
        let due = self.subscriptions_due(push, &mut report).await?;
        match queue {
            Some(queue) => {
                let jobs: Vec<SyncJob> = due.into_iter().map(SyncJob::subscription).collect();
                let failed = super::jobs::enqueue_many(queue, &jobs).await;
                report.queued = (jobs.len() - failed.len()) as u32;
                for (job, e) in failed {
                    report
                        .errors
                        .push(format!("{}: not queued: {e}", job.key()));
                }
            }
            None => {
                for key in due {
                    match self.keep_folder_subscription(push, &key, false).await {
                        Ok(Some(kept)) => report.count(kept),
                        Ok(None) => report.busy += 1,
                        Err(ImportError::Store(e)) => return Err(e),
                        Err(e) => {
                            tracing::warn!(mailbox = %key.mailbox, folder = %key.folder, error = %e, "could not subscribe to the folder; the scheduled poll still imports it");
                            report.errors.push(format!("{key}: {e}"));
                        }
                    }
                }
            }
        }
        tracing::info!(
            created = report.created,
            renewed = report.renewed,
            unchanged = report.unchanged,
            removed = report.removed,
            queued = report.queued,
            busy = report.busy,
            errors = report.errors.len(),
            "subscriptions maintained"
        );
        Ok(report)
    }

    /// The folders whose subscription needs Graph, from two reads of the state store; the
    /// others are counted `unchanged` in `report`.
    async fn subscriptions_due(
        &self,
        push: &PushOptions,
        report: &mut SubscriptionReport,
    ) -> Result<Vec<FolderKey>, StoreError> {
        let mut by_key: BTreeMap<FolderKey, Vec<SubscriptionRecord>> = BTreeMap::new();
        for record in self.state.list_subscriptions().await? {
            by_key.entry(record.key()).or_default().push(record);
        }
        let now = self.clock.now();
        let mut due = Vec::new();
        for config in self.state.list_mailboxes().await? {
            if !is_subscribed(&config) {
                continue;
            }
            let records = by_key.remove(&config.key()).unwrap_or_default();
            match records.as_slice() {
                [one] if push.is_fresh(one, now) => report.unchanged += 1,
                _ => due.push(config.key()),
            }
        }
        // What is left belongs to folders no longer configured, disabled or `*`: removed.
        due.extend(by_key.into_keys());
        Ok(due)
    }

    /// Works one folder's subscription under its mailbox's lease: keeps it alive (renewing it
    /// when `force`d or due) if the folder is subscribed, removes it if not. `None`: another
    /// runner holds the lease.
    pub(super) async fn keep_folder_subscription(
        &self,
        push: &PushOptions,
        key: &FolderKey,
        force: bool,
    ) -> Result<Option<Kept>, ImportError> {
        let lease = format!("{LEASE_PREFIX}{}", key.mailbox);
        if !self.take_subscription_lease(&lease).await? {
            return Ok(None);
        }
        let kept = async {
            // Read under the lease: what another runner did before it is seen.
            let config = self
                .state
                .mailbox_folders(&key.mailbox)
                .await?
                .into_iter()
                .find(|c| c.key() == *key && is_subscribed(c));
            let records = self.state.folder_subscriptions(key).await?;
            match config {
                Some(config) => self.keep_subscription(push, &config, records, force).await,
                None => {
                    for record in &records {
                        self.remove_subscription(record).await?;
                    }
                    Ok(Kept::Removed(records.len() as u32))
                }
            }
        }
        .await;
        self.release_subscription_lease(&lease).await;
        let kept = kept?;
        tracing::info!(mailbox = %key.mailbox, folder = %key.folder, outcome = ?kept, force, "subscription kept");
        Ok(Some(kept))
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
        if let Some(record) = &keep
            && push.is_fresh(record, now)
            && !force
        {
            // Nothing to do: no credential read, no Graph call.
            return Ok(Kept::Unchanged);
        }
        let lifetime = time::Duration::try_from(push.lifetime).unwrap_or(time::Duration::DAY);
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

    async fn take_subscription_lease(&self, lease: &str) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let until = now + time::Duration::try_from(LEASE_TIME).unwrap_or(time::Duration::MINUTE);
        Ok(matches!(
            self.state
                .acquire_lease(lease, &self.options.owner, now, until)
                .await?,
            LeaseOutcome::Acquired
        ))
    }

    async fn release_subscription_lease(&self, lease: &str) {
        if let Err(e) = self.state.release_lease(lease, &self.options.owner).await {
            tracing::warn!(error = %e, lease, "could not release a subscriptions lease");
        }
    }
}

/// Whether a configured folder has a subscription: enabled, and a folder of its own (`folder =
/// "*"` is polled only: its folders change, and a subscription is per folder; docs/push.md).
fn is_subscribed(config: &MailboxConfig) -> bool {
    config.enabled && !config.is_every_folder()
}

impl SubscriptionReport {
    fn count(&mut self, kept: Kept) {
        match kept {
            Kept::Created => self.created += 1,
            Kept::Renewed => self.renewed += 1,
            Kept::Unchanged => self.unchanged += 1,
            Kept::Removed(n) => self.removed += n,
        }
    }
}
