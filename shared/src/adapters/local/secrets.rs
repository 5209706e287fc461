//! [`SecretSource`] for local mode: credentials declared in `mailroom.toml` as
//! `[credential.NAME]` (tenant id, client id, expiry), each secret value kept outside the file,
//! in an environment variable or a file of its own, so the configuration can be shared or
//! committed without the secret. A certificate credential is two PEM files: the certificate and
//! its PKCS#8 private key.
//!
//! The value is read on every call, so replacing the file (or restarting with a new variable)
//! after a rotation takes effect at the next [`crate::credentials::Credentials`] refresh. Errors
//! name the credential, the variable or the file, never the value.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::LocalSignIns;
use crate::credentials::{AppCredential, CertificateCredential, ClientAuth, Delegation};
use crate::ports::{SecretError, SecretSource};

/// Where a local credential's secret value is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    /// The client secret is in the environment variable of this name.
    Env(String),
    /// The client secret is this file (its whole content, without surrounding whitespace).
    File(PathBuf),
    /// A certificate in PEM, and its PKCS#8 private key in PEM (the same file may hold both).
    Certificate {
        certificate: PathBuf,
        private_key: PathBuf,
    },
    /// No secret of its own: a delegated credential of a public client (docs/delegated.md).
    None,
}

/// One `[credential.NAME]` of the configuration. Holds no secret: only where to find it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalCredential {
    /// The directory (tenant) id.
    pub tenant_id: String,
    /// The application (client) id.
    pub client_id: String,
    /// Where the client secret's value, or the certificate and its key, are.
    pub secret: SecretRef,
    /// The Graph `keyId` of the password or certificate in use, if recorded.
    pub key_id: Option<String>,
    /// When the secret expires, if the operator recorded it (a certificate's own notAfter
    /// overrides it).
    pub expires_at: Option<OffsetDateTime>,
    /// `kind = "delegated"`: the Graph scopes a person signs in for (`mailroom credentials
    /// login`); `None` for an app credential.
    pub delegated_scopes: Option<Vec<String>>,
}

type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A [`SecretSource`] over the credentials declared in the local configuration.
#[derive(Clone)]
pub struct FileSecretSource {
    credentials: HashMap<String, LocalCredential>,
    env: EnvLookup,
    /// Where delegated credentials' sign-ins are (under the data dir).
    sign_ins: Option<LocalSignIns>,
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
            sign_ins: None,
        }
    }

    /// Delegated credentials' sign-ins are kept in `sign_ins` (without it, a delegated
    /// credential cannot be used).
    pub fn with_sign_ins(mut self, sign_ins: LocalSignIns) -> Self {
        self.sign_ins = Some(sign_ins);
        self
    }

    /// The names of the declared credentials, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.credentials.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The client secret, or the certificate and its key, that `secret` points to.
    async fn client_auth(&self, name: &str, secret: &SecretRef) -> Result<ClientAuth, SecretError> {
        match secret {
            SecretRef::Env(variable) => self.env_secret(name, variable).map(ClientAuth::from),
            SecretRef::File(path) => file_secret(name, path).await.map(ClientAuth::from),
            SecretRef::Certificate {
                certificate,
                private_key,
            } => {
                let certificate_pem = read_file(name, "certificate", certificate).await?;
                let private_key_pem = read_file(name, "private key", private_key).await?;
                CertificateCredential::from_pem(&certificate_pem, &private_key_pem)
                    .map(ClientAuth::Certificate)
                    .map_err(|e| SecretError::Malformed {
                        name: name.to_owned(),
                        detail: e.detail(
                            &format!("the certificate file {}", certificate.display()),
                            &format!("the private key file {}", private_key.display()),
                        ),
                    })
            }
            SecretRef::None => Err(SecretError::Malformed {
                name: name.to_owned(),
                detail: "it has no client secret or certificate; an app credential needs client_secret_env, client_secret_file, or certificate_file with private_key_file".into(),
            }),
        }
    }

    fn env_secret(&self, name: &str, variable: &str) -> Result<String, SecretError> {
        (self.env)(variable)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
            .ok_or_else(|| SecretError::NotFound {
                name: name.to_owned(),
                hint: format!(
                    "the environment variable {variable} is not set or empty; \
                     export {variable}=… (the secret's Value, not its Secret ID)"
                ),
            })
    }
}

