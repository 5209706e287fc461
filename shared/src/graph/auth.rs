//! Client-credentials tokens from Entra ID (graph-notes §1), cached per credential until shortly
//! before they expire, with at most one refresh in flight per credential.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use url::Url;

use super::error::{GraphError, Operation, TokenErrorBody, parse_retry_after};
use super::retry::RetryPolicy;
use crate::credentials::AppCredential;

/// A token is refreshed this long before Entra says it expires, so a request never leaves with a
/// token that dies on the way.
const MIN_TTL: Duration = Duration::from_secs(300);

#[derive(Clone)]
struct CachedToken {
    value: SecretString,
    refresh_at: Instant,
}

/// Identifies a credential without holding its secret: a changed secret (rotation) is a new key.
#[derive(Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    tenant: String,
    client_id: String,
    secret_digest: [u8; 32],
}

impl TokenKey {
    fn of(credential: &AppCredential) -> Self {
        Self {
            tenant: credential.tenant_id.clone(),
            client_id: credential.client_id.clone(),
            secret_digest: Sha256::digest(credential.client_secret.expose_secret().as_bytes())
                .into(),
        }
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

pub(crate) struct TokenCache {
    http: reqwest::Client,
    login_url: Url,
    retry: RetryPolicy,
    slots: Mutex<HashMap<TokenKey, Slot>>,
}

impl TokenCache {
    pub(crate) fn new(http: reqwest::Client, login_url: Url, retry: RetryPolicy) -> Self {
        Self {
            http,
            login_url,
            retry,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, credential: &AppCredential) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(TokenKey::of(credential)).or_default().clone()
    }

    /// A valid access token for `credential`. Concurrent callers for the same credential wait for
    /// one refresh instead of each asking Entra (the slot's lock is held across the request).
    pub(crate) async fn token(
        &self,
        credential: &AppCredential,
    ) -> Result<SecretString, GraphError> {
        let slot = self.slot(credential);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.value.clone());
        }
        let fresh = self.request(credential).await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    /// Forgets the cached token of `credential` (Graph said it is no longer valid).
    pub(crate) async fn invalidate(&self, credential: &AppCredential) {
        *self.slot(credential).lock().await = None;
    }

    fn token_url(&self, tenant: &str) -> Result<Url, GraphError> {
        let mut url = self.login_url.clone();
        url.path_segments_mut()
            .map_err(|()| {
                GraphError::Config(format!("login URL {} cannot be a base", self.login_url))
            })?
            .pop_if_empty()
            .extend([tenant, "oauth2", "v2.0", "token"]);
        Ok(url)
    }

    async fn request(&self, credential: &AppCredential) -> Result<CachedToken, GraphError> {
        let url = self.token_url(&credential.tenant_id)?;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", credential.client_id.as_str()),
            ("client_secret", credential.client_secret.expose_secret()),
            ("scope", "https://graph.microsoft.com/.default"),
        ];
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let sent = self.http.post(url.clone()).form(&form).send().await;
            let retry_in = match sent {
                Ok(response) if response.status().is_success() => {
                    let body: TokenResponse =
                        response
                            .json()
                            .await
                            .map_err(|e| GraphError::MalformedResponse {
                                operation: Operation::Token.name(),
                                detail: format!("token response: {}", describe(&e)),
                            })?;
                    let lifetime = Duration::from_secs(body.expires_in);
                    // Refresh at the earlier of (expiry - MIN_TTL) and half the lifetime, so short
                    // test lifetimes still refresh before they lapse.
                    let margin = MIN_TTL.min(lifetime / 2);
                    return Ok(CachedToken {
                        value: SecretString::from(body.access_token),
                        refresh_at: started + lifetime.saturating_sub(margin),
                    });
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    if !super::error::is_retryable_status(status)
                        || attempt > self.retry.max_retries
                    {
                        let body: TokenErrorBody = response.json().await.unwrap_or_default();
                        return Err(body.classify(&credential.tenant_id, &credential.client_id));
                    }
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, time::OffsetDateTime::now_utc()));
                    self.retry.wait(attempt, retry_after)
                }
                Err(e) if attempt > self.retry.max_retries => {
                    return Err(GraphError::Transport {
                        operation: Operation::Token.name(),
                        attempts: attempt,
                        detail: describe(&e),
                    });
                }
                Err(_) => self.retry.backoff(attempt),
            };
            tokio::time::sleep(retry_in).await;
        }
    }
}

/// A reqwest error described without its URL (URLs carry tenant ids and sync tokens): the kind of
/// failure, then its causes.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_decode() {
        "could not decode the response"
    } else if e.is_body() {
        "the response body was cut short"
    } else {
        "request failed"
    }
    .to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
