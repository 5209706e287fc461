//! The shared core behind every entry point: the Rust [`crate::Sandbox`] handle, the HTTP
//! control API and the Graph/token handlers all call these methods.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::faults::{FaultKind, FaultRule, Faults};
use crate::mime::MimeTemplate;
use crate::notify::{LifecycleEvent, Notifier, Unit, lifecycle_item};
use crate::requests::{RequestLog, RequestRecord, Stats};
use crate::state::{Arrival, MessageInfo, MsgKey, State};
use crate::subscriptions::SubscriptionInfo;
use crate::throttle::Throttle;
use crate::world::{NewMessage, World};

/// Locks a mutex, ignoring poisoning: the state stays usable after a panicking test thread.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sandbox time for a clock offset (nanoseconds ahead of real time).
pub(crate) fn sandbox_now(offset_ns: &AtomicU64) -> OffsetDateTime {
    let real = OffsetDateTime::now_utc();
    let offset = offset_ns.load(Ordering::Relaxed);
    let offset = time::Duration::nanoseconds(i64::try_from(offset).unwrap_or(i64::MAX));
    real.checked_add(offset).unwrap_or(real)
}

#[derive(Debug, Default)]
pub(crate) struct Latency {
    global: Duration,
    per_mailbox: HashMap<String, Duration>,
    /// Added per KiB of a MIME body (`$value`), for a transfer that takes longer the bigger it is.
    per_kib: Duration,
    /// Each delay is scaled by a uniform factor in `1 ± jitter`.
    jitter: f64,
}

impl Latency {
    fn jittered(&self, d: Duration) -> Duration {
        if self.jitter <= 0.0 || d.is_zero() {
            return d;
        }
        let factor = 1.0 + self.jitter * (fastrand::f64() * 2.0 - 1.0);
        d.mul_f64(factor.max(0.0))
    }
}

/// Everything the server and the handles share. Locks are never held across an await, and the
/// throttle mutex is never held while taking another lock.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) state: Mutex<State>,
    pub(crate) throttle: Arc<Mutex<Throttle>>,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) log: Mutex<RequestLog>,
    latency: Mutex<Latency>,
    /// Subscriptions and change-notification delivery (docs/graph.md section 6).
    pub(crate) notify: Arc<Notifier>,
    /// Sandbox clock offset from real time, in nanoseconds (only ever moves forward).
    clock_offset_ns: Arc<AtomicU64>,
    /// Origin for the control API's millisecond timestamps.
    pub(crate) started: Instant,
    /// `http://127.0.0.1:PORT`, set once the listener is bound.
    url: OnceLock<String>,
}

impl Core {
    pub(crate) fn new(world: &World) -> Self {
        let clock_offset_ns = Arc::new(AtomicU64::new(0));
        Self {
            state: Mutex::new(State::from_world(world, OffsetDateTime::now_utc())),
            throttle: Arc::new(Mutex::new(Throttle::default())),
            faults: Mutex::new(Faults::default()),
            log: Mutex::new(RequestLog::default()),
            latency: Mutex::new(Latency::default()),
            notify: Arc::new(Notifier::new(Arc::clone(&clock_offset_ns))),
            clock_offset_ns,
            started: Instant::now(),
            url: OnceLock::new(),
        }
    }

    pub(crate) fn set_url(&self, url: String) {
        let _ = self.url.set(url);
    }

    /// The base URL (no trailing slash).
    pub(crate) fn url(&self) -> String {
        self.url.get().cloned().unwrap_or_default()
    }

    /// Sandbox time: real time plus the offset from [`Core::advance_clock`].
    pub(crate) fn now(&self) -> OffsetDateTime {
        sandbox_now(&self.clock_offset_ns)
    }

