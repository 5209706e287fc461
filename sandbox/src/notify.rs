//! Change-notification delivery (docs/graph.md section 6): the validation handshake, change and
//! lifecycle notifications POSTed to the subscriber's URLs in background tasks, retries with
//! backoff, runtime-configurable chaos (delay, duplication, reordering, loss) and a log of every
//! delivery attempt.
//!
//! Ordering: each URL has one worker task that makes the first attempt of undelayed deliveries
//! one after the other, so without chaos a receiver sees notifications in the order they were
//! produced; retries and delayed deliveries run in their own tasks.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::core::{lock, sandbox_now};
use crate::subscriptions::{Subscription, Subscriptions};

/// Outlook's longest subscription: 4,230 minutes (docs/graph.md section 6).
pub const DEFAULT_MAX_SUBSCRIPTION_MINUTES: u32 = 4230;

/// Delivery settings, read at each delivery; change them with
/// [`crate::Sandbox::set_delivery_config`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DeliveryConfig {
    /// A delivery counts only if answered 2xx within this time (Graph: 3 s, docs/graph.md
    /// section 6).
    pub timeout: Duration,
    /// The validation handshake must be answered within this time (Graph: 10 s).
    pub validation_timeout: Duration,
    /// First wait before a retry; it doubles after every failed attempt (Graph retries with
    /// exponential backoff for up to 4 hours; the sandbox compresses that).
    pub retry_base: Duration,
    /// No retry starts later than this after the first attempt; then the notification is lost.
    pub retry_total: Duration,
    /// Most notifications in one POST (`value` array). Only notifications produced by the same
    /// change for the same URL are batched.
    pub max_batch: usize,
    /// Accept `http://` notification URLs. Graph requires HTTPS; the sandbox allows HTTP by
    /// default so tests can listen on `http://127.0.0.1:PORT`.
    pub allow_http: bool,
    /// `expirationDateTime` may be at most this many minutes ahead (sandbox clock).
    pub max_subscription_minutes: u32,
    /// A subscription with a lifecycle URL gets one `reauthorizationRequired` when it comes this
    /// close to expiry (checked when the sandbox clock is advanced and on subscription calls);
    /// `None` turns that off.
    pub reauthorization_margin: Option<Duration>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3),
            validation_timeout: Duration::from_secs(10),
            retry_base: Duration::from_millis(100),
            retry_total: Duration::from_secs(10),
            max_batch: 100,
            allow_http: true,
            max_subscription_minutes: DEFAULT_MAX_SUBSCRIPTION_MINUTES,
            reauthorization_margin: Some(Duration::from_secs(10 * 60)),
        }
    }
}

/// A lifecycle event (docs/graph.md section 6), sent to a subscription's
/// `lifecycleNotificationUrl` by [`crate::Sandbox::lifecycle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// `reauthorizationRequired`: the app should reauthorize or renew the subscription.
    ReauthorizationRequired,
    /// `subscriptionRemoved`: the subscription is gone (the sandbox deletes it).
    SubscriptionRemoved,
    /// `missed`: some change notifications were not delivered.
    Missed,
}

impl LifecycleEvent {
    /// The wire name (`reauthorizationRequired`, `subscriptionRemoved`, `missed`).
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleEvent::ReauthorizationRequired => "reauthorizationRequired",
            LifecycleEvent::SubscriptionRemoved => "subscriptionRemoved",
            LifecycleEvent::Missed => "missed",
        }
    }

    /// Parses a wire name (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        [
            LifecycleEvent::ReauthorizationRequired,
            LifecycleEvent::SubscriptionRemoved,
            LifecycleEvent::Missed,
        ]
        .into_iter()
        .find(|e| e.as_str().eq_ignore_ascii_case(s))
    }
}

/// What a delivery attempt carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryKind {
    /// The validation handshake at subscription creation.
    Validation,
    /// Change notifications.
    Notification,
    /// Lifecycle notifications.
    Lifecycle,
}

