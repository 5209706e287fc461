//! In-memory adapters, for unit tests of the engine and as the reference for the contract suite.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use time::OffsetDateTime;

use crate::credentials::AppCredential;
use crate::discovery::{DiscoverRule, DiscoveryRun};
use crate::domain::event::{MessageEvent, RawLocation};
use crate::domain::job::SyncJob;
use crate::domain::{
    Cursor, FolderKey, MailboxAddress, MailboxConfig, MessageId, MessageRecord, RecordState,
    RunSummary, SubscriptionRecord,
};
use crate::ports::{
    AlertClaims, AlertError, Alerter, BlobError, BlobStore, ByteStream, CreateOutcome, Cursors,
    DiscoverRules, EventOutbox, EventPublisher, JobQueue, LeaseOutcome, Leases, MailboxConfigs,
    MessageRecords, PublishError, QueueError, RunLog, SecretError, SecretSource, StoreError,
    SubscriptionLookup, Subscriptions,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another test thread panicked; the data is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct State {
    mailboxes: BTreeMap<(MailboxAddress, String), MailboxConfig>,
    records: BTreeMap<(MailboxAddress, MessageId), MessageRecord>,
    cursors: HashMap<FolderKey, Cursor>,
    leases: HashMap<String, (String, OffsetDateTime)>,
    runs: HashMap<MailboxAddress, RunSummary>,
    subscriptions: HashMap<String, SubscriptionRecord>,
    /// (credential, alert key) → claimed at.
    alerts: BTreeMap<(String, String), OffsetDateTime>,
    rules: BTreeMap<String, DiscoverRule>,
    discoveries: HashMap<String, DiscoveryRun>,
    events: BTreeMap<(MailboxAddress, MessageId), MessageEvent>,
}

/// A [`StateStore`] in memory.
#[derive(Default)]
pub struct MemoryStateStore {
    state: Mutex<State>,
}

#[async_trait]
impl EventOutbox for MemoryStateStore {
    async fn put_event(&self, event: &MessageEvent) -> Result<(), StoreError> {
        let key = (event.mailbox.clone(), event.message_id.clone());
        lock(&self.state).events.insert(key, event.clone());
        Ok(())
    }

    async fn pending_events(
        &self,
        mailbox: &MailboxAddress,
    ) -> Result<Vec<MessageEvent>, StoreError> {
        Ok(lock(&self.state)
            .events
            .iter()
            .filter(|((m, _), _)| m == mailbox)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn delete_event(
        &self,
        mailbox: &MailboxAddress,
        message_id: &MessageId,
    ) -> Result<(), StoreError> {
        lock(&self.state)
            .events
            .remove(&(mailbox.clone(), message_id.clone()));
        Ok(())
    }
}

#[async_trait]
impl DiscoverRules for MemoryStateStore {
    async fn put_discover_rule(&self, rule: &DiscoverRule) -> Result<(), StoreError> {
        lock(&self.state).rules.insert(rule.id(), rule.clone());
        Ok(())
    }

    async fn list_discover_rules(&self) -> Result<Vec<DiscoverRule>, StoreError> {
        Ok(lock(&self.state).rules.values().cloned().collect())
    }

    async fn remove_discover_rule(&self, id: &str) -> Result<bool, StoreError> {
        let mut state = lock(&self.state);
        state.discoveries.remove(id);
        Ok(state.rules.remove(id).is_some())
    }

    async fn put_discovery_run(&self, run: &DiscoveryRun) -> Result<(), StoreError> {
        lock(&self.state)
            .discoveries
            .insert(run.rule.clone(), run.clone());
        Ok(())
    }

    async fn last_discovery_run(&self, rule: &str) -> Result<Option<DiscoveryRun>, StoreError> {
        Ok(lock(&self.state).discoveries.get(rule).cloned())
    }
}

#[async_trait]
impl MailboxConfigs for MemoryStateStore {
    async fn put_mailbox(&self, config: &MailboxConfig) -> Result<(), StoreError> {
        lock(&self.state).mailboxes.insert(
            (config.address.clone(), config.folder.clone()),
            config.clone(),
        );
        Ok(())
    }

    async fn list_mailboxes(&self) -> Result<Vec<MailboxConfig>, StoreError> {
        Ok(lock(&self.state).mailboxes.values().cloned().collect())
    }

    async fn mailbox_folders(
        &self,
        address: &MailboxAddress,
    ) -> Result<Vec<MailboxConfig>, StoreError> {
        Ok(lock(&self.state)
            .mailboxes
            .values()
            .filter(|c| &c.address == address)
            .cloned()
            .collect())
    }

    async fn remove_mailbox(&self, key: &FolderKey) -> Result<bool, StoreError> {
        Ok(lock(&self.state)
            .mailboxes
            .remove(&(key.mailbox.clone(), key.folder.clone()))
            .is_some())
    }
}

#[async_trait]
impl MessageRecords for MemoryStateStore {
    async fn create_record(&self, record: &MessageRecord) -> Result<CreateOutcome, StoreError> {
        let mut state = lock(&self.state);
        let key = (record.mailbox.clone(), record.message_id.clone());
        if let Some(existing) = state.records.get(&key) {
            return Ok(CreateOutcome::AlreadyStored(Box::new(existing.clone())));
        }
        state.records.insert(key, record.clone());
        Ok(CreateOutcome::Created)
    }

    async fn get_record(
        &self,
        mailbox: &MailboxAddress,
        id: &MessageId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        Ok(lock(&self.state)
            .records
            .get(&(mailbox.clone(), id.clone()))
            .cloned())
    }

    async fn mark_done(&self, mailbox: &MailboxAddress, id: &MessageId) -> Result<(), StoreError> {
        if let Some(record) = lock(&self.state)
            .records
            .get_mut(&(mailbox.clone(), id.clone()))
        {
            record.state = RecordState::Done;
        }
        Ok(())
    }

    async fn pending_records(
        &self,
        mailbox: &MailboxAddress,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        Ok(lock(&self.state)
            .records
            .values()
            .filter(|r| &r.mailbox == mailbox && r.state == RecordState::Stored)
            .cloned()
            .collect())
    }

    async fn list_records(
        &self,
        mailbox: &MailboxAddress,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        Ok(lock(&self.state)
            .records
            .values()
            .filter(|r| &r.mailbox == mailbox)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl RunLog for MemoryStateStore {
    async fn put_run(&self, run: &RunSummary) -> Result<(), StoreError> {
        lock(&self.state)
            .runs
            .insert(run.mailbox.clone(), run.clone());
        Ok(())
    }

    async fn last_run(&self, mailbox: &MailboxAddress) -> Result<Option<RunSummary>, StoreError> {
        Ok(lock(&self.state).runs.get(mailbox).cloned())
    }
}

#[async_trait]
impl Cursors for MemoryStateStore {
    async fn get_cursor(&self, key: &FolderKey) -> Result<Option<Cursor>, StoreError> {
        Ok(lock(&self.state).cursors.get(key).cloned())
    }

    async fn put_cursor(&self, key: &FolderKey, cursor: &Cursor) -> Result<(), StoreError> {
        lock(&self.state)
            .cursors
            .insert(key.clone(), cursor.clone());
        Ok(())
    }
}

#[async_trait]
impl Leases for MemoryStateStore {
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<LeaseOutcome, StoreError> {
        let mut state = lock(&self.state);
        if let Some((holder, expires)) = state.leases.get(name)
            && holder != owner
            && *expires > now
        {
            return Ok(LeaseOutcome::HeldBy {
                owner: holder.clone(),
                until: *expires,
            });
        }
        state
            .leases
            .insert(name.to_owned(), (owner.to_owned(), until));
        Ok(LeaseOutcome::Acquired)
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let mut state = lock(&self.state);
        if state
            .leases
            .get(name)
            .is_some_and(|(holder, _)| holder == owner)
        {
            state.leases.remove(name);
        }
        Ok(())
    }
}

#[async_trait]
impl SubscriptionLookup for MemoryStateStore {
    async fn get_subscription(&self, id: &str) -> Result<Option<SubscriptionRecord>, StoreError> {
        Ok(lock(&self.state).subscriptions.get(id).cloned())
    }
}

#[async_trait]
impl Subscriptions for MemoryStateStore {
    async fn put_subscription(&self, sub: &SubscriptionRecord) -> Result<(), StoreError> {
        lock(&self.state)
            .subscriptions
            .insert(sub.id.clone(), sub.clone());
        Ok(())
    }

    async fn list_subscriptions(&self) -> Result<Vec<SubscriptionRecord>, StoreError> {
        let mut all: Vec<SubscriptionRecord> =
            lock(&self.state).subscriptions.values().cloned().collect();
        all.sort_by(|a, b| (&a.mailbox, &a.folder, &a.id).cmp(&(&b.mailbox, &b.folder, &b.id)));
        Ok(all)
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError> {
        Ok(lock(&self.state).subscriptions.remove(id).is_some())
    }
}

#[async_trait]
impl AlertClaims for MemoryStateStore {
    async fn claim_alert(
        &self,
        credential: &str,
        alert_key: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut state = lock(&self.state);
        let key = (credential.to_owned(), alert_key.to_owned());
        if state.alerts.contains_key(&key) {
            return Ok(false);
        }
        state.alerts.insert(key, now);
        Ok(true)
    }

    async fn release_alert(&self, credential: &str, alert_key: &str) -> Result<(), StoreError> {
        lock(&self.state)
            .alerts
            .remove(&(credential.to_owned(), alert_key.to_owned()));
        Ok(())
    }

    async fn list_alerts(&self, credential: &str) -> Result<Vec<String>, StoreError> {
        Ok(lock(&self.state)
            .alerts
            .keys()
            .filter(|(c, _)| c == credential)
            .map(|(_, k)| k.clone())
            .collect())
    }
}

/// A [`BlobStore`] in memory.
#[derive(Default)]
pub struct MemoryBlobStore {
    blobs: Mutex<HashMap<String, Bytes>>,
}

impl MemoryBlobStore {
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<_> = lock(&self.blobs).keys().cloned().collect();
        keys.sort();
        keys
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn put(&self, key: &str, mut body: ByteStream) -> Result<(), BlobError> {
        let mut buffer = BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|source| BlobError::Source {
                key: key.to_owned(),
                source,
            })?;
            buffer.extend_from_slice(&chunk);
        }
        lock(&self.blobs).insert(key.to_owned(), buffer.freeze());
        Ok(())
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        Ok(lock(&self.blobs).get(key).map(|b| b.len() as u64))
    }

    async fn get(&self, key: &str) -> Result<ByteStream, BlobError> {
        let blob = lock(&self.blobs)
            .get(key)
            .cloned()
            .ok_or_else(|| BlobError::Unavailable {
                operation: "read",
                key: key.to_owned(),
                detail: "no such object".into(),
            })?;
        Ok(Box::pin(futures::stream::iter([Ok(blob)])))
    }

    fn location(&self, key: &str) -> RawLocation {
        RawLocation::Key {
            key: key.to_owned(),
        }
    }
}

/// An [`EventPublisher`] that keeps what it is given, and can be told to refuse.
#[derive(Default)]
pub struct MemoryEventPublisher {
    published: Mutex<Vec<MessageEvent>>,
    refusing: std::sync::atomic::AtomicBool,
}

impl MemoryEventPublisher {
    /// Every event accepted so far, in order (a republished event appears again).
    pub fn published(&self) -> Vec<MessageEvent> {
        lock(&self.published).clone()
    }

    /// Refuse (`true`) or accept (`false`) every event from now on.
    pub fn set_refusing(&self, refusing: bool) {
        self.refusing
            .store(refusing, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait]
impl EventPublisher for MemoryEventPublisher {
    async fn publish(&self, events: &[MessageEvent]) -> Vec<Result<(), PublishError>> {
        if self.refusing.load(std::sync::atomic::Ordering::SeqCst) {
            let refused = PublishError {
                channel: "memory",
                detail: "refusing, as asked".into(),
            };
            return events.iter().map(|_| Err(refused.clone())).collect();
        }
        lock(&self.published).extend_from_slice(events);
        events.iter().map(|_| Ok(())).collect()
    }
}

/// A [`SecretSource`] over a fixed map of credentials.
#[derive(Default)]
pub struct MemorySecretSource {
    credentials: Mutex<HashMap<String, AppCredential>>,
}

impl MemorySecretSource {
    pub fn insert(&self, name: &str, credential: AppCredential) {
        lock(&self.credentials).insert(name.to_owned(), credential);
    }
}

#[async_trait]
impl SecretSource for MemorySecretSource {
    async fn fetch(&self, name: &str) -> Result<AppCredential, SecretError> {
        lock(&self.credentials)
            .get(name)
            .cloned()
            .ok_or_else(|| SecretError::NotFound {
                name: name.to_owned(),
                hint: "no such credential is configured".into(),
            })
    }
}

/// A [`JobQueue`] in memory: keeps every job it accepted, in order, and collapses identical jobs
/// within one deduplication window as SQS does (see [`SyncJob::deduplication_id`]).
pub struct MemoryJobQueue {
    clock: std::sync::Arc<dyn crate::clock::Clock>,
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    jobs: Vec<SyncJob>,
    /// Deduplication ids seen, with the time they were seen (seconds since the epoch).
    seen: HashMap<String, i64>,
}

impl Default for MemoryJobQueue {
    fn default() -> Self {
        Self::with_clock(std::sync::Arc::new(crate::clock::SystemClock))
    }
}

impl MemoryJobQueue {
    /// A queue that reads the deduplication window from `clock`.
    pub fn with_clock(clock: std::sync::Arc<dyn crate::clock::Clock>) -> Self {
        Self {
            clock,
            state: Mutex::new(QueueState::default()),
        }
    }

    /// The jobs accepted so far, oldest first.
    pub fn jobs(&self) -> Vec<SyncJob> {
        lock(&self.state).jobs.clone()
    }
}

#[async_trait]
impl JobQueue for MemoryJobQueue {
    async fn enqueue(&self, job: &SyncJob) -> Result<(), QueueError> {
        let now = self.clock.now();
        let id = job.deduplication_id(now);
        let mut state = lock(&self.state);
        // Ids embed their window, so an id from a past window never comes back: forget those
        // older than one window to keep the map small.
        let horizon = now.unix_timestamp() - SyncJob::DEDUPLICATION_WINDOW_SECONDS;
        state.seen.retain(|_, at| *at >= horizon);
        if state.seen.contains_key(&id) {
            return Ok(());
        }
        state.seen.insert(id, now.unix_timestamp());
        state.jobs.push(job.clone());
        Ok(())
    }
}

/// An [`Alerter`] in memory: keeps every alert it accepted, and fails the next sends on demand.
#[derive(Default)]
pub struct MemoryAlerter {
    sent: Mutex<Vec<crate::expiry::Alert>>,
    failures: Mutex<usize>,
}

impl MemoryAlerter {
    /// The alerts accepted so far, oldest first.
    pub fn sent(&self) -> Vec<crate::expiry::Alert> {
        lock(&self.sent).clone()
    }

    /// The next `n` sends fail.
    pub fn fail_next(&self, n: usize) {
        *lock(&self.failures) = n;
    }
}

#[async_trait]
impl Alerter for MemoryAlerter {
    async fn send(&self, alert: &crate::expiry::Alert) -> Result<(), AlertError> {
        {
            let mut failures = lock(&self.failures);
            if *failures > 0 {
                *failures -= 1;
                return Err(AlertError::Failed {
                    channel: "memory",
                    detail: "failure injected by the test".into(),
                });
            }
        }
        lock(&self.sent).push(alert.clone());
        Ok(())
    }
}
