//! Rotation of a client secret by Secrets Manager's four-step protocol (issue 6), so the
//! secret-expiry function can be the secret's rotation Lambda:
//!
//! - **createSecret**: if the token's AWSPENDING version exists, nothing to do. Otherwise remove
//!   orphaned `mailroom-rotation-*` passwords, `addPassword` with the AWSCURRENT credential, and
//!   store the new value, key id and expiry as the token's AWSPENDING version.
//! - **setSecret**: nothing (the password already exists on the app).
//! - **testSecret**: the pending secret obtains a token, retried with backoff while Entra
//!   propagates the new password.
//! - **finishSecret**: move AWSCURRENT to the token's version, then `removePassword` the old key
//!   id with the new credential, and remove orphans.
//!
//! Every step can be run again. Until finishSecret moves AWSCURRENT, the previous secret stays
//! current and untouched; after that, the new one is current and proven. A password left behind
//! by a crash (`mailroom-rotation-*`, neither current nor pending, or the AWSPREVIOUS version's)
//! is removed by the next createSecret or finishSecret. Needs Application.ReadWrite.OwnedBy and
//! the app's service principal as an owner of its own registration (docs/graph.md §9).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::clock::Clock;
use crate::credentials::AppCredential;
use crate::domain::alert::{date, rfc3339};
use crate::graph::{AppClient, Application, GraphClient, GraphError};
use crate::ports::SecretError;

/// The display name of every password Mailroom adds starts with this.
pub const ROTATION_PREFIX: &str = "mailroom-rotation-";

const CURRENT: &str = "AWSCURRENT";
const PENDING: &str = "AWSPENDING";
const PREVIOUS: &str = "AWSPREVIOUS";

/// The versions of a secret, as the rotation protocol uses them (Secrets Manager in AWS).
#[async_trait]
pub trait SecretVersions: Send + Sync {
    /// Version id → its staging labels.
    async fn stages(&self, secret_id: &str) -> Result<BTreeMap<String, Vec<String>>, SecretError>;
    /// The value of a version, by id, by staging label, or both; `None` if there is no such
    /// version (or it does not carry the label).
    async fn value(
        &self,
        secret_id: &str,
        version_id: Option<&str>,
        stage: Option<&str>,
    ) -> Result<Option<SecretString>, SecretError>;
    /// Stores `value` as version `token`, labelled AWSPENDING.
    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        value: &SecretString,
    ) -> Result<(), SecretError>;
    /// Moves the label `stage` to version `to` (if given) from version `from` (if given).
    async fn move_stage(
        &self,
        secret_id: &str,
        stage: &str,
        to: Option<&str>,
        from: Option<&str>,
    ) -> Result<(), SecretError>;
}

/// A step of the protocol, as Secrets Manager names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RotationStep {
    #[serde(rename = "createSecret")]
    CreateSecret,
    #[serde(rename = "setSecret")]
    SetSecret,
    #[serde(rename = "testSecret")]
    TestSecret,
    #[serde(rename = "finishSecret")]
    FinishSecret,
}

impl RotationStep {
    /// The four steps, in the order Secrets Manager runs them.
    pub const ALL: [Self; 4] = [
        Self::CreateSecret,
        Self::SetSecret,
        Self::TestSecret,
        Self::FinishSecret,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::CreateSecret => "createSecret",
            Self::SetSecret => "setSecret",
            Self::TestSecret => "testSecret",
            Self::FinishSecret => "finishSecret",
        }
    }
}

/// The event Secrets Manager invokes a rotation function with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationEvent {
    #[serde(rename = "SecretId")]
    pub secret_id: String,
    #[serde(rename = "ClientRequestToken")]
    pub client_request_token: String,
    #[serde(rename = "Step")]
    pub step: RotationStep,
}

/// What a step did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RotationReport {
    pub secret_id: String,
    pub step: String,
    /// One sentence: what happened.
    pub outcome: String,
    /// The key id of the password added (createSecret) or now current (finishSecret).
    pub key_id: Option<String>,
    /// Key ids of passwords removed: the old one, and orphans of an interrupted rotation.
    pub removed: Vec<String>,
    /// Things that did not stop the step but need a person.
    pub warnings: Vec<String>,
}