    pub(crate) fn advance_clock(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .clock_offset_ns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add(ns))
            });
        // Expire subscriptions and send the reauthorizationRequired that came due.
        self.notify.tick(self.now());
    }

    pub(crate) fn add_message(
        &self,
        mailbox: &str,
        folder_path: &str,
        m: &NewMessage,
    ) -> Option<MessageInfo> {
        let now = self.now();
        let (info, arrivals) = {
            let mut st = lock(&self.state);
            let idx = st.mailbox_or_create(mailbox);
            let mb = st.mailbox_mut(idx)?;
            let folder = match mb.resolve_path(folder_path, true) {
                Some(f) => f,
                None => mb.folder_by_id_or_name("inbox")?,
            };
            let key = mb.insert(folder, m, now);
            let info = mb.info(key)?;
            (info, st.take_arrivals(idx))
        };
        self.notify_arrivals(&arrivals);
        Some(with_sha(info))
    }

    /// Sends the change notifications for messages that arrived in watched folders (in
    /// background tasks; never blocks).
    pub(crate) fn notify_arrivals(&self, arrivals: &[Arrival]) {
        if arrivals.is_empty() {
            return;
        }
        let now = self.now();
        let (items, lifecycle) = {
            let mut subs = lock(&self.notify.subs);
            let lifecycle = self.notify.sweep(&mut subs, now);
            (subs.notifications(arrivals), lifecycle)
        };
        for u in lifecycle {
            self.notify.enqueue(u);
        }
        self.notify.send_notifications(items);
    }

    /// Live subscriptions of every app, oldest first.
    pub(crate) fn subscriptions(&self) -> Vec<SubscriptionInfo> {
        self.notify.tick(self.now());
        lock(&self.notify.subs)
            .iter()
            .map(crate::subscriptions::Subscription::info)
            .collect()
    }

    /// Sends a lifecycle notification; false if the subscription is unknown or has no
    /// lifecycle URL.
    pub(crate) fn lifecycle(&self, id: &str, event: LifecycleEvent) -> bool {
        let now = self.now();
        let (unit, due) = {
            let mut subs = lock(&self.notify.subs);
            let due = self.notify.sweep(&mut subs, now);
            let unit = subs.get_mut(id, None).and_then(|s| {
                let url = s.lifecycle_url.clone()?;
                if event == LifecycleEvent::ReauthorizationRequired {
                    s.reauthorization_required = true;
                }
                Some(Unit::lifecycle(&url, &s.id, lifecycle_item(s, event)))
            });
            if unit.is_some() && event == LifecycleEvent::SubscriptionRemoved {
                subs.remove(id, None);
            }
            (unit, due)
        };
        for u in due {
            self.notify.enqueue(u);
        }
        match unit {
            Some(u) => {
                self.notify.enqueue(u);
                true
            }
            None => false,
        }
    }

    pub(crate) fn add_folder(&self, mailbox: &str, path: &str) {
        let mut st = lock(&self.state);
        let idx = st.mailbox_or_create(mailbox);
        if let Some(mb) = st.mailbox_mut(idx) {
            mb.resolve_path(path, true);
        }
    }

    pub(crate) fn rename_folder(
        &self,
        mailbox: &str,
        path: &str,
        name: &str,
        parent_path: Option<&str>,
    ) -> bool {
        let mut st = lock(&self.state);
        let Some(idx) = st.find_mailbox(mailbox) else {
            return false;
        };
        st.mailbox_mut(idx)
            .is_some_and(|mb| mb.rename_folder(path, name, parent_path))
    }

    pub(crate) fn delete_user(&self, mailbox: &str) -> bool {
        let mut st = lock(&self.state);
        let Some(idx) = st.find_mailbox(mailbox) else {
            return false;
        };
        st.mailbox_mut(idx).map(|mb| mb.deleted = true).is_some()
    }

    pub(crate) fn add_search_folder(&self, mailbox: &str, parent_path: &str, name: &str) {
        let mut st = lock(&self.state);
        let idx = st.mailbox_or_create(mailbox);
        if let Some(mb) = st.mailbox_mut(idx) {
            mb.add_search_folder(parent_path, name);
        }
    }

    /// Messages of a mailbox (every folder, or one folder path), SHA-256 computed outside the lock.
    pub(crate) fn messages(&self, mailbox: &str, folder_path: Option<&str>) -> Vec<MessageInfo> {
        let infos: Vec<(MessageInfo, Arc<MimeTemplate>)> = {
            let mut st = lock(&self.state);
            let Some(idx) = st.find_mailbox(mailbox) else {
                return Vec::new();
            };
            let Some(mb) = st.mailbox_mut(idx) else {
                return Vec::new();
            };
            let keys: Vec<MsgKey> = match folder_path {
                None => mb.all_keys(),
                Some(path) => match mb.resolve_path(path, false) {
                    Some(f) => mb.folder_keys(f),
                    None => Vec::new(),
                },
            };
            keys.into_iter().filter_map(|k| mb.info(k)).collect()
        };
        infos.into_iter().map(with_sha).collect()
    }

    /// The MIME of a message by immutable id (or current REST id).
    pub(crate) fn mime(&self, mailbox: &str, id: &str) -> Option<Arc<MimeTemplate>> {
        let st = lock(&self.state);
        let mb = st.mailbox(st.find_mailbox(mailbox)?)?;
        let key = mb.resolve_message(id)?;
        Some(Arc::clone(&mb.message(key)?.mime))
    }

    pub(crate) fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.log).records()
    }

    pub(crate) fn record(&self, r: RequestRecord) {
        lock(&self.log).push(r);
    }

    pub(crate) fn clear_requests(&self) {
        lock(&self.log).clear();
    }

    pub(crate) fn stats(&self) -> Stats {
        let mailboxes = lock(&self.throttle)
            .mailboxes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let log = lock(&self.log);
        Stats {
            token_requests: log.token_requests,
            tokens_issued: log.tokens_issued,
            graph_requests: log.graph_requests,
            mailboxes,
        }
    }

    pub(crate) fn max_concurrency(&self, mailbox: &str) -> usize {
        lock(&self.throttle)
            .mailboxes
            .get(&mailbox.to_ascii_lowercase())
            .map_or(0, |s| s.max_concurrency)
    }

    pub(crate) fn token_requests(&self) -> usize {
        lock(&self.log).token_requests
    }

    pub(crate) fn issued_tokens(&self) -> Vec<String> {
        lock(&self.state).tokens.keys().cloned().collect()
    }

    pub(crate) fn inject(&self, f: FaultRule) {
        lock(&self.faults).push(f);
    }

    pub(crate) fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    pub(crate) fn faults_fired(&self) -> usize {
        lock(&self.faults).fired
    }

    pub(crate) fn take_fault(
        &self,
        method: &str,
        raw_path: &str,
        path: &str,
        mailbox: Option<&str>,
    ) -> Option<FaultKind> {
        lock(&self.faults).take(method, raw_path, path, mailbox)
    }

    pub(crate) fn set_latency(&self, d: Duration) {
        lock(&self.latency).global = d;
    }

    pub(crate) fn set_mailbox_latency(&self, mailbox: &str, d: Duration) {
        lock(&self.latency)
            .per_mailbox
            .insert(mailbox.to_ascii_lowercase(), d);
    }

    pub(crate) fn set_latency_model(&self, per_kib: Duration, jitter: f64) {
        let mut l = lock(&self.latency);
        l.per_kib = per_kib;
        l.jitter = jitter.clamp(0.0, 1.0);
    }

    /// Global plus per-mailbox latency, with jitter.
    pub(crate) fn latency_for(&self, mailbox: &str) -> Duration {
        let l = lock(&self.latency);
        let base = l
            .global
            .saturating_add(l.per_mailbox.get(mailbox).copied().unwrap_or_default());
        l.jittered(base)
    }

    /// Transfer time of a MIME body of `bytes`, with jitter.
    pub(crate) fn transfer_latency(&self, bytes: u64) -> Duration {
        let l = lock(&self.latency);
        l.jittered(l.per_kib.mul_f64(bytes as f64 / 1024.0))
    }

    pub(crate) fn set_throttle_retry_after(&self, seconds: f64) {
        lock(&self.throttle).retry_after = seconds;
    }

    pub(crate) fn set_request_budget(&self, budget: Option<(u32, Duration)>) {
        let mut t = lock(&self.throttle);
        t.budget = budget;
        t.reset_budget_windows();
    }

    pub(crate) fn set_concurrency_limit(&self, n: usize) {
        lock(&self.throttle).limit = n;
    }

    /// Bumps the mailbox's delta generation: older skip and delta tokens answer 410.
    pub(crate) fn expire_delta_tokens(&self, mailbox: &str) -> bool {
        let mut st = lock(&self.state);
        let Some(idx) = st.find_mailbox(mailbox) else {
            return false;
        };
        st.mailbox_mut(idx).is_some_and(|mb| {
            mb.delta_generation += 1;
            true
        })
    }

    pub(crate) fn set_app_permissions(&self, client_id: &str, p: &[String]) -> bool {
        let mut st = lock(&self.state);
        let mut found = false;
        for app in st.apps_mut(client_id) {
            app.permissions = p.to_vec();
            found = true;
        }
        found
    }

    pub(crate) fn set_app_scope(&self, client_id: &str, only: Option<&[String]>) -> bool {
        let mut st = lock(&self.state);
        let mut found = false;
        for app in st.apps_mut(client_id) {
            app.scope_only = only.map(|l| l.iter().map(|s| s.to_ascii_lowercase()).collect());
            found = true;
        }
        found
    }

    pub(crate) fn share_mailbox(
        &self,
        mailbox: &str,
        user: &str,
        folder: Option<&str>,
        write: bool,
    ) -> bool {
        let mut st = lock(&self.state);
        let (Some(idx), Some(_)) = (st.find_mailbox(mailbox), st.find_mailbox(user)) else {
            return false;
        };
        let Some(mb) = st.mailbox_mut(idx) else {
            return false;
        };
        let folder = match folder {
            Some(path) => match mb.resolve_path(path, true) {
                Some(f) => Some(f),
                None => return false,
            },
            None => None,
        };
        mb.shares.push(crate::state::Share {
            user: user.trim().to_ascii_lowercase(),
            folder,
            write,
        });
        true
    }

    pub(crate) fn unshare_mailbox(&self, mailbox: &str, user: &str) -> bool {
        let mut st = lock(&self.state);
        let Some(idx) = st.find_mailbox(mailbox) else {
            return false;
        };
        let user = user.trim().to_ascii_lowercase();
        st.mailbox_mut(idx).is_some_and(|mb| {
            let before = mb.shares.len();
            mb.shares.retain(|s| s.user != user);
            mb.shares.len() != before
        })
    }

    pub(crate) fn set_token_lifetime(&self, seconds: u64) {
        lock(&self.state).token_lifetime = seconds;
    }

    pub(crate) fn sent_mail(&self) -> Vec<crate::state::SentMail> {
        lock(&self.state).sent_mail.clone()
    }

    pub(crate) fn clear_sent_mail(&self) {
        lock(&self.state).sent_mail.clear();
    }

    pub(crate) fn set_bouncing(&self, address: &str) {
        lock(&self.state)
            .bouncing
            .insert(address.trim().to_ascii_lowercase());
    }

    pub(crate) fn clear_bouncing(&self) {
        lock(&self.state).bouncing.clear();
    }

    pub(crate) fn set_max_message_size(&self, bytes: u64) {
        lock(&self.state).max_message_size = bytes;
    }

    pub(crate) fn hold_outbox(&self, hold: bool) {
        lock(&self.state).hold_outbox = hold;
    }

    /// Sends every message waiting in an Outbox; returns how many there were.
    pub(crate) fn release_outbox(&self) -> usize {
        let now = self.now();
        let (n, arrivals) = {
            let mut st = lock(&self.state);
            let waiting = std::mem::take(&mut st.outbox);
            for (mailbox, key, client_id) in &waiting {
                crate::graph::transmit(&mut st, *mailbox, *key, now, client_id);
            }
            (waiting.len(), st.take_all_arrivals())
        };
        self.notify_arrivals(&arrivals);
        n
    }
}

/// Fills in the SHA-256 (streams the MIME once; cached in the template).
fn with_sha((mut info, mime): (MessageInfo, Arc<MimeTemplate>)) -> MessageInfo {
    info.sha256 = mime.sha256();
    info
}