async fn file_secret(name: &str, path: &Path) -> Result<String, SecretError> {
    let content = read_file(name, "secret", path).await?;
    // Editors and `echo` end files with a newline; Entra secrets never contain whitespace, so
    // trimming cannot damage one.
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

/// The content of the `what` file (secret, certificate, private key) of credential `name`.
async fn read_file(name: &str, what: &str, path: &Path) -> Result<String, SecretError> {
    tokio::fs::read_to_string(path).await.map_err(|e| {
        // The error kind only: an I/O error never carries file content, but say nothing more
        // than needed about a secret's file.
        SecretError::Unavailable {
            name: name.to_owned(),
            detail: format!(
                "cannot read the {what} file {}: {}",
                path.display(),
                e.kind()
            ),
        }
    })
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
        let secret = match (&credential.secret, &credential.delegated_scopes) {
            (SecretRef::None, Some(_)) => ClientAuth::Public,
            (secret, _) => self.client_auth(name, secret).await?,
        };
        let mut app = AppCredential::new(
            credential.tenant_id.clone(),
            credential.client_id.clone(),
            secret,
        );
        if let Some(scopes) = &credential.delegated_scopes {
            let sign_ins = self
                .sign_ins
                .clone()
                .ok_or_else(|| SecretError::Unavailable {
                    name: name.to_owned(),
                    detail: "it is a delegated credential, and this command keeps no sign-ins"
                        .into(),
                })?;
            app.delegated = Some(Delegation {
                name: name.to_owned(),
                scopes: scopes.clone(),
                sign_ins: Arc::new(sign_ins),
            });
        }
        app.key_id.clone_from(&credential.key_id);
        if app.expires_at.is_none() {
            app.expires_at = credential.expires_at;
        }
        Ok(app)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const SECRET: &str = "Qx8~local.secret-value";

    fn source(secret: SecretRef) -> FileSecretSource {
        let credential = LocalCredential {
            delegated_scopes: None,
            tenant_id: "tenant".into(),
            client_id: "client".into(),
            secret,
            key_id: Some("key-1".into()),
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
        assert_eq!(credential.client_secret().unwrap().expose_secret(), SECRET);
        assert_eq!(credential.tenant_id, "tenant");
        assert_eq!(credential.key_id.as_deref(), Some("key-1"));
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

    const CERT: &str = include_str!("../../../../sandbox/fixtures/app-cert.pem");
    const KEY: &str = include_str!("../../../../sandbox/fixtures/app-key.pem");

    fn certificate_files(key: &str) -> (tempfile::TempDir, SecretRef) {
        let dir = tempfile::tempdir().unwrap();
        let certificate = dir.path().join("app-cert.pem");
        let private_key = dir.path().join("app-key.pem");
        std::fs::write(&certificate, CERT).unwrap();
        std::fs::write(&private_key, key).unwrap();
        (
            dir,
            SecretRef::Certificate {
                certificate,
                private_key,
            },
        )
    }

    #[tokio::test]
    async fn a_certificate_is_read_from_its_files_and_expires_at_its_not_after() {
        let (_dir, secret) = certificate_files(KEY);
        let credential = source(secret).fetch("contoso").await.unwrap();
        let certificate = credential.certificate().unwrap();
        assert_eq!(credential.expires_at, Some(certificate.not_after()));
        assert_eq!(credential.key_id.as_deref(), Some("key-1"));
    }

    #[tokio::test]
    async fn a_bad_key_file_is_malformed_naming_the_file_not_the_key() {
        let pkcs1 = KEY.replace("PRIVATE KEY", "RSA PRIVATE KEY");
        let (dir, secret) = certificate_files(&pkcs1);
        let err = source(secret).fetch("contoso").await.unwrap_err();
        let SecretError::Malformed { name, detail } = &err else {
            panic!("expected Malformed, got {err:?}");
        };
        assert_eq!(name, "contoso");
        let key_file = dir.path().join("app-key.pem").display().to_string();
        assert!(
            detail.starts_with(&format!("the private key file {key_file} is a PKCS#1 key")),
            "{detail}"
        );
        assert!(detail.contains("openssl pkcs8 -topk8 -nocrypt"), "{detail}");
        let key_line = KEY.lines().nth(5).unwrap();
        assert!(!format!("{err} {err:?}").contains(key_line), "{err:?}");
    }

    #[tokio::test]
    async fn a_missing_certificate_file_is_unavailable_naming_it() {
        let (dir, _) = certificate_files(KEY);
        let missing = dir.path().join("missing.pem");
        let err = source(SecretRef::Certificate {
            certificate: missing.clone(),
            private_key: dir.path().join("app-key.pem"),
        })
        .fetch("contoso")
        .await
        .unwrap_err();
        let SecretError::Unavailable { detail, .. } = &err else {
            panic!("expected Unavailable, got {err:?}");
        };
        assert!(
            detail.contains(&format!("the certificate file {}", missing.display())),
            "{detail}"
        );
    }
}
