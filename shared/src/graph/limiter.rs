//! Graph etiquette for Outlook (docs/graph.md §7): at most 4 requests in flight per app and mailbox,
//! a global cap across mailboxes, and a 429 pauses the whole mailbox, not just one request.

use std::collections::HashMap;
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

struct Gate {
    slots: Arc<Semaphore>,
    paused_until: Mutex<Option<Instant>>,
}

impl Gate {
    fn paused_until(&self) -> Option<Instant> {
        let until = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        until.filter(|t| *t > Instant::now())
    }
}

pub(crate) struct Limiter {
    per_mailbox: usize,
    global: Arc<Semaphore>,
    gates: Mutex<HashMap<(String, String), Arc<Gate>>>,
}

impl Limiter {
    pub(crate) fn new(per_mailbox: usize, global: usize) -> Self {
        Self {
            per_mailbox: per_mailbox.max(1),
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
                })
            })
            .clone()
    }

    /// Waits for a free slot of the mailbox (and a global one), after any pause of the mailbox.
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
        let limiter = Limiter::new(2, 10);
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
        let limiter = Limiter::new(4, 10);
        limiter.pause("app", "a", Duration::from_secs(5));
        let started = Instant::now();
        let _permit = limiter.acquire("app", "a").await;
        assert!(started.elapsed() >= Duration::from_secs(5));
        let started = Instant::now();
        let _other = limiter.acquire("app", "b").await;
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