/// A step that failed: where, what happened, and the state it left (AWSCURRENT always works).
#[derive(Debug, thiserror::Error)]
#[error("rotation of '{secret_id}' failed at {step}: {detail}; {state}")]
pub struct RotationError {
    pub secret_id: String,
    pub step: &'static str,
    pub detail: String,
    pub state: String,
}

/// How long new secrets live and how long testSecret waits for propagation.
#[derive(Debug, Clone)]
pub struct RotationOptions {
    /// The new password's lifetime (`endDateTime` = now + this).
    pub lifetime: time::Duration,
    /// Token attempts in testSecret.
    pub test_attempts: u32,
    /// The first wait between attempts; doubled each time, at most `max_backoff`.
    pub test_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RotationOptions {
    fn default() -> Self {
        Self {
            lifetime: time::Duration::days(180),
            test_attempts: 10,
            test_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(20),
        }
    }
}

/// Runs the rotation steps.
pub struct Rotator {
    pub versions: Arc<dyn SecretVersions>,
    pub graph: GraphClient,
    pub clock: Arc<dyn Clock>,
    pub options: RotationOptions,
}

/// What the state is before AWSCURRENT moves.
const UNCHANGED: &str = "AWSCURRENT is unchanged and still holds the working secret";

impl Rotator {
    pub async fn run(&self, event: &RotationEvent) -> Result<RotationReport, RotationError> {
        let mut report = RotationReport {
            secret_id: event.secret_id.clone(),
            step: event.step.name().to_owned(),
            ..RotationReport::default()
        };
        let id = event.secret_id.as_str();
        let token = event.client_request_token.as_str();
        match event.step {
            RotationStep::CreateSecret => self.create(id, token, &mut report).await?,
            RotationStep::SetSecret => {
                report.outcome =
                    "nothing to do: addPassword already made the secret known to Entra ID".into();
            }
            RotationStep::TestSecret => self.test(id, token, &mut report).await?,
            RotationStep::FinishSecret => self.finish(id, token, &mut report).await?,
        }
        tracing::info!(
            secret = id,
            step = event.step.name(),
            outcome = %report.outcome,
            removed = ?report.removed,
            warnings = report.warnings.len(),
            "rotation step finished"
        );
        Ok(report)
    }

    fn fail(
        &self,
        id: &str,
        step: RotationStep,
        detail: impl Into<String>,
        state: impl Into<String>,
    ) -> RotationError {
        RotationError {
            secret_id: id.to_owned(),
            step: step.name(),
            detail: detail.into(),
            state: state.into(),
        }
    }

    /// The version carrying `stage`.
    fn version_with(stages: &BTreeMap<String, Vec<String>>, stage: &str) -> Option<String> {
        stages
            .iter()
            .find(|(_, labels)| labels.iter().any(|l| l == stage))
            .map(|(id, _)| id.clone())
    }

    /// A version's credential, or `None` when it has no value or does not parse.
    async fn credential(
        &self,
        id: &str,
        version: Option<&str>,
        stage: Option<&str>,
    ) -> Result<Option<(SecretString, AppCredential)>, SecretError> {
        let Some(value) = self.versions.value(id, version, stage).await? else {
            return Ok(None);
        };
        let credential = AppCredential::from_json(id, value.expose_secret())?;
        Ok(Some((value, credential)))
    }

