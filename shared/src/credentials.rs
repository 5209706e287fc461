//! App registration credentials: what a secret holds, how it is parsed, and a short-lived cache.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::ports::{SecretError, SecretSource};

/// One Entra app registration's client-credentials secret. `Debug` never shows the secret.
#[derive(Clone)]
pub struct AppCredential {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// When the secret expires, if the operator recorded it (used when Graph cannot tell us).
    pub expires_at: Option<OffsetDateTime>,
}

impl fmt::Debug for AppCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCredential")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl AppCredential {
    /// Parses the JSON stored in a secret:
    /// `{"tenant_id": "…", "client_id": "…", "client_secret": "…", "expires_at": "2026-01-01T00:00:00Z"}`.
    ///
    /// Errors name the credential and the field, never a value: serde's own messages can quote
    /// the input, which here is a secret.
    pub fn from_json(name: &str, json: &str) -> Result<Self, SecretError> {
        let malformed = |detail: String| SecretError::Malformed {
            name: name.to_owned(),
            detail,
        };
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
            malformed(format!(
                "not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let object = value
            .as_object()
            .ok_or_else(|| malformed("expected a JSON object".into()))?;
        let text = |field: &str| -> Result<Option<String>, SecretError> {
            match object.get(field) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) if s.trim().is_empty() => {
                    Err(malformed(format!("field '{field}' is empty")))
                }
                Some(serde_json::Value::String(s)) => Ok(Some(s.trim().to_owned())),
                Some(_) => Err(malformed(format!("field '{field}' must be a string"))),
            }
        };
        let required = |field: &str| -> Result<String, SecretError> {
            text(field)?.ok_or_else(|| malformed(format!("field '{field}' is missing")))
        };
        let expires_at = text("expires_at")?
            .map(|s| {
                OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339).map_err(
                    |_| {
                        malformed(
                            "field 'expires_at' must be an RFC 3339 time such as 2026-06-30T00:00:00Z"
                                .into(),
                        )
                    },
                )
            })
            .transpose()?;
        Ok(Self {
            tenant_id: required("tenant_id")?,
            client_id: required("client_id")?,
            client_secret: SecretString::from(required("client_secret")?),
            expires_at,
        })
    }

    /// Whether two credentials carry the same secret value (used after a re-read).
    pub fn same_secret(&self, other: &AppCredential) -> bool {
        self.client_secret.expose_secret() == other.client_secret.expose_secret()
    }
}

/// Credentials by name, cached for a short time so a run does not read Secrets Manager for every
/// mailbox, and re-read on demand when Graph rejects a secret (it may just have been rotated).
pub struct Credentials {
    source: Arc<dyn SecretSource>,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, AppCredential)>>,
}

impl Credentials {
    pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

    pub fn new(source: Arc<dyn SecretSource>, ttl: Duration) -> Self {
        Self {
            source,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The credential `name`, from the cache if it is fresh.
    pub async fn get(&self, name: &str) -> Result<AppCredential, SecretError> {
        if let Some(hit) = self.cached(name) {
            return Ok(hit);
        }
        self.refresh(name).await
    }

    /// Reads `name` from the source, bypassing and then updating the cache.
    pub async fn refresh(&self, name: &str) -> Result<AppCredential, SecretError> {
        let credential = self.source.fetch(name).await?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(name.to_owned(), (Instant::now(), credential.clone()));
        }
        Ok(credential)
    }

    fn cached(&self, name: &str) -> Option<AppCredential> {
        let cache = self.cache.lock().ok()?;
        let (at, credential) = cache.get(name)?;
        (at.elapsed() < self.ttl).then(|| credential.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "Xy7~q.Lk3-very-secret-value";

    #[test]
    fn parses_a_complete_secret() {
        let json = format!(
            r#"{{"tenant_id":"t","client_id":"c","client_secret":"{SECRET}","expires_at":"2026-06-30T00:00:00Z"}}"#
        );
        let c = AppCredential::from_json("contoso", &json).unwrap();
        assert_eq!(c.client_id, "c");
        assert_eq!(c.client_secret.expose_secret(), SECRET);
        assert_eq!(c.expires_at.unwrap().year(), 2026);
        assert!(!format!("{c:?}").contains(SECRET));
    }

    #[test]
    fn errors_name_the_field_and_never_the_value() {
        let cases = [
            (
                format!(r#"{{"tenant_id":"t","client_secret":"{SECRET}"}}"#),
                "client_id",
            ),
            (
                format!(
                    r#"{{"tenant_id":"t","client_id":"c","client_secret":"{SECRET}","expires_at":"soon"}}"#
                ),
                "expires_at",
            ),
            (
                r#"{"tenant_id":"t","client_id":"c","client_secret":1}"#.to_string(),
                "client_secret",
            ),
            (format!("not json {SECRET}"), "not valid JSON"),
        ];
        for (json, expected) in cases {
            let err = AppCredential::from_json("contoso", &json)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{err}");
            assert!(err.contains("contoso"), "{err}");
            assert!(!err.contains(SECRET), "{err}");
        }
    }
}
