//! [`EventPublisher`] over HTTP, for local mode: each event POSTed as JSON to one URL, signed
//! with HMAC-SHA256 ([`crate::domain::signature`]; docs/events.md, "Locally"), retried with
//! backoff within the run. An event the endpoint never accepts stays in the outbox for the next
//! run.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use crate::domain::event::MessageEvent;
use crate::domain::signature::{self, EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::ports::{EventPublisher, PublishError};

/// Posts events to one URL.
pub struct HttpEventPublisher {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: SecretString,
    /// The waits before each retry; their number is the retries.
    backoff: Vec<Duration>,
}

impl std::fmt::Debug for HttpEventPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpEventPublisher")
            .field("url", &self.url.as_str())
            .field("secret", &"[redacted]")
            .finish()
    }
}

impl HttpEventPublisher {
    /// How long one delivery may take before it counts as failed.
    pub const TIMEOUT: Duration = Duration::from_secs(10);

    /// A publisher to `url`, signing with `secret`; a failed delivery is tried again after
    /// 0.5 s and 2 s.
    pub fn new(url: reqwest::Url, secret: SecretString) -> Result<Self, String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("the event URL {url} is not http:// or https://"));
        }
        let client = reqwest::Client::builder()
            .timeout(Self::TIMEOUT)
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Self {
            client,
            url,
            secret,
            backoff: vec![Duration::from_millis(500), Duration::from_secs(2)],
        })
    }

    /// Replaces the waits before each retry (tests keep them short).
    pub fn with_backoff(mut self, backoff: Vec<Duration>) -> Self {
        self.backoff = backoff;
        self
    }

    /// Delivers one event; on failure, also whether the endpoint was down or busy (so the
    /// events after it would fail too) rather than refusing this one.
    async fn deliver(&self, event: &MessageEvent) -> Result<(), (PublishError, bool)> {
        let failed = |detail: String| PublishError {
            channel: "HTTP",
            detail: format!("{}: {detail}", self.url),
        };
        let body = serde_json::to_vec(event).map_err(|e| (failed(e.to_string()), false))?;
        let mut waits = self.backoff.iter();
        loop {
            let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
            let signature =
                signature::sign(self.secret.expose_secret().as_bytes(), timestamp, &body);
            let sent = self
                .client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, signature)
                .header(EVENT_ID_HEADER, &event.id)
                .body(body.clone())
                .send()
                .await;
            let (error, retry) = match sent {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    let status = response.status();
                    // A busy or failing endpoint may take it later; a refusal will not change.
                    let retry = status.is_server_error()
                        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                        || status == reqwest::StatusCode::REQUEST_TIMEOUT;
                    (format!("answered {status}"), retry)
                }
                Err(e) => (format!("not reached: {e}"), true),
            };
            match waits.next() {
                Some(wait) if retry => tokio::time::sleep(*wait).await,
                _ => return Err((failed(error), retry)),
            }
        }
    }
}

#[async_trait]
impl EventPublisher for HttpEventPublisher {
    async fn publish(&self, events: &[MessageEvent]) -> Vec<Result<(), PublishError>> {
        let mut results = Vec::with_capacity(events.len());
        for event in events {
            match self.deliver(event).await {
                Ok(()) => results.push(Ok(())),
                // Refused: this event stays in the outbox; the others may go.
                Err((e, false)) => results.push(Err(e)),
                // The endpoint is down or busy: the rest would wait and fail the same way. They
                // all stay in the outbox for the next run.
                Err((e, true)) => {
                    results.extend(events[results.len()..].iter().map(|_| Err(e.clone())));
                    return results;
                }
            }
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_names_the_url_and_hides_the_secret() {
        let publisher = HttpEventPublisher::new(
            reqwest::Url::parse("https://hooks.example.com/m").unwrap(),
            "whsec-do-not-print".to_owned().into(),
        )
        .unwrap();
        let debug = format!("{publisher:?}");
        assert!(debug.contains("hooks.example.com") && !debug.contains("whsec-do-not-print"));
    }

    #[test]
    fn only_http_urls_are_taken() {
        let url = reqwest::Url::parse("ftp://hooks.example.com/m").unwrap();
        let err = HttpEventPublisher::new(url, "s".to_owned().into()).unwrap_err();
        assert!(err.contains("not http:// or https://"), "{err}");
    }
}
