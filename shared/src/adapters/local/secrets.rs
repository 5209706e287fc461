//! [`SecretSource`] for local mode: credentials declared in `mailroom.toml` as
//! `[credential.NAME]` (tenant id, client id, expiry), each secret value kept outside the file,
//! in an environment variable or a file of its own, so the configuration can be shared or
//! committed without the secret.
//!
//! The value is read on every call, so replacing the file (or restarting with a new variable)
//! after a rotation takes effect at the next [`crate::credentials::Credentials`] refresh. Errors
//! name the credential, the variable or the file, never the value.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;
use time::OffsetDateTime;

use crate::credentials::AppCredential;
use crate::ports::{SecretError, SecretSource};

/// Where a local credential's secret value is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    /// The environment variable of this name.
    Env(String),
    /// This file (its whole content, without surrounding whitespace).
    File(PathBuf),
}

/// One `[credential.NAME]` of the configuration. Holds no secret: only where to find it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalCredential {
    /// The directory (tenant) id.
    pub tenant_id: String,
    /// The application (client) id.
    pub client_id: String,
    /// Where the client secret's value is.
    pub secret: SecretRef,
    /// When the secret expires, if the operator recorded it.
    pub expires_at: Option<OffsetDateTime>,
}

type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A [`SecretSource`] over the credentials declared in the local configuration.
#[derive(Clone)]
pub struct FileSecretSource {
    credentials: HashMap<String, LocalCredential>,
    env: EnvLookup,
}

impl fmt::Debug for FileSecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSecretSource")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl FileSecretSource {
    /// A source over `credentials` (by name), reading secret variables from the process
    /// environment.
    pub fn new(credentials: HashMap<String, LocalCredential>) -> Self {
        // A variable that is not valid Unicode cannot hold an Entra secret: treat it as unset.
        Self::with_env(credentials, |name| std::env::var(name).ok())
    }

    /// A source reading secret variables through `env` instead of the process environment:
    /// tests cannot set variables (`std::env::set_var` is unsafe, and unsafe code is forbidden
    /// here), and a CLI may want to resolve variables its own way.
    pub fn with_env(
        credentials: HashMap<String, LocalCredential>,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            credentials,
            env: Arc::new(env),
        }
    }

    /// The names of the declared credentials, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.credentials.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    async fn secret_value(&self, name: &str, secret: &SecretRef) -> Result<String, SecretError> {
        match secret {
            SecretRef::Env(variable) => (self.env)(variable)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
                .ok_or_else(|| SecretError::NotFound {
                    name: name.to_owned(),
                    hint: format!(
                        "the environment variable {variable} is not set or empty; \
                         export {variable}=… (the secret's Value, not its Secret ID)"
                    ),
                }),
            SecretRef::File(path) => {
                let content = tokio::fs::read_to_string(path).await.map_err(|e| {
                    // The error kind only: an I/O error never carries file content, but say
                    // nothing more than needed about a secret's file.
                    SecretError::Unavailable {
                        name: name.to_owned(),
                        detail: format!(
                            "cannot read the secret file {}: {}",
                            path.display(),
                            e.kind()
                        ),
                    }
                })?;
                // Editors and `echo` end files with a newline; Entra secrets never contain
                // whitespace, so trimming cannot damage one.
                let value = content.trim();
                if value.is_empty() {
                    return Err(SecretError::Malformed {
                        name: name.to_owned(),
                        detail: format!(
                            "the secret file {} is empty; put the secret's Value in it",
                            path.display()
                        ),
                    });
                }
                Ok(value.to_owned())
            }
        }
    }
}

#[async_trait]
impl SecretSource for FileSecretSource {
    async fn fetch(&self, name: &str) -> Result<AppCredential, SecretError> {
        let credential = self
            .credentials
            .get(name)
            .ok_or_else(|| SecretError::NotFound {
                name: name.to_owned(),
                hint: format!("declare it as [credential.{name}] in mailroom.toml"),
            })?;
        let value = self.secret_value(name, &credential.secret).await?;
        Ok(AppCredential {
            tenant_id: credential.tenant_id.clone(),
            client_id: credential.client_id.clone(),
            client_secret: SecretString::from(value),
            expires_at: credential.expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const SECRET: &str = "Qx8~local.secret-value";

    fn source(secret: SecretRef) -> FileSecretSource {
        let credential = LocalCredential {
            tenant_id: "tenant".into(),
            client_id: "client".into(),
            secret,
            expires_at: None,
        };
        FileSecretSource::with_env(
            HashMap::from([("contoso".to_owned(), credential)]),
            |name| (name == "SET").then(|| format!("  {SECRET}\n")),
        )
    }

    #[tokio::test]
    async fn env_values_are_trimmed() {
        let credential = source(SecretRef::Env("SET".into()))
            .fetch("contoso")
            .await
            .unwrap();
        assert_eq!(credential.client_secret.expose_secret(), SECRET);
        assert_eq!(credential.tenant_id, "tenant");
    }

    #[tokio::test]
    async fn a_directory_as_secret_file_is_unavailable_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = source(SecretRef::File(dir.path().to_owned()))
            .fetch("contoso")
            .await
            .unwrap_err();
        let SecretError::Unavailable { name, detail } = &err else {
            panic!("expected Unavailable, got {err:?}");
        };
        assert_eq!(name, "contoso");
        assert!(
            detail.contains(&dir.path().display().to_string()),
            "{detail}"
        );
    }

    #[test]
    fn debug_shows_names_and_references_only() {
        let shown = format!("{:?}", source(SecretRef::Env("SET".into())));
        assert!(
            shown.contains("contoso") && shown.contains("SET"),
            "{shown}"
        );
        assert!(!shown.contains(SECRET), "{shown}");
    }
}
