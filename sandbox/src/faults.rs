//! Faults injected on demand: a queue of rules, each matching an optional method, path
//! substring and mailbox, consumed a given number of times.

use std::time::Duration;

/// What an injected fault does to a matching request.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultKind {
    /// Answer with this status (500, 503, 504, ...) and a Graph error body, with an optional
    /// `Retry-After` in seconds.
    Status(u16, Option<f64>),
    /// Answer `429 ApplicationThrottled` with this `Retry-After` in seconds.
    Throttle(f64),
    /// Close the connection without a complete response: the headers may arrive, the body
    /// errors at once.
    DropConnection,
    /// Send the headers with the full `Content-Length` but only half the body, then close.
    TruncateBody,
    /// Hold the request (and its in-flight slot) this long, then answer normally.
    Delay(Duration),
}

impl FaultKind {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            FaultKind::Status(..) => "status",
            FaultKind::Throttle(_) => "throttle",
            FaultKind::DropConnection => "dropConnection",
            FaultKind::TruncateBody => "truncateBody",
            FaultKind::Delay(_) => "delay",
        }
    }
}

/// A fault rule: `FaultRule::new(FaultKind::TruncateBody).method("GET").path_contains("/$value")
/// .mailbox("a@contoso.com").times(2)`. Unset matchers match anything; the default is once.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRule {
    pub(crate) kind: FaultKind,
    pub(crate) method: Option<String>,
    pub(crate) path_contains: Option<String>,
    pub(crate) mailbox: Option<String>,
    pub(crate) remaining: u32,
    /// Fire on each matching request with this probability only, drawn from a seeded
    /// generator (a chaos rule, for soaks); `None` fires on every matching request.
    pub(crate) rate: Option<Chance>,
}

/// A seeded coin, so a soak with the same seed draws the same faults in the same order of
/// requests.
#[derive(Clone, Debug)]
pub(crate) struct Chance {
    probability: f64,
    rng: fastrand::Rng,
}

impl PartialEq for Chance {
    fn eq(&self, other: &Self) -> bool {
        self.probability == other.probability
    }
}

impl Chance {
    fn flip(&mut self) -> bool {
        self.rng.f64() < self.probability
    }
}

impl FaultRule {
    /// A rule that fires once on any request.
    pub fn new(kind: FaultKind) -> Self {
        Self {
            kind,
            method: None,
            path_contains: None,
            mailbox: None,
            remaining: 1,
            rate: None,
        }
    }

    /// Only requests with this HTTP method (case-insensitive).
    pub fn method(mut self, m: &str) -> Self {
        self.method = Some(m.to_ascii_uppercase());
        self
    }

    /// Only requests whose path contains this text, raw or percent-decoded (e.g. "/$value",
    /// "/move", "/messages/delta", "/oauth2/v2.0/token").
    pub fn path_contains(mut self, s: &str) -> Self {
        self.path_contains = Some(s.to_owned());
        self
    }

    /// Only Graph requests on this mailbox (case-insensitive address).
    pub fn mailbox(mut self, m: &str) -> Self {
        self.mailbox = Some(m.to_ascii_lowercase());
        self
    }

    /// Fire this many times (then the rule is removed).
    pub fn times(mut self, n: u32) -> Self {
        self.remaining = n;
        self
    }

    /// Fire on every matching request until cleared.
    pub fn always(self) -> Self {
        self.times(u32::MAX)
    }

    /// Fire on each matching request with `probability` (0 to 1), drawn from a generator seeded
    /// with `seed`, until cleared. A request the coin spares goes on to the next rule.
    pub fn rate(mut self, probability: f64, seed: u64) -> Self {
        self.rate = Some(Chance {
            probability,
            rng: fastrand::Rng::with_seed(seed),
        });
        self.always()
    }

    fn matches(&self, method: &str, raw_path: &str, path: &str, mailbox: Option<&str>) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| raw_path.contains(p) || path.contains(p))
            && self
                .mailbox
                .as_deref()
                .is_none_or(|m| mailbox.is_some_and(|x| x.eq_ignore_ascii_case(m)))
    }
}

/// The queue of pending rules.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    rules: Vec<FaultRule>,
    /// Faults fired so far (rules cleared or not).
    pub(crate) fired: usize,
}

impl Faults {
    pub(crate) fn push(&mut self, rule: FaultRule) {
        if rule.remaining > 0 {
            self.rules.push(rule);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.rules.clear();
    }

    /// The first matching rule's fault, consuming one use of it.
    pub(crate) fn take(
        &mut self,
        method: &str,
        raw_path: &str,
        path: &str,
        mailbox: Option<&str>,
    ) -> Option<FaultKind> {
        let i = self.rules.iter_mut().position(|r| {
            r.matches(method, raw_path, path, mailbox) && r.rate.as_mut().is_none_or(Chance::flip)
        })?;
        self.fired += 1;
        let rule = self.rules.get_mut(i)?;
        let kind = rule.kind.clone();
        if rule.remaining != u32::MAX {
            rule.remaining -= 1;
        }
        if rule.remaining == 0 {
            self.rules.remove(i);
        }
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_and_run_out() {
        let mut f = Faults::default();
        f.push(
            FaultRule::new(FaultKind::TruncateBody)
                .method("get")
                .path_contains("/$value")
                .mailbox("A@contoso.com")
                .times(2),
        );
        assert_eq!(
            f.take("GET", "/v1.0/x/$value", "", Some("b@contoso.com")),
            None
        );
        assert_eq!(
            f.take("POST", "/v1.0/x/$value", "", Some("a@contoso.com")),
            None
        );
        for _ in 0..2 {
            assert_eq!(
                f.take("GET", "/v1.0/x/$value", "", Some("a@contoso.com")),
                Some(FaultKind::TruncateBody)
            );
        }
        assert_eq!(
            f.take("GET", "/v1.0/x/$value", "", Some("a@contoso.com")),
            None
        );
        assert_eq!(f.fired, 2);
    }

    #[test]
    fn a_rate_rule_fires_about_that_often_and_the_same_way_for_a_seed() {
        let draw = |seed| {
            let mut f = Faults::default();
            f.push(FaultRule::new(FaultKind::DropConnection).rate(0.1, seed));
            (0..10_000)
                .map(|_| f.take("GET", "/v1.0/x", "", None).is_some())
                .collect::<Vec<_>>()
        };
        let fired = draw(7).iter().filter(|x| **x).count();
        assert!((800..1200).contains(&fired), "{fired} of 10,000 at 10 %");
        assert_eq!(draw(7), draw(7), "a seed draws the same faults");
        assert_ne!(draw(7), draw(8));
    }
}
