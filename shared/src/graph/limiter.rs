//! Graph etiquette for Outlook (docs/graph.md §7): at most 4 requests in flight per app and mailbox,
//! no more requests per app and mailbox in a window than Graph's budget, a global cap across
//! mailboxes, and a 429 pauses the whole mailbox, not just one request.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Held while a request is in flight, including while its response body streams.
#[derive(Debug)]
pub struct Permit {
    _mailbox: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

/// Outlook's request budget per app and mailbox: 10,000 requests per 10 minutes by default
/// (docs/graph.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestBudget {
    pub requests: u32,
    pub window: Duration,
}

impl Default for RequestBudget {
    fn default() -> Self {
        Self {
            requests: 10_000,
            window: Duration::from_secs(600),
        }
    }
}

/// Requests sent in the last window, counted in buckets so memory stays small however large the
/// budget. Conservative twice over: a bucket leaves the window only when its *last* possible
/// request has, and only 95% of the budget is spent, which leaves room for requests another
/// process sent and for the time between counting a request here and Graph counting it.
/// (Microsoft documents the budget, not how its window slides; a sliding window is the strict
/// reading of "10,000 requests in a 10-minute period".)
#[derive(Debug)]
struct Window {
    window: Duration,
    bucket_width: Duration,
    allowed: u32,
    /// (first request's instant, requests) per bucket, oldest first.
    buckets: VecDeque<(Instant, u32)>,
    total: u32,
}

impl Window {
    const BUCKETS: u32 = 100;

    fn new(budget: RequestBudget) -> Self {
        Self {
            window: budget.window,
            bucket_width: budget.window / Self::BUCKETS,
            allowed: (u64::from(budget.requests) * 95 / 100).max(1) as u32,
            buckets: VecDeque::new(),
            total: 0,
        }
    }

    /// When the oldest bucket has left the window.
    fn oldest_leaves_at(&self) -> Option<Instant> {
        self.buckets
            .front()
            .map(|(start, _)| *start + self.bucket_width + self.window)
    }

    /// Counts one request sent `now`, or says when there will be room for it.
    fn spend(&mut self, now: Instant) -> Result<(), Instant> {
        while self.oldest_leaves_at().is_some_and(|t| t <= now) {
            if let Some((_, n)) = self.buckets.pop_front() {
                self.total -= n;
            }
        }
        if self.total >= self.allowed {
            return Err(self.oldest_leaves_at().unwrap_or(now));
        }
        match self.buckets.back_mut() {
            Some((start, n)) if now < *start + self.bucket_width => *n += 1,
            _ => self.buckets.push_back((now, 1)),
        }
        self.total += 1;
        Ok(())
    }
}

struct Gate {
    slots: Arc<Semaphore>,
    paused_until: Mutex<Option<Instant>>,
    budget: Option<Mutex<Window>>,
}

impl Gate {
    fn paused_until(&self) -> Option<Instant> {
        let until = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        until.filter(|t| *t > Instant::now())
    }

    /// Counts a request about to be sent against the budget, or says when to try again.
    fn spend(&self) -> Result<(), Instant> {
        match &self.budget {
            Some(window) => window
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .spend(Instant::now()),
            None => Ok(()),
        }
    }
}

pub(crate) struct Limiter {
    per_mailbox: usize,
    budget: Option<RequestBudget>,
    global: Arc<Semaphore>,
    gates: Mutex<HashMap<(String, String), Arc<Gate>>>,
}

impl Limiter {
    pub(crate) fn new(per_mailbox: usize, budget: Option<RequestBudget>, global: usize) -> Self {
        Self {
            per_mailbox: per_mailbox.max(1),
            budget,
            global: Arc::new(Semaphore::new(global.max(1))),
            gates: Mutex::new(HashMap::new()),
        }
    }

    /// Graph counts concurrency per app and mailbox.
    fn gate(&self, client_id: &str, mailbox: &str) -> Arc<Gate> {
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        gates
            .entry((client_id.to_owned(), mailbox.to_owned()))
            .or_insert_with(|| {
                Arc::new(Gate {
                    slots: Arc::new(Semaphore::new(self.per_mailbox)),
                    paused_until: Mutex::new(None),
                    budget: self.budget.map(|b| Mutex::new(Window::new(b))),
                })
            })
            .clone()
    }