/// One delivery attempt (or one notification dropped by chaos), for assertions in tests.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryRecord {
    /// What was sent.
    pub kind: DeliveryKind,
    /// The URL POSTed to (for a validation: with `?validationToken=`).
    pub url: String,
    /// The subscriptions whose notifications the payload carries.
    pub subscription_ids: Vec<String>,
    /// 1 for the first attempt, 2 for the first retry...; 0 for a notification dropped by
    /// chaos (never sent).
    pub attempt: u32,
    /// Sandbox time when the attempt started.
    pub time: OffsetDateTime,
    /// How long the attempt took.
    pub duration: Duration,
    /// The receiver's status, if it answered in time.
    pub status: Option<u16>,
    /// Why the attempt failed without a status (timeout, connection refused, chaos drop...).
    pub error: Option<String>,
    /// Whether this attempt counts as delivered (2xx in time; for a validation: 200 with the
    /// token as `text/plain`).
    pub delivered: bool,
    /// The JSON body sent (`{"value":[...]}`); for a validation, `{"validationToken": ...}`.
    pub payload: Value,
}

/// Runtime chaos applied to change notifications (not to lifecycle notifications or the
/// handshake). "Next N" counters are deterministic and count notifications, not POSTs.
#[derive(Debug, Default)]
struct Chaos {
    delay_min: Duration,
    delay_max: Duration,
    delay_next: usize,
    delay_next_by: Duration,
    drop_next: usize,
    duplicate_next: usize,
    reorder_next: usize,
    held: Vec<Unit>,
    drop_probability: f64,
    duplicate_probability: f64,
}

impl Chaos {
    fn delay(&mut self) -> Duration {
        if self.delay_next > 0 {
            self.delay_next -= 1;
            return self.delay_next_by;
        }
        if self.delay_max <= self.delay_min {
            return self.delay_min;
        }
        let span = self.delay_max.saturating_sub(self.delay_min);
        self.delay_min.saturating_add(span.mul_f64(fastrand::f64()))
    }
}

/// One POST to make: a URL and the notifications of its `value` array.
#[derive(Clone, Debug)]
pub(crate) struct Unit {
    kind: DeliveryKind,
    url: String,
    items: Vec<Value>,
    subscription_ids: Vec<String>,
    delay: Duration,
}

impl Unit {
    pub(crate) fn lifecycle(url: &str, sub_id: &str, item: Value) -> Self {
        Self {
            kind: DeliveryKind::Lifecycle,
            url: url.to_owned(),
            items: vec![item],
            subscription_ids: vec![sub_id.to_owned()],
            delay: Duration::ZERO,
        }
    }
}

/// One change notification before chaos and batching.
#[derive(Clone, Debug)]
pub(crate) struct Item {
    pub(crate) url: String,
    pub(crate) subscription_id: String,
    pub(crate) value: Value,
}

/// The delivery engine, shared by the core and its background tasks.
#[derive(Debug)]
pub(crate) struct Notifier {
    pub(crate) subs: Mutex<Subscriptions>,
    config: Mutex<DeliveryConfig>,
    chaos: Mutex<Chaos>,
    log: Mutex<Vec<DeliveryRecord>>,
    workers: Mutex<HashMap<String, mpsc::UnboundedSender<Unit>>>,
    http: reqwest::Client,
    runtime: OnceLock<tokio::runtime::Handle>,
    clock_offset_ns: Arc<AtomicU64>,
}

impl Notifier {
    pub(crate) fn new(clock_offset_ns: Arc<AtomicU64>) -> Self {
        // No proxy (the receivers are local) and no redirects (Graph follows none).
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("graph-sandbox-notifications")
            .build()
            .unwrap_or_default();
        Self {
            subs: Mutex::new(Subscriptions::default()),
            config: Mutex::new(DeliveryConfig::default()),
            chaos: Mutex::new(Chaos::default()),
            log: Mutex::new(Vec::new()),
            workers: Mutex::new(HashMap::new()),
            http,
            runtime: OnceLock::new(),
            clock_offset_ns,
        }
    }

    /// Remembers the runtime so deliveries can be spawned from synchronous callers.
    pub(crate) fn set_runtime(&self, h: tokio::runtime::Handle) {
        let _ = self.runtime.set(h);
    }

    fn runtime(&self) -> Option<tokio::runtime::Handle> {
        self.runtime
            .get()
            .cloned()
            .or_else(|| tokio::runtime::Handle::try_current().ok())
    }

    fn now(&self) -> OffsetDateTime {
        sandbox_now(&self.clock_offset_ns)
    }

    pub(crate) fn config(&self) -> DeliveryConfig {
        lock(&self.config).clone()
    }

