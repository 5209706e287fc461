//! [`SecretVersions`] on Secrets Manager: what the rotation steps read and write.
//!
//! Values travel as [`SecretString`]; errors name the secret and the operation, never a value.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use secrecy::{ExposeSecret, SecretString};

use crate::ports::SecretError;
use crate::rotation::SecretVersions;

/// The rotation function's access to the secrets it rotates.
#[derive(Clone, Debug)]
pub struct SecretsManagerVersions {
    client: Client,
}

impl SecretsManagerVersions {
    /// The Secrets Manager operations rotation makes (SDK method, the IAM action it needs), on
    /// the rotated secrets. Secrets Manager itself must be allowed to invoke the function
    /// (`lambda:InvokeFunction` for the principal `secretsmanager.amazonaws.com`).
    pub const IAM_ACTIONS: &[(&str, &str)] = &[
        ("describe_secret", "secretsmanager:DescribeSecret"),
        ("get_secret_value", "secretsmanager:GetSecretValue"),
        ("put_secret_value", "secretsmanager:PutSecretValue"),
        (
            "update_secret_version_stage",
            "secretsmanager:UpdateSecretVersionStage",
        ),
    ];

    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn unavailable(name: &str, operation: &str, detail: impl std::fmt::Display) -> SecretError {
    SecretError::Unavailable {
        name: name.to_owned(),
        detail: format!("{operation}: {detail}"),
    }
}

#[async_trait]
impl SecretVersions for SecretsManagerVersions {
    async fn stages(&self, secret_id: &str) -> Result<BTreeMap<String, Vec<String>>, SecretError> {
        let described = self
            .client
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| unavailable(secret_id, "describe secret", DisplayErrorContext(e)))?;
        Ok(described
            .version_ids_to_stages()
            .map(|versions| {
                versions
                    .iter()
                    .map(|(id, stages)| (id.clone(), stages.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn value(
        &self,
        secret_id: &str,
        version_id: Option<&str>,
        stage: Option<&str>,
    ) -> Result<Option<SecretString>, SecretError> {
        let mut request = self.client.get_secret_value().secret_id(secret_id);
        if let Some(version) = version_id {
            request = request.version_id(version);
        }
        if let Some(stage) = stage {
            request = request.version_stage(stage);
        }
        match request.send().await {
            Ok(output) => Ok(output
                .secret_string()
                .map(|s| SecretString::from(s.to_owned()))),
            Err(e)
                if e.as_service_error().is_some_and(|e| {
                    e.is_resource_not_found_exception() || e.is_invalid_request_exception()
                }) =>
            {
                Ok(None)
            }
            Err(e) => Err(unavailable(
                secret_id,
                "get secret value",
                DisplayErrorContext(e),
            )),
        }
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
    ) -> Result<(), SecretError> {
        self.client
            .put_secret_value()
            .secret_id(secret_id)
            .client_request_token(token)
            .secret_string(value.expose_secret())
            .version_stages("AWSPENDING")
            .send()
            .await
            .map_err(|e| unavailable(secret_id, "put secret value", DisplayErrorContext(e)))?;
        Ok(())
    }

    async fn move_stage(
        &self,
        secret_id: &str,
        stage: &str,
        to: Option<&str>,
        from: Option<&str>,
    ) -> Result<(), SecretError> {
        self.client
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(stage)
            .set_move_to_version_id(to.map(str::to_owned))
            .set_remove_from_version_id(from.map(str::to_owned))
            .send()
            .await
            .map_err(|e| {
                unavailable(
                    secret_id,
                    "update secret version stage",
                    DisplayErrorContext(e),
                )
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_actions_cover_exactly_the_operations_called() {
        let called = crate::adapters::aws::sdk_calls(include_str!("rotation.rs"), &[]);
        assert_eq!(
            called,
            crate::adapters::aws::listed_calls(SecretsManagerVersions::IAM_ACTIONS)
        );
    }
}
