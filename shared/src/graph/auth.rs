//! Access tokens from Entra ID, cached per credential until shortly before they expire, with at
//! most one request for a new one in flight per credential: client-credentials tokens (docs/graph.md
//! §1) with a client secret or a certificate's client assertion, and a delegated credential's
//! tokens from its stored sign-in (`refresh.rs`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use url::Url;

use super::assertion::{ASSERTION_TYPE, client_assertion};
use super::error::{GraphError, Operation, TokenErrorBody, parse_retry_after};
use super::retry::RetryPolicy;
use super::signin::SignIn;
use crate::credentials::{AppCredential, ClientAuth};

/// A token is refreshed this long before Entra says it expires, so a request never leaves with a
/// token that dies on the way.
const MIN_TTL: Duration = Duration::from_secs(300);

/// The longest lifetime a token is believed to have, whatever `expires_in` says: a day.
const MAX_TOKEN_LIFETIME_SECS: u64 = 24 * 3600;

#[derive(Clone)]
struct CachedToken {
    value: SecretString,
    refresh_at: Instant,
}

impl CachedToken {
    /// A token requested at `requested`, valid for `expires_in` seconds.
    fn new(value: SecretString, expires_in: u64, requested: Instant) -> Self {
        // Entra's access tokens live about an hour (`expires_in` near 3600); a larger figure (a
        // broken endpoint's u64::MAX) is taken as a day, so the refresh time below cannot
        // overflow an Instant, which would panic.
        let lifetime = Duration::from_secs(expires_in.min(MAX_TOKEN_LIFETIME_SECS));
        // Refresh at the earlier of (expiry - MIN_TTL) and half the lifetime, so short test
        // lifetimes still refresh before they lapse.
        let margin = MIN_TTL.min(lifetime / 2);
        Self {
            value,
            refresh_at: requested + lifetime.saturating_sub(margin),
        }
    }
}

/// Identifies a credential without holding its secret: a changed secret or certificate (rotation)
/// is a new key.
#[derive(Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    tenant: String,
    client_id: String,
    /// SHA-256 of the secret's value, or of the certificate's thumbprint and the client id.
    credential_digest: [u8; 32],
    /// A delegated credential's name: each person's sign-in has its own tokens.
    delegated: Option<String>,
}

