//! [`SignInStore`] on AWS Secrets Manager: a delegated credential's sign-in lives in the
//! credential's own secret, beside its tenant and client ids, as
//! `{"kind": "delegated", "tenant_id": …, "client_id": …, "scopes": […], "sign_in": {…}}`
//! (the `sign_in` object is [`SignedIn::to_json`]'s).
//!
//! A save is `PutSecretValue` of the whole secret: Secrets Manager makes it a new version and
//! moves `AWSCURRENT` to it in one step, so a reader sees the old sign-in or the new one, and a
//! crash before the call leaves the old one. The SDK gives each call an idempotency token, so a
//! retried call whose first answer was lost does not make a second version.
//!
//! The functions may call `PutSecretValue` only on secrets tagged `mailroom:kind = delegated`
//! (`infra/template.yaml`), so this store cannot overwrite an app credential's secret.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use secrecy::ExposeSecret;

use crate::credentials::SignedIn;
use crate::ports::{SecretError, SignInStore};

/// The tag that marks a delegated credential's secret, and lets the functions write it.
pub const DELEGATED_TAG: (&str, &str) = ("mailroom:kind", "delegated");

/// A delegated credential's sign-in in its Secrets Manager secret.
#[derive(Clone, Debug)]
pub struct SecretsManagerSignIns {
    client: Client,
    min_save_interval: Duration,
}

impl SecretsManagerSignIns {
    /// The Secrets Manager operations this store makes (SDK method, the IAM action it needs),
    /// besides reading the secret as [`super::SecretsManagerSource`] does (its `IAM_ACTIONS`).
    /// `infra/template.yaml` grants `PutSecretValue` on delegated secrets only.
    pub const IAM_ACTIONS: &[(&str, &str)] =
        &[("put_secret_value", "secretsmanager:PutSecretValue")];

    /// Secrets Manager keeps about 100 versions of a secret and removes none younger than a day,
    /// so it asks for at most one new version every 10 minutes (PutSecretValue's reference). A
    /// sign-in refreshed more recently than this by another runner is not stored again: the
    /// stored refresh token is that young and still valid (Entra does not revoke a redeemed one).
    pub const MIN_SAVE_INTERVAL: Duration = Duration::from_secs(600);

    pub fn new(client: Client) -> Self {
        Self {
            client,
            min_save_interval: Self::MIN_SAVE_INTERVAL,
        }
    }

    /// Stores every refresh, however recent the last (tests, whose tokens live seconds).
    pub fn with_min_save_interval(mut self, interval: Duration) -> Self {
        self.min_save_interval = interval;
        self
    }

    /// The secret's JSON object, as stored now.
    async fn current(
        &self,
        name: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, SecretError> {
        let json = super::secrets::current_string(&self.client, name).await?;
        let malformed = |detail: &str| SecretError::Malformed {
            name: name.to_owned(),
            detail: detail.to_owned(),
        };
        match serde_json::from_str(&json) {
            Ok(serde_json::Value::Object(object)) => Ok(object),
            _ => Err(malformed("the secret is not a JSON object")),
        }
    }
}

#[async_trait]
impl SignInStore for SecretsManagerSignIns {
    async fn load(&self, name: &str) -> Result<Option<SignedIn>, SecretError> {
        let secret = self.current(name).await?;
        match secret.get("sign_in") {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(sign_in) => SignedIn::from_json(name, &sign_in.to_string()).map(Some),
        }
    }

    async fn save(&self, name: &str, signed_in: &SignedIn) -> Result<(), SecretError> {
        let mut secret = self.current(name).await?;
        if secret.get("kind").and_then(|k| k.as_str()) != Some(DELEGATED_TAG.1) {
            return Err(SecretError::Malformed {
                name: name.to_owned(),
                detail: "it is not a delegated credential (\"kind\": \"delegated\"); its sign-in was not stored".into(),
            });
        }
        if let Some(Ok(stored)) = secret
            .get("sign_in")
            .map(|s| SignedIn::from_json(name, &s.to_string()))
            && stored.signed_in_at == signed_in.signed_in_at
            && signed_in.refreshed_at - stored.refreshed_at < self.min_save_interval
        {
            tracing::debug!(
                credential = name,
                "sign-in refreshed moments ago by another runner; not stored again"
            );
            return Ok(());
        }
        let sign_in: serde_json::Value = serde_json::from_str(signed_in.to_json().expose_secret())
            .map_err(|_| SecretError::Malformed {
                name: name.to_owned(),
                detail: "the sign-in could not be written as JSON".into(),
            })?;
        secret.insert("sign_in".to_owned(), sign_in);
        let json = serde_json::Value::Object(secret).to_string();
        self.client
            .put_secret_value()
            .secret_id(name)
            .secret_string(json)
            .send()
            .await
            .map_err(|e| SecretError::Unavailable {
                name: name.to_owned(),
                // Error responses describe the request, never the secret value.
                detail: DisplayErrorContext(e).to_string(),
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_actions_cover_exactly_the_operations_called() {
        let called = crate::adapters::aws::sdk_calls(include_str!("signins.rs"), &[]);
        assert_eq!(
            called,
            crate::adapters::aws::listed_calls(SecretsManagerSignIns::IAM_ACTIONS)
        );
    }
}