    pub(crate) fn set_config(&self, c: DeliveryConfig) {
        *lock(&self.config) = c;
    }

    pub(crate) fn update_config(&self, f: impl FnOnce(&mut DeliveryConfig)) {
        f(&mut lock(&self.config));
    }

    pub(crate) fn deliveries(&self) -> Vec<DeliveryRecord> {
        lock(&self.log).clone()
    }

    pub(crate) fn clear_deliveries(&self) {
        lock(&self.log).clear();
    }

    fn record(&self, r: DeliveryRecord) {
        let mut log = lock(&self.log);
        // Bounded like the request log.
        if log.len() >= 100_000 {
            log.remove(0);
        }
        log.push(r);
    }

    pub(crate) fn set_delay(&self, min: Duration, max: Duration) {
        let mut c = lock(&self.chaos);
        c.delay_min = min;
        c.delay_max = max.max(min);
    }

    pub(crate) fn delay_next(&self, n: usize, d: Duration) {
        let mut c = lock(&self.chaos);
        c.delay_next = n;
        c.delay_next_by = d;
    }

    pub(crate) fn drop_next(&self, n: usize) {
        lock(&self.chaos).drop_next = n;
    }

    pub(crate) fn duplicate_next(&self, n: usize) {
        lock(&self.chaos).duplicate_next = n;
    }

    /// Holds the next `n` notifications and releases them newest first once the `n`-th
    /// arrives; `0` releases whatever is held now (newest first).
    pub(crate) fn reorder_next(self: &Arc<Self>, n: usize) {
        let released = {
            let mut c = lock(&self.chaos);
            c.reorder_next = n;
            if n == 0 {
                c.held.drain(..).rev().collect()
            } else {
                Vec::new()
            }
        };
        for u in released {
            self.enqueue(u);
        }
    }

    pub(crate) fn set_probabilities(&self, drop: Option<f64>, duplicate: Option<f64>) {
        let mut c = lock(&self.chaos);
        if let Some(p) = drop {
            c.drop_probability = p.clamp(0.0, 1.0);
        }
        if let Some(p) = duplicate {
            c.duplicate_probability = p.clamp(0.0, 1.0);
        }
    }

    /// Resets every chaos setting and releases held notifications.
    pub(crate) fn clear_chaos(self: &Arc<Self>) {
        let held: Vec<Unit> = {
            let mut c = lock(&self.chaos);
            let held = std::mem::take(&mut c.held);
            *c = Chaos::default();
            held
        };
        for u in held.into_iter().rev() {
            self.enqueue(u);
        }
    }

    /// Applies chaos to freshly produced change notifications, batches them and queues them.
    pub(crate) fn send_notifications(self: &Arc<Self>, items: Vec<Item>) {
        if items.is_empty() {
            return;
        }
        let max_batch = self.config().max_batch.max(1);
        let now = self.now();
        let mut dropped = Vec::new();
        let mut out: Vec<Unit> = Vec::new();
        {
            let mut c = lock(&self.chaos);
            // (item, delay, duplicate) in order, for batching.
            let mut ready: Vec<(Item, Duration, bool)> = Vec::new();
            for item in items {
                if c.drop_next > 0 {
                    c.drop_next -= 1;
                    dropped.push(item);
                    continue;
                }
                if c.drop_probability > 0.0 && fastrand::f64() < c.drop_probability {
                    dropped.push(item);
                    continue;
                }
                let duplicate = if c.duplicate_next > 0 {
                    c.duplicate_next -= 1;
                    true
                } else {
                    c.duplicate_probability > 0.0 && fastrand::f64() < c.duplicate_probability
                };
                let delay = c.delay();
                if c.reorder_next > 0 {
                    c.reorder_next -= 1;
                    let unit = single(&item, delay);
                    if duplicate {
                        c.held.push(unit.clone());
                    }
                    c.held.push(unit);
                    if c.reorder_next == 0 {
                        let held: Vec<Unit> = c.held.drain(..).rev().collect();
                        out.extend(held);
                    }
                    continue;
                }
                ready.push((item, delay, duplicate));
            }
            // Consecutive notifications for the same URL and delay share a POST.
            let mut i = 0;
            while i < ready.len() {
                let mut batch: Vec<&(Item, Duration, bool)> = Vec::new();
                while let Some(next) = ready.get(i) {
                    let same = batch
                        .first()
                        .is_none_or(|f| f.0.url == next.0.url && f.1 == next.1);
                    if !same || batch.len() >= max_batch {
                        break;
                    }
                    batch.push(next);
                    i += 1;
                }
                let Some(first) = batch.first() else {
                    break;
                };
                out.push(Unit {
                    kind: DeliveryKind::Notification,
                    url: first.0.url.clone(),
                    items: batch.iter().map(|b| b.0.value.clone()).collect(),
                    subscription_ids: batch.iter().map(|b| b.0.subscription_id.clone()).collect(),
                    delay: first.1,
                });
                // A duplicate is a separate POST right after the original.
                for (item, delay, _) in batch.iter().filter(|b| b.2) {
                    out.push(single(item, *delay));
                }
            }
        }
        for item in dropped {
            self.record(DeliveryRecord {
                kind: DeliveryKind::Notification,
                url: item.url,
                subscription_ids: vec![item.subscription_id],
                attempt: 0,
                time: now,
                duration: Duration::ZERO,
                status: None,
                error: Some("dropped by the sandbox (chaos)".to_owned()),
                delivered: false,
                payload: json!({ "value": [item.value] }),
            });
        }
        for u in out {
            self.enqueue(u);
        }
    }