    async fn create(
        &self,
        id: &str,
        token: &str,
        report: &mut RotationReport,
    ) -> Result<(), RotationError> {
        let step = RotationStep::CreateSecret;
        let read_failed = |e: SecretError| self.fail(id, step, e.to_string(), UNCHANGED);
        let stages = self.versions.stages(id).await.map_err(read_failed)?;
        if stages
            .get(token)
            .is_some_and(|labels| labels.iter().any(|l| l == CURRENT))
        {
            report.outcome = format!("nothing to do: version {token} is already AWSCURRENT");
            return Ok(());
        }
        if let Some((_, pending)) = self
            .credential(id, Some(token), Some(PENDING))
            .await
            .map_err(read_failed)?
        {
            report.outcome = format!("nothing to do: the AWSPENDING version {token} exists");
            report.key_id = pending.key_id;
            return Ok(());
        }
        let Some((current_json, current)) = self
            .credential(id, None, Some(CURRENT))
            .await
            .map_err(read_failed)?
        else {
            return Err(self.fail(id, step, "the secret has no AWSCURRENT version", UNCHANGED));
        };
        if current.client_secret().is_none() {
            return Err(self.fail(
                id,
                step,
                "the credential is a certificate: Mailroom rotates client secrets only; create a new certificate and key, upload it to the app and store both in the secret",
                UNCHANGED,
            ));
        }
        // Passwords to keep: the current one and that of any other pending version.
        let mut keep: Vec<String> = current.key_id.iter().cloned().collect();
        if let Some(other) = Self::version_with(&stages, PENDING)
            && let Ok(Some((_, pending))) = self.credential(id, Some(&other), None).await
        {
            keep.extend(pending.key_id);
        }
        // The AWSPREVIOUS version's password is no longer in use: a crash after a promotion
        // may have left it on the app.
        let previous = match Self::version_with(&stages, PREVIOUS) {
            Some(version) => self
                .credential(id, Some(&version), None)
                .await
                .ok()
                .flatten()
                .and_then(|(_, c)| c.key_id),
            None => None,
        };
        let app = self.graph.app(current.clone());
        let removed = self
            .remove_stale(&app, &current, &keep, previous.as_deref())
            .await
            .map_err(|e| {
                self.fail(
                    id,
                    step,
                    format!("removing passwords left by an interrupted rotation: {e}"),
                    UNCHANGED,
                )
            })?;
        report.removed = removed;

        let now = self.clock.now();
        // Whole seconds: the stored expires_at and Graph's endDateTime then agree exactly.
        let expires_at = now + self.options.lifetime;
        let expires_at = expires_at.replace_nanosecond(0).unwrap_or(expires_at);
        let name = format!("{ROTATION_PREFIX}{}", date(now));
        let new = app.add_password(&name, expires_at).await.map_err(|e| {
            self.fail(
                id,
                step,
                format!("adding a client secret to the app: {e}"),
                UNCHANGED,
            )
        })?;
        let expires_at = new.end_date_time.unwrap_or(expires_at);
        let value = new_secret_json(&current_json, &new.secret_text, &new.key_id, expires_at)
            .map_err(|e| {
                self.fail(
                    id,
                    step,
                    e.to_string(),
                    format!("{UNCHANGED}; the password just added (key id {}) is removed by the next run", new.key_id),
                )
            })?;
        self.versions
            .put_pending(id, token, &value)
            .await
            .map_err(|e| {
                self.fail(
                    id,
                    step,
                    format!("storing the new secret as AWSPENDING: {e}"),
                    format!(
                        "{UNCHANGED}; the password just added (key id {}) is removed by the next run",
                        new.key_id
                    ),
                )
            })?;
        report.key_id = Some(new.key_id.clone());
        report.outcome = format!(
            "added client secret {} ({name}, expires {}) and stored it as AWSPENDING version {token}",
            new.key_id,
            rfc3339(expires_at)
        );
        Ok(())
    }

    async fn test(
        &self,
        id: &str,
        token: &str,
        report: &mut RotationReport,
    ) -> Result<(), RotationError> {
        let step = RotationStep::TestSecret;
        let state = format!(
            "{UNCHANGED}; the pending password is removed by the next rotation's createSecret"
        );
        let Some((_, pending)) = self
            .credential(id, Some(token), Some(PENDING))
            .await
            .map_err(|e| self.fail(id, step, e.to_string(), state.clone()))?
        else {
            return Err(self.fail(
                id,
                step,
                format!("there is no AWSPENDING version {token} to test (run createSecret first)"),
                UNCHANGED,
            ));
        };
        let mut wait = self.options.test_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.graph.check_credential(&pending).await {
                Ok(()) => break,
                // A new password is refused as unknown until Entra has propagated it.
                Err(e) if e.is_credential_rejected() && attempt < self.options.test_attempts => {
                    tracing::info!(
                        secret = id,
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        "the new secret is not accepted yet; waiting for propagation"
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(self.options.max_backoff);
                }
                Err(e) => {
                    return Err(self.fail(
                        id,
                        step,
                        format!("the new secret obtains no token after {attempt} attempts: {e}"),
                        state,
                    ));
                }
            }
        }
        report.key_id = pending.key_id;
        report.outcome = format!("the pending secret obtained a token (attempt {attempt})");
        Ok(())
    }