impl TokenKey {
    fn of(credential: &AppCredential) -> Self {
        let credential_digest = match &credential.secret {
            ClientAuth::Secret(secret) => Sha256::digest(secret.expose_secret().as_bytes()),
            ClientAuth::Certificate(certificate) => Sha256::new()
                .chain_update(certificate.thumbprint_sha256())
                .chain_update(credential.client_id.as_bytes())
                .finalize(),
            ClientAuth::Public => Sha256::digest(b""),
        };
        Self {
            tenant: credential.tenant_id.clone(),
            client_id: credential.client_id.clone(),
            credential_digest: credential_digest.into(),
            delegated: credential.delegated.as_ref().map(|d| d.name.clone()),
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

    /// A new access token for `credential`, whatever the cache holds, kept for the callers that
    /// follow. For a delegated credential this redeems its stored refresh token (and stores the
    /// successor): the credential check's proof that the sign-in still works, and what keeps an
    /// otherwise unused sign-in alive (`shared/src/expiry/delegated.rs`).
    pub(crate) async fn renew(&self, credential: &AppCredential) -> Result<(), GraphError> {
        let slot = self.slot(credential);
        let mut cached = slot.lock().await;
        let fresh = self.request(credential).await?;
        *cached = Some(fresh);
        Ok(())
    }

    /// Forgets the cached token of `credential` if it is still `failed` (Graph said it is no
    /// longer valid). A newer token, fetched by a request that met the same 401 a moment
    /// earlier, is kept: the waiters share one refresh instead of each forcing another.
    pub(crate) async fn invalidate(&self, credential: &AppCredential, failed: &SecretString) {
        let slot = self.slot(credential);
        let mut cached = slot.lock().await;
        if cached
            .as_ref()
            .is_some_and(|token| token.value.expose_secret() == failed.expose_secret())
        {
            *cached = None;
        }
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
        if let Some(delegation) = &credential.delegated {
            let started = Instant::now();
            let sign_in = SignIn::new(self.http.clone(), self.login_url.clone(), self.retry);
            let tokens = super::refresh::redeem(&sign_in, credential, delegation).await?;
            return Ok(CachedToken::new(
                tokens.access_token,
                tokens.expires_in,
                started,
            ));
        }
        let url = self.token_url(&credential.tenant_id)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let form = token_form(credential, &url)?;
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
                    return Ok(CachedToken::new(
                        SecretString::from(body.access_token),
                        body.expires_in,
                        started,
                    ));
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

/// The client-credentials form: the secret, or a client assertion built for this very request
/// (its `aud` is the URL posted to; a retry gets a new one, with its own `jti` and times).
fn token_form<'a>(
    credential: &'a AppCredential,
    url: &Url,
) -> Result<Vec<(&'static str, Cow<'a, str>)>, GraphError> {
    let mut form = vec![
        ("grant_type", Cow::Borrowed("client_credentials")),
        ("client_id", Cow::Borrowed(credential.client_id.as_str())),
    ];
    match &credential.secret {
        ClientAuth::Secret(secret) => {
            form.push(("client_secret", Cow::Borrowed(secret.expose_secret())));
        }
        ClientAuth::Public => {
            return Err(GraphError::Config(format!(
                "app {} has no client secret or certificate: a public client gets tokens only for a person who signed in (kind = \"delegated\")",
                credential.client_id
            )));
        }
        ClientAuth::Certificate(certificate) => {
            let assertion = client_assertion(
                certificate,
                &credential.client_id,
                url.as_str(),
                time::OffsetDateTime::now_utc(),
            )
            .map_err(|_| {
                GraphError::Config(format!(
                    "could not sign the client assertion of app {} with its certificate's private key",
                    credential.client_id
                ))
            })?;
            form.push(("client_assertion_type", Cow::Borrowed(ASSERTION_TYPE)));
            form.push(("client_assertion", Cow::Owned(assertion)));
        }
    }
    form.push((
        "scope",
        Cow::Borrowed("https://graph.microsoft.com/.default"),
    ));
    Ok(form)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::CertificateCredential;

    const URL: &str = "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token";

    fn certificate_credential(client_id: &str) -> AppCredential {
        let certificate = CertificateCredential::from_pem(
            include_str!("../../../sandbox/fixtures/app-cert.pem"),
            include_str!("../../../sandbox/fixtures/app-key.pem"),
        )
        .unwrap();
        AppCredential::new("contoso.onmicrosoft.com", client_id, certificate.into())
    }

    fn fields(form: &[(&'static str, Cow<'_, str>)]) -> Vec<&'static str> {
        form.iter().map(|(name, _)| *name).collect()
    }

    #[test]
    fn a_certificate_posts_a_fresh_assertion_for_the_url_instead_of_a_secret() {
        let url = Url::parse(URL).unwrap();
        let credential = certificate_credential("client-1");
        let form = token_form(&credential, &url).unwrap();
        assert_eq!(
            fields(&form),
            [
                "grant_type",
                "client_id",
                "client_assertion_type",
                "client_assertion",
                "scope"
            ]
        );
        assert_eq!(
            form[2].1,
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );
        let claims = |form: &[(&str, Cow<'_, str>)]| -> serde_json::Value {
            use base64::Engine as _;
            let payload = form[3].1.split('.').nth(1).unwrap().to_owned();
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(payload)
                    .unwrap(),
            )
            .unwrap()
        };
        let first = claims(&form);
        assert_eq!(first["aud"], URL);
        assert_eq!(first["iss"], "client-1");
        // A retry signs a new one.
        let again = claims(&token_form(&credential, &url).unwrap());
        assert_ne!(first["jti"], again["jti"]);

        let secret = AppCredential::new("t", "client-1", "s3cret-value".to_owned().into());
        let form = token_form(&secret, &url).unwrap();
        assert_eq!(
            fields(&form),
            ["grant_type", "client_id", "client_secret", "scope"]
        );
    }

    #[test]
    fn the_cache_key_tells_certificates_clients_and_secrets_apart() {
        let key = |credential: &AppCredential| TokenKey::of(credential).credential_digest;
        let one = certificate_credential("client-1");
        assert!(key(&one) == key(&one.clone()));
        assert!(key(&one) != key(&certificate_credential("client-2")));
        let secret = AppCredential::new("t", "client-1", "s3cret-value".to_owned().into());
        assert!(key(&one) != key(&secret));
    }
}
