//! Outlook-style throttling per (app, mailbox): at most 4 requests in flight and a request
//! budget per window (docs/graph.md section 7), plus the per-mailbox counters tests assert on.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::core::lock;

/// Outlook's MailboxConcurrency limit: 4 concurrent requests per app and mailbox.
pub(crate) const DEFAULT_CONCURRENCY: usize = 4;
/// Outlook's request budget: 10,000 requests per 10 minutes per app and mailbox.
pub(crate) const DEFAULT_BUDGET: (u32, Duration) = (10_000, Duration::from_secs(600));

/// Per-mailbox counters (all apps together).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MailboxStats {
    /// Graph requests that reached throttling (authenticated and authorized).
    pub requests: u64,
    /// Of those, answered 429 by the concurrency limit or the budget (not by injected faults).
    pub throttled: u64,
    /// Highest number of concurrent requests one app had on this mailbox, counting each
    /// arriving request itself, rejected ones included.
    pub max_concurrency: usize,
    /// Requests in flight now.
    pub in_flight: usize,
}

#[derive(Debug, Default)]
struct KeyState {
    in_flight: usize,
    /// Admission instants inside the current budget window.
    window: VecDeque<Instant>,
}

#[derive(Debug)]
pub(crate) struct Throttle {
    pub(crate) limit: usize,
    pub(crate) retry_after: f64,
    pub(crate) budget: Option<(u32, Duration)>,
    keys: HashMap<(String, String), KeyState>,
    pub(crate) mailboxes: HashMap<String, MailboxStats>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            limit: DEFAULT_CONCURRENCY,
            retry_after: 1.0,
            budget: Some(DEFAULT_BUDGET),
            keys: HashMap::new(),
            mailboxes: HashMap::new(),
        }
    }
}

/// Why a request was refused, with the `Retry-After` value to send.
#[derive(Debug)]
pub(crate) enum Rejection {
    Concurrency { retry_after: String },
    Budget { retry_after: String },
}

/// `Retry-After` as Graph sends it: integer seconds, or a decimal (docs/graph.md section 7).
pub(crate) fn format_seconds(seconds: f64) -> String {
    let s = if seconds.is_finite() {
        seconds.max(0.0)
    } else {
        1.0
    };
    let rounded = (s * 1000.0).ceil() / 1000.0;
    format!("{rounded}")
}

impl Throttle {
    /// Counts an arriving request and admits it or refuses it.
    fn arrive(&mut self, app: &str, mailbox: &str, now: Instant) -> Result<(), Rejection> {
        let key = self
            .keys
            .entry((app.to_owned(), mailbox.to_owned()))
            .or_default();
        let stats = self.mailboxes.entry(mailbox.to_owned()).or_default();
        stats.requests += 1;
        stats.max_concurrency = stats.max_concurrency.max(key.in_flight + 1);
        if key.in_flight >= self.limit {
            stats.throttled += 1;
            return Err(Rejection::Concurrency {
                retry_after: format_seconds(self.retry_after),
            });
        }
        if let Some((requests, window)) = self.budget {
            while key
                .window
                .front()
                .is_some_and(|t| now.duration_since(*t) >= window)
            {
                key.window.pop_front();
            }
            if key.window.len() >= requests as usize {
                stats.throttled += 1;
                let frees_at = key
                    .window
                    .front()
                    .and_then(|t| t.checked_add(window))
                    .unwrap_or(now);
                let wait = frees_at.saturating_duration_since(now).as_secs_f64();
                return Err(Rejection::Budget {
                    retry_after: format_seconds(wait.max(0.001)),
                });
            }
            key.window.push_back(now);
        }
        key.in_flight += 1;
        stats.in_flight += 1;
        Ok(())
    }

    fn release(&mut self, app: &str, mailbox: &str) {
        if let Some(key) = self.keys.get_mut(&(app.to_owned(), mailbox.to_owned())) {
            key.in_flight = key.in_flight.saturating_sub(1);
        }
        if let Some(stats) = self.mailboxes.get_mut(mailbox) {
            stats.in_flight = stats.in_flight.saturating_sub(1);
        }
    }

    pub(crate) fn reset_budget_windows(&mut self) {
        for key in self.keys.values_mut() {
            key.window.clear();
        }
    }
}

/// An admitted request's in-flight slot; dropping it frees the slot.
///
/// Measurement rule: the slot must be free before the client can see the end of the response,
/// so handlers drop it before returning and streamed bodies drop it when producing their last
/// chunk. Never drop it while holding the state lock's guard of the same mutex (it only takes
/// the throttle mutex, which is never held across other locks).
#[derive(Debug)]
pub(crate) struct SlotGuard {
    throttle: Arc<Mutex<Throttle>>,
    app: String,
    mailbox: String,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        lock(&self.throttle).release(&self.app, &self.mailbox);
    }
}

/// Counts a request and takes a slot, or says why not.
pub(crate) fn admit(
    throttle: &Arc<Mutex<Throttle>>,
    app: &str,
    mailbox: &str,
) -> Result<SlotGuard, Rejection> {
    lock(throttle).arrive(app, mailbox, Instant::now())?;
    Ok(SlotGuard {
        throttle: Arc::clone(throttle),
        app: app.to_owned(),
        mailbox: mailbox.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifth_concurrent_request_is_refused_and_counted() {
        let t = Arc::new(Mutex::new(Throttle::default()));
        let slots: Vec<_> = (0..4).map(|_| admit(&t, "app", "mb").unwrap()).collect();
        assert!(matches!(
            admit(&t, "app", "mb"),
            Err(Rejection::Concurrency { .. })
        ));
        // Another app or mailbox is independent.
        let _other = admit(&t, "app2", "mb").unwrap();
        drop(slots);
        let _again = admit(&t, "app", "mb").unwrap();
        let stats = lock(&t).mailboxes.get("mb").cloned().unwrap();
        assert_eq!(stats.max_concurrency, 5);
        assert_eq!(stats.throttled, 1);
        assert_eq!(stats.in_flight, 2);
    }

    #[test]
    fn budget_refuses_with_time_until_the_window_frees() {
        let t = Arc::new(Mutex::new(Throttle {
            budget: Some((2, Duration::from_secs(60))),
            ..Throttle::default()
        }));
        drop(admit(&t, "a", "m").unwrap());
        drop(admit(&t, "a", "m").unwrap());
        match admit(&t, "a", "m") {
            Err(Rejection::Budget { retry_after }) => {
                let s: f64 = retry_after.parse().unwrap();
                assert!(s > 59.0 && s <= 60.0, "{s}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_formats_like_graph() {
        assert_eq!(format_seconds(1.0), "1");
        assert_eq!(format_seconds(0.05), "0.05");
        assert_eq!(format_seconds(2.128), "2.128");
    }
}
