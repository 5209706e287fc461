//! [`SecretSource`] on AWS Secrets Manager: one JSON secret per Entra app registration.
//!
//! The secret string is handed straight to [`AppCredential::from_stored`], whose errors name
//! fields, never values. Nothing here logs or formats the secret string. A delegated credential's
//! sign-in is in its secret too, kept by [`SecretsManagerSignIns`].

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;

use std::sync::Arc;

use super::SecretsManagerSignIns;
use crate::credentials::AppCredential;
use crate::ports::{SecretError, SecretSource};

/// A [`SecretSource`] reading Secrets Manager on every call ([`crate::credentials::Credentials`]
/// caches).
#[derive(Clone, Debug)]
pub struct SecretsManagerSource {
    client: Client,
    sign_ins: SecretsManagerSignIns,
}

impl SecretsManagerSource {
    /// The Secrets Manager operations this source makes (SDK method, the IAM action it needs).
    /// `infra/template.yaml` grants them on the credential secrets and `tests/tests/template.rs`
    /// checks it. Secrets encrypted with the default `aws/secretsmanager` key need nothing else;
    /// a customer managed key would add `kms:Decrypt` on that key.
    pub const IAM_ACTIONS: &[(&str, &str)] =
        &[("get_secret_value", "secretsmanager:GetSecretValue")];

    /// A source reading secrets with `client` (its region is where the secrets must be).
    pub fn new(client: Client) -> Self {
        Self {
            sign_ins: SecretsManagerSignIns::new(client.clone()),
            client,
        }
    }

    /// Delegated credentials keep their sign-ins through `sign_ins`.
    pub fn with_sign_ins(mut self, sign_ins: SecretsManagerSignIns) -> Self {
        self.sign_ins = sign_ins;
        self
    }
}

#[async_trait]
impl SecretSource for SecretsManagerSource {
    async fn fetch(&self, name: &str) -> Result<AppCredential, SecretError> {
        let json = current_string(&self.client, name).await?;
        AppCredential::from_stored(name, &json, Arc::new(self.sign_ins.clone()))
    }
}

/// The current value of secret `name` (its `AWSCURRENT` version's SecretString): the one read
/// of a credential's secret, for [`SecretsManagerSource`] and [`SecretsManagerSignIns`].
pub(super) async fn current_string(client: &Client, name: &str) -> Result<String, SecretError> {
    // AWSCURRENT is Secrets Manager's default; asked for explicitly because moto's default does
    // not follow a rotation's UpdateSecretVersionStage.
    let output = client
        .get_secret_value()
        .secret_id(name)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .map_err(|e| {
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception())
            {
                SecretError::NotFound {
                    name: name.to_owned(),
                    hint: not_found_hint(name),
                }
            } else {
                SecretError::Unavailable {
                    name: name.to_owned(),
                    // Error responses describe the request, never the secret value.
                    detail: DisplayErrorContext(e).to_string(),
                }
            }
        })?;
    output
        .secret_string()
        .map(str::to_owned)
        .ok_or_else(|| SecretError::Malformed {
            name: name.to_owned(),
            detail: "the secret has no SecretString (binary secrets are not supported)".into(),
        })
}

/// What to run to create the missing secret: a command that works as written once the three
/// placeholders are filled in (the command comes last, so it can be copied from there on).
fn not_found_hint(name: &str) -> String {
    format!(
        "create it in this account and region (for a certificate, certificate_pem and private_key_pem, \
         the certificate and its PKCS#8 private key as PEM text, take the place of client_secret) with: \
         aws secretsmanager create-secret --name {name} \
         --secret-string '{{\"tenant_id\":\"<directory (tenant) id>\",\"client_id\":\"<application (client) id>\",\"client_secret\":\"<client secret value>\"}}'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_actions_cover_exactly_the_operations_called() {
        let called = crate::adapters::aws::sdk_calls(include_str!("secrets.rs"), &[]);
        assert_eq!(
            called,
            crate::adapters::aws::listed_calls(SecretsManagerSource::IAM_ACTIONS)
        );
    }

    #[test]
    fn the_hint_is_a_runnable_command_with_valid_json() {
        let hint = not_found_hint("mailroom/contoso");
        assert!(hint.contains("--name mailroom/contoso "), "{hint}");
        let json = hint.split('\'').nth(1).unwrap();
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        for field in ["tenant_id", "client_id", "client_secret"] {
            assert!(value[field].is_string(), "{hint}");
        }
    }
}