    async fn finish(
        &self,
        id: &str,
        token: &str,
        report: &mut RotationReport,
    ) -> Result<(), RotationError> {
        let step = RotationStep::FinishSecret;
        let stages = self
            .versions
            .stages(id)
            .await
            .map_err(|e| self.fail(id, step, e.to_string(), UNCHANGED))?;
        let Some(labels) = stages.get(token) else {
            return Err(self.fail(
                id,
                step,
                format!("the secret has no version {token}"),
                UNCHANGED,
            ));
        };
        let current_version = Self::version_with(&stages, CURRENT);
        let already = current_version.as_deref() == Some(token);
        let old_version = if already {
            Self::version_with(&stages, PREVIOUS)
        } else {
            current_version.clone()
        };
        let Some((_, new)) = self
            .credential(id, Some(token), None)
            .await
            .map_err(|e| self.fail(id, step, e.to_string(), UNCHANGED))?
        else {
            return Err(self.fail(id, step, format!("version {token} has no value"), UNCHANGED));
        };
        let old = match &old_version {
            Some(version) => match self.credential(id, Some(version), None).await {
                Ok(found) => found.map(|(_, c)| c),
                Err(e) => {
                    report
                        .warnings
                        .push(format!("the previous version cannot be read: {e}"));
                    None
                }
            },
            None => None,
        };
        if !already {
            self.versions
                .move_stage(id, CURRENT, Some(token), current_version.as_deref())
                .await
                .map_err(|e| {
                    self.fail(
                        id,
                        step,
                        format!("moving AWSCURRENT to version {token}: {e}"),
                        UNCHANGED,
                    )
                })?;
        }
        let promoted = "AWSCURRENT holds the new secret, which obtained a token in testSecret";
        if labels.iter().any(|l| l == PENDING)
            && let Err(e) = self
                .versions
                .move_stage(id, PENDING, None, Some(token))
                .await
        {
            report.warnings.push(format!(
                "the AWSPENDING label stays on version {token}: {e}"
            ));
        }

        let app = self.graph.app(new.clone());
        let application = app.application().await.map_err(|e| {
            self.fail(
                id,
                step,
                format!("reading the app registration: {e}"),
                format!("{promoted}; the old password is still on the app: run finishSecret again, or the next rotation removes it"),
            )
        })?;
        let old_key = old.as_ref().and_then(|old| key_of(old, &application));
        let keep: Vec<String> = new.key_id.iter().cloned().collect();
        match (&old_key, &old) {
            (Some(key), _) if !keep.contains(key) => {
                remove(&app, key).await.map_err(|e| {
                    self.fail(
                        id,
                        step,
                        format!("removing the old password {key}: {e}"),
                        format!("{promoted}; the old password is still on the app: run finishSecret again, or the next rotation removes it"),
                    )
                })?;
                report.removed.push(key.clone());
            }
            (None, Some(_)) => report.warnings.push(
                "the old secret's key id is unknown (no key_id was stored and its hint matches no single password): remove it by hand in Entra ID > App registrations > Certificates & secrets".to_owned(),
            ),
            _ => {}
        }
        let orphans = self
            .remove_stale(&app, &new, &keep, None)
            .await
            .map_err(|e| {
                self.fail(
                    id,
                    step,
                    format!("removing passwords left by an interrupted rotation: {e}"),
                    format!("{promoted}; the orphans are removed by the next run"),
                )
            })?;
        report.removed.extend(orphans);
        report.key_id = new.key_id.clone();
        report.outcome = if already {
            format!("version {token} was already AWSCURRENT; cleaned up")
        } else {
            format!("version {token} is now AWSCURRENT")
        };
        Ok(())
    }

