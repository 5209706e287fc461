//! The tag that lets the functions store a delegated credential's refreshed sign-in
//! ([`DELEGATED_TAG`]), put on its secret by `mailroom --backend aws credentials login`: an
//! operator's call, never a function's. The functions' roles may `PutSecretValue` only on secrets
//! carrying the tag and may not tag, so they cannot make an app credential's secret writable
//! (`infra/template.yaml`).

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use aws_sdk_secretsmanager::types::Tag;

use super::DELEGATED_TAG;
use crate::ports::SecretError;

/// Puts [`DELEGATED_TAG`] on a delegated credential's secret.
#[derive(Clone, Debug)]
pub struct DelegatedSecretTag {
    client: Client,
}

impl DelegatedSecretTag {
    /// The Secrets Manager operations this makes (SDK method, the IAM action it needs): the
    /// operator's, for `credentials login`. No function role has them (`tests/tests/template.rs`).
    pub const IAM_ACTIONS: &[(&str, &str)] = &[
        ("describe_secret", "secretsmanager:DescribeSecret"),
        ("tag_resource", "secretsmanager:TagResource"),
    ];

    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Tags secret `name` with [`DELEGATED_TAG`] unless it carries it already (any other value of
    /// the key is replaced); whether it added the tag. Tags are the secret's metadata: no new
    /// version.
    pub async fn ensure(&self, name: &str) -> Result<bool, SecretError> {
        let unavailable = |what: &str, detail: String| SecretError::Unavailable {
            name: name.to_owned(),
            detail: format!("{what}: {detail}"),
        };
        let described = self
            .client
            .describe_secret()
            .secret_id(name)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception())
                {
                    SecretError::NotFound {
                        name: name.to_owned(),
                        hint: "it was deleted during the sign-in".into(),
                    }
                } else {
                    unavailable(
                        "reading its tags (secretsmanager:DescribeSecret)",
                        DisplayErrorContext(e).to_string(),
                    )
                }
            })?;
        let (key, value) = DELEGATED_TAG;
        if described
            .tags()
            .iter()
            .any(|t| t.key() == Some(key) && t.value() == Some(value))
        {
            return Ok(false);
        }
        self.client
            .tag_resource()
            .secret_id(name)
            .tags(Tag::builder().key(key).value(value).build())
            .send()
            .await
            .map_err(|e| {
                unavailable(
                    &format!("tagging it {key}={value} (secretsmanager:TagResource)"),
                    DisplayErrorContext(e).to_string(),
                )
            })?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_actions_cover_exactly_the_operations_called() {
        let called = crate::adapters::aws::sdk_calls(include_str!("tagging.rs"), &[]);
        assert_eq!(
            called,
            crate::adapters::aws::listed_calls(DelegatedSecretTag::IAM_ACTIONS)
        );
    }
}