    /// Queues a POST on its URL's worker (created on first use).
    pub(crate) fn enqueue(self: &Arc<Self>, unit: Unit) {
        let mut workers = lock(&self.workers);
        let unit = match workers.get(&unit.url) {
            Some(tx) => match tx.send(unit) {
                Ok(()) => return,
                Err(mpsc::error::SendError(u)) => u,
            },
            None => unit,
        };
        let Some(rt) = self.runtime() else {
            tracing::warn!("no Tokio runtime: notification not delivered");
            return;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let url = unit.url.clone();
        if tx.send(unit).is_ok() {
            rt.spawn(worker(Arc::downgrade(self), rx));
            workers.insert(url, tx);
        }
    }

    /// One POST; records it and says whether it was delivered.
    async fn attempt(&self, unit: &Unit, attempt: u32) -> bool {
        let payload = json!({ "value": unit.items });
        let body = serde_json::to_vec(&payload).unwrap_or_default();
        let timeout = self.config().timeout;
        let time = self.now();
        let started = Instant::now();
        let sent = self
            .http
            .post(&unit.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(timeout)
            .send()
            .await;
        let (status, error) = match sent {
            Ok(r) => (Some(r.status().as_u16()), None),
            Err(e) => (None, Some(describe(&e))),
        };
        let delivered = status.is_some_and(|s| (200..300).contains(&s));
        self.record(DeliveryRecord {
            kind: unit.kind,
            url: unit.url.clone(),
            subscription_ids: unit.subscription_ids.clone(),
            attempt,
            time,
            duration: started.elapsed(),
            status,
            error,
            delivered,
            payload,
        });
        delivered
    }

    /// Retries after a failed first attempt, doubling the wait, until `retry_total` has passed
    /// since `first` (docs/graph.md section 6: exponential backoff, then the notification is lost).
    async fn retry(self: Arc<Self>, unit: Unit, first: Instant) {
        let config = self.config();
        let mut wait = config.retry_base;
        let mut attempt = 2;
        loop {
            if first.elapsed().saturating_add(wait) > config.retry_total {
                return;
            }
            tokio::time::sleep(wait).await;
            if self.attempt(&unit, attempt).await {
                return;
            }
            wait = wait.saturating_mul(2);
            attempt += 1;
        }
    }

    /// The validation handshake (docs/graph.md section 6): POST `{url}?validationToken=…` with
    /// `text/plain` and an empty body; valid only if answered 200, `text/plain`, body = the
    /// decoded token, within the validation timeout.
    pub(crate) async fn validate(&self, url: &str, subscription_id: &str) -> bool {
        let token = format!(
            "Validation: Testing client application reachability for subscription Request-Id: {}",
            crate::ids::new_guid()
        );
        let Ok(mut target) = url::Url::parse(url) else {
            return false;
        };
        target
            .query_pairs_mut()
            .append_pair("validationToken", &token);
        let timeout = self.config().validation_timeout;
        let time = self.now();
        let started = Instant::now();
        let exchange = async {
            let r = self
                .http
                .post(target.as_str())
                .header(reqwest::header::CONTENT_TYPE, "text/plain")
                .body("")
                .timeout(timeout)
                .send()
                .await?;
            let status = r.status().as_u16();
            let text_plain = r
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    v.trim_start()
                        .to_ascii_lowercase()
                        .starts_with("text/plain")
                });
            let body = r.text().await?;
            Ok::<_, reqwest::Error>((status, text_plain, body))
        };
        let (status, error, delivered) = match exchange.await {
            Ok((status, text_plain, body)) => {
                let ok = status == 200 && text_plain && body == token;
                let error = (!ok && status == 200).then(|| {
                    if text_plain {
                        "the body is not the validation token".to_owned()
                    } else {
                        "the answer is not text/plain".to_owned()
                    }
                });
                (Some(status), error, ok)
            }
            Err(e) => (None, Some(describe(&e)), false),
        };
        self.record(DeliveryRecord {
            kind: DeliveryKind::Validation,
            url: target.to_string(),
            subscription_ids: vec![subscription_id.to_owned()],
            attempt: 1,
            time,
            duration: started.elapsed(),
            status,
            error,
            delivered,
            payload: json!({ "validationToken": token }),
        });
        delivered
    }