    /// Removes `mailroom-rotation-*` passwords that are neither in `keep` nor the credential in
    /// use, and `previous` (the AWSPREVIOUS version's key id) unless kept.
    async fn remove_stale(
        &self,
        app: &AppClient,
        in_use: &AppCredential,
        keep: &[String],
        previous: Option<&str>,
    ) -> Result<Vec<String>, GraphError> {
        let application = app.application().await?;
        let mut keep: Vec<String> = keep.to_vec();
        keep.extend(key_of(in_use, &application));
        let kept = |key: &str| keep.iter().any(|k| k.eq_ignore_ascii_case(key));
        let mut removed = Vec::new();
        for password in &application.password_credentials {
            let key = password.key_id.as_str();
            let ours = password
                .display_name
                .as_deref()
                .is_some_and(|n| n.starts_with(ROTATION_PREFIX));
            let was_previous = previous.is_some_and(|p| p.eq_ignore_ascii_case(key));
            if (ours || was_previous) && !kept(key) {
                remove(app, key).await?;
                removed.push(key.to_owned());
            }
        }
        Ok(removed)
    }
}

/// Removes a password; one already gone counts as removed.
async fn remove(app: &AppClient, key_id: &str) -> Result<(), GraphError> {
    match app.remove_password(key_id).await {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// The key id of the credential's password on the app: the stored one, else the one password
/// whose hint matches.
fn key_of(credential: &AppCredential, application: &Application) -> Option<String> {
    if let Some(key) = &credential.key_id {
        return Some(key.clone());
    }
    let secret = credential.client_secret()?;
    let hint: String = secret.expose_secret().chars().take(3).collect();
    let mut matching = application
        .password_credentials
        .iter()
        .filter(|p| p.hint.as_deref() == Some(hint.as_str()));
    match (matching.next(), matching.next()) {
        (Some(only), None) => Some(only.key_id.clone()),
        _ => None,
    }
}

/// The current secret's JSON with the new value, key id and expiry (other fields kept).
fn new_secret_json(
    current: &SecretString,
    secret: &SecretString,
    key_id: &str,
    expires_at: OffsetDateTime,
) -> Result<SecretString, NewSecretError> {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(current.expose_secret()).map_err(|_| NewSecretError::NotAnObject)?;
    object.insert(
        "client_secret".into(),
        serde_json::Value::String(secret.expose_secret().to_owned()),
    );
    object.insert(
        "key_id".into(),
        serde_json::Value::String(key_id.to_owned()),
    );
    object.insert(
        "expires_at".into(),
        serde_json::Value::String(rfc3339(expires_at)),
    );
    serde_json::to_string(&object)
        .map(SecretString::from)
        .map_err(|_| NewSecretError::NotWritable)
}

/// Why the rotated secret's JSON could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum NewSecretError {
    #[error("the current secret is not a JSON object")]
    NotAnObject,
    #[error("the new secret cannot be written as JSON")]
    NotWritable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_as_secrets_manager_sends_them() {
        let event: RotationEvent = serde_json::from_str(
            r#"{"SecretId":"arn:aws:secretsmanager:us-east-1:1:secret:x","ClientRequestToken":"t-1","Step":"testSecret"}"#,
        )
        .unwrap();
        assert_eq!(event.step, RotationStep::TestSecret);
        assert_eq!(event.client_request_token, "t-1");
        assert!(
            serde_json::from_str::<RotationEvent>(
                r#"{"SecretId":"x","ClientRequestToken":"t","Step":"dance"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn the_new_json_keeps_other_fields_and_replaces_the_secret() {
        let current = SecretString::from(
            r#"{"tenant_id":"t","client_id":"c","client_secret":"old","note":"keep"}"#.to_owned(),
        );
        let new = new_secret_json(
            &current,
            &SecretString::from("new-value".to_owned()),
            "k-2",
            time::macros::datetime!(2027-01-01 00:00 UTC),
        )
        .unwrap();
        let value: serde_json::Value = serde_json::from_str(new.expose_secret()).unwrap();
        assert_eq!(value["client_secret"], "new-value");
        assert_eq!(value["key_id"], "k-2");
        assert_eq!(value["expires_at"], "2027-01-01T00:00:00Z");
        assert_eq!(value["note"], "keep");
        let parsed = AppCredential::from_json("x", new.expose_secret()).unwrap();
        assert_eq!(parsed.key_id.as_deref(), Some("k-2"));
    }
}
