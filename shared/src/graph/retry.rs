//! When to try a Graph request again, and how long to wait (docs/graph.md §7, docs/conventions.md, "Errors").

use std::time::Duration;

/// Bounds on retrying one Graph request. The Graph client is the only place that retries Graph.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff step; doubles per attempt.
    pub base: Duration,
    /// Ceiling of one exponential backoff step.
    pub max_backoff: Duration,
    /// Ceiling of one `Retry-After` wait: a server asking for longer is treated as this.
    pub max_retry_after: Duration,
    /// Time from the first attempt after which no retry starts: a retry whose wait would end
    /// later gives up instead, so a caller's own deadline is not overrun by many long waits.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 8,
            base: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            max_elapsed: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with full jitter for `attempt` (1-based): a random wait between zero
    /// and `min(max_backoff, base * 2^(attempt-1))`, so many clients do not retry in step.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let ceiling = self
            .base
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff);
        ceiling.mul_f64(fastrand::f64())
    }

    /// Whether a retry that waits `wait` may still start, `elapsed` after the first attempt.
    pub fn within_budget(&self, elapsed: Duration, wait: Duration) -> bool {
        elapsed.saturating_add(wait) <= self.max_elapsed
    }

    /// The wait before the next attempt: the server's `Retry-After` when it gave one (capped),
    /// else the backoff.
    pub fn wait(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(wait) => wait.min(self.max_retry_after),
            None => self.backoff(attempt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        for _ in 0..200 {
            assert!(policy.backoff(1) <= Duration::from_millis(100));
            assert!(policy.backoff(3) <= Duration::from_millis(400));
            assert!(policy.backoff(30) <= Duration::from_secs(1));
        }
        // Full jitter: over many draws the waits are spread, not constant.
        let draws: Vec<_> = (0..50).map(|_| policy.backoff(4)).collect();
        assert!(draws.iter().any(|d| *d != draws[0]));
    }

    #[test]
    fn no_retry_starts_past_the_time_budget() {
        let policy = RetryPolicy {
            max_elapsed: Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        assert!(policy.within_budget(Duration::from_secs(30), Duration::from_secs(30)));
        assert!(!policy.within_budget(Duration::from_secs(30), Duration::from_secs(31)));
        assert!(!policy.within_budget(Duration::from_secs(61), Duration::ZERO));
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.wait(1, Some(Duration::from_millis(2128))),
            Duration::from_millis(2128)
        );
        assert_eq!(
            policy.wait(1, Some(Duration::from_secs(3600))),
            policy.max_retry_after
        );
    }
}