    /// Waits for a free slot of the mailbox (and a global one) and room in its budget, after any
    /// pause of the mailbox.
    pub(crate) async fn acquire(&self, client_id: &str, mailbox: &str) -> Permit {
        let gate = self.gate(client_id, mailbox);
        loop {
            if let Some(until) = gate.paused_until() {
                tokio::time::sleep_until(until).await;
            }
            let (Ok(mailbox_permit), Ok(global_permit)) = (
                gate.slots.clone().acquire_owned().await,
                self.global.clone().acquire_owned().await,
            ) else {
                // The semaphores are never closed; waiting again is the only sensible answer.
                continue;
            };
            // A 429 may have paused the mailbox while we queued: respect it before sending.
            if gate.paused_until().is_some() {
                continue;
            }
            // Counted only now, as the request goes out, so this count never runs behind Graph's.
            if let Err(room_at) = gate.spend() {
                drop((mailbox_permit, global_permit));
                tokio::time::sleep_until(room_at).await;
                continue;
            }
            return Permit {
                _mailbox: mailbox_permit,
                _global: global_permit,
            };
        }
    }

    /// Holds every request to this mailbox back for `wait` (Graph said: too many requests).
    pub(crate) fn pause(&self, client_id: &str, mailbox: &str, wait: Duration) {
        let gate = self.gate(client_id, mailbox);
        let until = Instant::now() + wait;
        let mut paused = gate.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_most_n_permits_per_mailbox_and_mailboxes_are_independent() {
        let limiter = Limiter::new(2, None, 10);
        let a1 = limiter.acquire("app", "a").await;
        let _a2 = limiter.acquire("app", "a").await;
        let _b = limiter.acquire("app", "b").await;
        let third =
            tokio::time::timeout(Duration::from_millis(50), limiter.acquire("app", "a")).await;
        assert!(third.is_err(), "a third permit for mailbox a was granted");
        drop(a1);
        let third =
            tokio::time::timeout(Duration::from_millis(500), limiter.acquire("app", "a")).await;
        assert!(third.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_back_the_whole_mailbox() {
        let limiter = Limiter::new(4, None, 10);
        limiter.pause("app", "a", Duration::from_secs(5));
        let started = Instant::now();
        let _permit = limiter.acquire("app", "a").await;
        assert!(started.elapsed() >= Duration::from_secs(5));
        let started = Instant::now();
        let _other = limiter.acquire("app", "b").await;
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_paces_requests_per_mailbox_over_a_sliding_window() {
        let budget = RequestBudget {
            requests: 100,
            window: Duration::from_secs(10),
        };
        let limiter = Limiter::new(4, Some(budget), 10);
        let started = Instant::now();
        // 95 of the 100 go out at once.
        for _ in 0..95 {
            drop(limiter.acquire("app", "a").await);
        }
        assert!(started.elapsed() < Duration::from_millis(1));
        // Another mailbox has its own budget.
        drop(limiter.acquire("app", "b").await);
        assert!(started.elapsed() < Duration::from_millis(1));
        // The 96th waits until the first bucket has left the window: 10 s plus a bucket (0.1 s).
        drop(limiter.acquire("app", "a").await);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(10_100) && waited < Duration::from_millis(10_200),
            "{waited:?}"
        );
        // Over any 10 s, never more than 95 requests: 190 more take another window at least.
        for _ in 0..94 {
            drop(limiter.acquire("app", "a").await);
        }
        assert!(started.elapsed() < Duration::from_millis(10_200));
        drop(limiter.acquire("app", "a").await);
        assert!(started.elapsed() >= Duration::from_millis(20_100));
    }

    #[test]
    fn a_window_never_counts_more_than_95_percent_of_the_budget() {
        let budget = RequestBudget {
            requests: 1000,
            window: Duration::from_secs(60),
        };
        let mut window = Window::new(budget);
        let start = Instant::now();
        let mut sent: Vec<Instant> = Vec::new();
        // A request every 7 ms for three windows, sent whenever the window has room.
        let mut t = start;
        while t < start + Duration::from_secs(180) {
            if window.spend(t).is_ok() {
                sent.push(t);
            }
            t += Duration::from_millis(7);
        }
        for (i, first) in sent.iter().enumerate() {
            let in_window = sent[i..]
                .iter()
                .take_while(|s| s.duration_since(*first) < budget.window)
                .count();
            assert!(in_window <= 950, "{in_window} requests within 60 s of {i}");
        }
        // And it is not much more cautious than that: about 950 per minute.
        assert!(sent.len() > 2700, "{}", sent.len());
    }
}