    /// Removes expired subscriptions and returns the `reauthorizationRequired` notifications
    /// that became due (send them after releasing the lock).
    pub(crate) fn sweep(&self, subs: &mut Subscriptions, now: OffsetDateTime) -> Vec<Unit> {
        subs.remove_expired(now);
        let Some(margin) = self.config().reauthorization_margin else {
            return Vec::new();
        };
        let margin = time::Duration::try_from(margin).unwrap_or(time::Duration::ZERO);
        let mut out = Vec::new();
        for s in subs.iter_mut() {
            if s.reauthorization_notified || s.expiration - now > margin {
                continue;
            }
            if let Some(url) = s.lifecycle_url.clone() {
                s.reauthorization_notified = true;
                s.reauthorization_required = true;
                let item = lifecycle_item(s, LifecycleEvent::ReauthorizationRequired);
                out.push(Unit::lifecycle(&url, &s.id, item));
            }
        }
        out
    }

    /// Sweeps the subscriptions at `now` and sends whatever lifecycle notifications came due.
    pub(crate) fn tick(self: &Arc<Self>, now: OffsetDateTime) {
        let units = {
            let mut subs = lock(&self.subs);
            self.sweep(&mut subs, now)
        };
        for u in units {
            self.enqueue(u);
        }
    }
}

/// The lifecycle notification of one subscription (docs/graph.md section 6): the change
/// notification envelope without `resource`/`resourceData`, plus `lifecycleEvent`.
pub(crate) fn lifecycle_item(s: &Subscription, event: LifecycleEvent) -> Value {
    json!({
        "subscriptionId": s.id,
        "subscriptionExpirationDateTime": crate::subscriptions::precise_time(s.expiration),
        "tenantId": s.tenant_id,
        "clientState": s.client_state,
        "lifecycleEvent": event.as_str(),
    })
}

fn single(item: &Item, delay: Duration) -> Unit {
    Unit {
        kind: DeliveryKind::Notification,
        url: item.url.clone(),
        items: vec![item.value.clone()],
        subscription_ids: vec![item.subscription_id.clone()],
        delay,
    }
}

/// A URL's worker: first attempts of undelayed POSTs in order; delayed POSTs and retries in
/// their own tasks so they never hold up the others. It holds the notifier weakly: once the
/// sandbox is gone, the channel closes and the worker ends.
async fn worker(n: Weak<Notifier>, mut rx: mpsc::UnboundedReceiver<Unit>) {
    while let Some(unit) = rx.recv().await {
        let Some(n) = n.upgrade() else {
            return;
        };
        if unit.delay.is_zero() {
            let first = Instant::now();
            if !n.attempt(&unit, 1).await {
                tokio::spawn(Arc::clone(&n).retry(unit, first));
            }
        } else {
            let n = Arc::clone(&n);
            tokio::spawn(async move {
                tokio::time::sleep(unit.delay).await;
                let first = Instant::now();
                if !n.attempt(&unit, 1).await {
                    n.retry(unit, first).await;
                }
            });
        }
    }
}

/// An error with its causes ("error sending request: connection refused").
fn describe(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
