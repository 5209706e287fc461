//! Credential expiry: for every credential the configured mailboxes use, when it expires, how
//! many days are left, and an alert at each configured threshold, once (issue 6).
//!
//! Where the expiry comes from, best first:
//! 1. **Graph**: the app's own registration (`passwordCredentials` / `keyCredentials`,
//!    docs/graph.md §9), matched to the credential in use: a secret by its stored `key_id`, else by
//!    its `hint` (the first three characters); a certificate by its stored `key_id`, else by its
//!    thumbprint (`customKeyIdentifier`). Needs Application.Read.All or
//!    Application.ReadWrite.OwnedBy.
//! 2. **Stored**: the `expires_at` kept with the secret (a certificate's notAfter), with a finding
//!    that says why Graph could not tell.
//! 3. **Unknown**: a finding of its own, alerted once, because that is how outages start.
//!
//! Alerts are claimed in the state store before they are sent (`{expires_at}#{threshold}`,
//! `{expires_at}#expired`, `unknown`), so a re-run, a retried Lambda or two overlapping runs send
//! each one once; a failed send gives its claims back for the next run. A new expiry (a rotated
//! secret) has new keys, so its thresholds alert afresh.
//!
//! A delegated credential (a person signed in, docs/delegated.md) is checked for its sign-in
//! instead ([`delegated`]): the refresh token is redeemed (which also keeps the sign-in alive),
//! the scopes granted are compared with those configured, each configured mailbox is read with
//! the person's token, and the days since the last refresh are measured against Entra's
//! inactivity window, alerting once per threshold as for secrets. Its public client has no
//! secret to expire ([`ExpirySource::NoSecret`]); a confidential client's secret or certificate
//! is checked as any app credential's.
//!
//! Time comes from an injected [`Clock`]. Nothing here formats a secret value: findings and
//! alerts name the credential, the app and key ids, and are scrubbed of the secret (and of a
//! sign-in's refresh tokens) all the same.

use std::sync::Arc;

use secrecy::ExposeSecret;
use serde::Serialize;
use time::OffsetDateTime;

use crate::clock::Clock;
use crate::credentials::{AppCredential, ClientAuth, Credentials};
use crate::domain::alert::date;
pub use crate::domain::alert::{
    Access, Alert, AlertLevel, CredentialKind, ExpirySource, MailboxAccess, SignInStatus,
};
use crate::graph::{Application, GraphClient, GraphError, PasswordManagement};
use crate::ports::{AlertClaims, Alerter, MailboxConfigs, SecretError, StoreError};
use crate::redact::Redactor;

mod delegated;
pub use delegated::missing_scopes;

/// Why a list of alert thresholds was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidThresholds {
    #[error(
        "'{part}' is not a number of days from 1 to 3650 (write e.g. {})",
        Thresholds::DEFAULT
    )]
    NotADay { part: String },
    #[error("no thresholds given (write e.g. {})", Thresholds::DEFAULT)]
    Empty,
}

/// The days before expiry at which to alert, most distant first (e.g. 30, 14, 7, 3, 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thresholds(Vec<u32>);

impl Thresholds {
    pub const DEFAULT: &'static str = "30,14,7,3,1";

    /// Whole days, comma-separated, e.g. `30,14,7,3,1`, in any order.
    pub fn parse(raw: &str) -> Result<Self, InvalidThresholds> {
        let mut days = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.parse::<u32>() {
                Ok(n) if (1..=3650).contains(&n) => days.push(n),
                _ => {
                    return Err(InvalidThresholds::NotADay {
                        part: part.to_owned(),
                    });
                }
            }
        }
        days.sort_unstable_by_key(|d| std::cmp::Reverse(*d));
        days.dedup();
        if days.is_empty() {
            return Err(InvalidThresholds::Empty);
        }
        Ok(Self(days))
    }

    /// The thresholds, most distant first.
    pub fn days(&self) -> &[u32] {
        &self.0
    }

    /// The most distant threshold: a credential within it needs attention.
    pub fn first(&self) -> u32 {
        self.0.first().copied().unwrap_or(30)
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Self(vec![30, 14, 7, 3, 1])
    }
}

/// The check of one credential.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialReport {
    pub name: String,
    pub client_id: Option<String>,
    pub kind: Option<CredentialKind>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Whole days left, counting a started day; 0 or less once expired.
    pub days_left: Option<i64>,
    pub source: ExpirySource,
    /// What is wrong or could not be told, each with what to do.
    pub findings: Vec<String>,
    /// The thresholds alerted by this run (`30`, `expired`, `unknown`…).
    pub alerted: Vec<String>,
    /// Whether the app may rotate this client secret (Application.ReadWrite.OwnedBy), when
    /// probed ([`ExpiryChecker::probe_rotation`]): `false` when Graph refused the permission,
    /// `true` when it did not. Only a rotation proves it will work.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_permitted: Option<bool>,
    /// A delegated credential's sign-in: who signed in, the scopes granted, access to each
    /// configured mailbox, and the days since the last refresh against the inactivity window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delegated: Option<SignInStatus>,
}

impl CredentialReport {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            client_id: None,
            kind: None,
            expires_at: None,
            days_left: None,
            source: ExpirySource::Unknown,
            findings: Vec::new(),
            alerted: Vec::new(),
            rotation_permitted: None,
            delegated: None,
        }
    }

    /// Expired, or nobody can tell, or within the first (most distant) threshold; for a
    /// delegated credential, also a sign-in that does not work, lacks a scope or a mailbox, was
    /// not refreshed by this check, or came within the first threshold of its inactivity window.
    pub fn needs_attention(&self, thresholds: &Thresholds) -> bool {
        let secret = match (self.source, self.days_left) {
            (ExpirySource::NoSecret, _) => false,
            (_, None) => true,
            (_, Some(days)) => days <= i64::from(thresholds.first()),
        };
        secret
            || self
                .delegated
                .as_ref()
                .is_some_and(|s| delegated::needs_attention(s, thresholds))
    }

    /// The delegated credential's user must sign in again, a configured scope is not granted,
    /// or a configured mailbox is out of the user's reach: the import fails until someone acts.
    pub fn sign_in_failing(&self) -> bool {
        self.delegated.as_ref().is_some_and(delegated::failing)
    }

    pub fn is_expired(&self) -> bool {
        self.days_left.is_some_and(|days| days <= 0)
    }
}

/// One run of the check.
#[derive(Debug, Clone, Serialize)]
pub struct ExpiryReport {
    #[serde(with = "time::serde::rfc3339")]
    pub checked_at: OffsetDateTime,
    pub credentials: Vec<CredentialReport>,
}

/// Days from `now` until `expires_at`, counting a started day (a secret expiring in 29.5 days
/// has 30 left); 0 or less once it has expired.
pub fn days_left(expires_at: OffsetDateTime, now: OffsetDateTime) -> i64 {
    let seconds = (expires_at - now).whole_seconds();
    seconds.div_euclid(86_400) + i64::from(seconds.rem_euclid(86_400) > 0)
}

/// The CloudWatch embedded-metric-format line for one credential's days left: namespace
/// `Mailroom`, metric `SecretDaysLeft` (unit `Count`), at `at`, once per credential (dimension
/// `Credential`) and once without dimensions (an empty dimension set, which the EMF
/// specification allows): the template's alarm watches the minimum of that one across all
/// credentials. Printed to standard output in Lambda, CloudWatch Logs turns it into the metrics.
pub fn metric_line(credential: &str, days_left: i64, at: OffsetDateTime) -> String {
    let timestamp = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": "Mailroom",
                "Dimensions": [["Credential"], []],
                "Metrics": [{ "Name": "SecretDaysLeft", "Unit": "Count" }],
            }],
        },
        "Credential": credential,
        "SecretDaysLeft": days_left,
    })
    .to_string()
}

/// The expiry check over the configured mailboxes' credentials.
///
/// Its store access is typed down to what it uses: the configured mailboxes (which credentials
/// are in use) and the alert claims, so the type system proves what the secret-expiry function's
/// role needs ([`ExpiryChecker::IAM_ACTIONS`]). One store usually serves both.
pub struct ExpiryChecker {
    pub mailboxes: Arc<dyn MailboxConfigs>,
    pub alerts: Arc<dyn AlertClaims>,
    pub credentials: Arc<Credentials>,
    pub graph: GraphClient,
    /// Where alerts go; `None` checks and reports only, claiming nothing.
    pub alerter: Option<Arc<dyn Alerter>>,
    pub clock: Arc<dyn Clock>,
    pub thresholds: Thresholds,
    /// Also find out whether each client secret's app may rotate it (a `removePassword` probe
    /// that changes nothing); a finding says what to grant when it may not.
    pub probe_rotation: bool,
}

impl ExpiryChecker {
    /// The AWS actions the check's state store calls need (`list_mailboxes` and [`AlertClaims`] on DynamoDB: the
    /// mailbox list and alert claims are queries, a claim a conditional put, a release a
    /// delete). The template grants the secret-expiry role exactly these on the table, besides
    /// its credentials and alert channels.
    pub const IAM_ACTIONS: &[&str] = &["dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:Query"];

    /// The distinct credentials of the enabled mailboxes, sorted.
    pub async fn credential_names(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = self
            .mailboxes
            .list_mailboxes()
            .await?
            .into_iter()
            .filter(|m| m.enabled)
            .map(|m| m.credential)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Checks every credential in use. One credential's trouble is a finding in its entry; only
    /// a failure to list the mailboxes fails the run.
    pub async fn run(&self) -> Result<ExpiryReport, StoreError> {
        let checked_at = self.clock.now();
        let mut credentials = Vec::new();
        for name in self.credential_names().await? {
            credentials.push(self.check(&name).await);
        }
        Ok(ExpiryReport {
            checked_at,
            credentials,
        })
    }

    /// Checks one credential and sends the alert it is due, if any.
    pub async fn check(&self, name: &str) -> CredentialReport {
        let mut report = CredentialReport::new(name);
        let credential = match self.credentials.refresh(name).await {
            Ok(credential) => credential,
            Err(e) => {
                let transient = matches!(e, SecretError::Unavailable { .. });
                report.findings.push(e.to_string());
                if !transient {
                    self.alert(&mut report, None).await;
                }
                tracing::warn!(credential = name, error = %e, "credential cannot be read");
                return report;
            }
        };
        report.client_id = Some(credential.client_id.clone());
        report.kind = Some(CredentialKind::of(&credential));
        let mut redactor = Redactor::for_credential(&credential);
        if matches!(credential.secret, ClientAuth::Public) {
            report.source = ExpirySource::NoSecret;
        } else {
            // A confidential delegated client's own secret or certificate is checked as any app
            // credential's, with the client-credentials grant; its alert is about the secret.
            let app = AppCredential {
                delegated: None,
                ..credential.clone()
            };
            self.check_expiry(&mut report, &app).await;
        }
        if let Some(delegation) = &credential.delegated {
            let before = report.findings.len();
            for token in self
                .check_sign_in(&mut report, &credential, delegation)
                .await
            {
                redactor = redactor.with(token.expose_secret());
            }
            // The sign-in's alert carries the sign-in's findings only.
            let findings = report.findings[before..].to_vec();
            self.alert_sign_in(&mut report, &credential, findings, &redactor)
                .await;
        }
        report.findings.iter_mut().for_each(|f| redactor.scrub(f));
        if let Some(status) = &mut report.delegated {
            delegated::scrub(status, &redactor);
        }
        let sign_in = report.delegated.as_ref();
        tracing::info!(
            credential = name,
            days_left = report.days_left,
            source = report.source.as_str(),
            findings = report.findings.len(),
            alerted = ?report.alerted,
            sign_in_refreshed = sign_in.map(|s| s.refreshed),
            days_since_refresh = sign_in.and_then(|s| s.days_since_refresh),
            sign_in_required = sign_in.map(|s| s.sign_in_required.is_some()),
            "credential expiry checked"
        );
        report
    }

    /// The expiry of an app credential's client secret or certificate, and its alert.
    async fn check_expiry(&self, report: &mut CredentialReport, credential: &AppCredential) {
        let credential = credential.clone();
        match expiry_from_graph(&self.graph, &credential).await {
            Ok(found) => {
                if let Some(stored) = credential.expires_at
                    && (stored - found).abs() > time::Duration::DAY
                {
                    report.findings.push(format!(
                        "the expires_at stored with the credential ({}) differs from the app registration's ({}); the registration's is used: update the stored one",
                        date(stored),
                        date(found)
                    ));
                }
                report.expires_at = Some(found);
                report.source = ExpirySource::Graph;
            }
            Err(why) if why.secret_expired => {
                // Whatever was recorded, Entra says the secret no longer works.
                report.findings.push(why.reason);
                report.expires_at = credential.expires_at.filter(|at| *at <= self.clock.now());
                report.source = ExpirySource::TokenEndpoint;
                report.days_left = Some(0);
            }
            Err(why) => {
                report.findings.push(why.reason);
                if let Some(stored) = credential.expires_at {
                    report.expires_at = Some(stored);
                    report.source = ExpirySource::Stored;
                } else {
                    report.findings.push(
                        "expiry unknown: Graph cannot tell and no expires_at is stored with the credential; store expires_at and key_id with it, or grant the app Application.Read.All or Application.ReadWrite.OwnedBy".to_owned(),
                    );
                }
            }
        }
        if let Some(at) = report.expires_at
            && report.source != ExpirySource::TokenEndpoint
        {
            report.days_left = Some(days_left(at, self.clock.now()));
        }
        if self.probe_rotation && credential.client_secret().is_some() {
            match self
                .graph
                .app(credential.clone())
                .probe_password_management()
                .await
            {
                Ok(PasswordManagement::NotRefused { .. }) => {
                    report.rotation_permitted = Some(true);
                }
                Ok(PasswordManagement::Refused) => {
                    report.rotation_permitted = Some(false);
                    report.findings.push(format!(
                        "rotation is not possible: app {} may not manage its own client secrets; grant Application.ReadWrite.OwnedBy (admin consent) and add the app's service principal as an owner of its own app registration",
                        credential.client_id
                    ));
                }
                Err(e) => report
                    .findings
                    .push(format!("whether rotation is possible is unknown: {e}")),
            }
        }
        self.alert(report, Some(&credential)).await;
    }

    /// Claims the expiry alerts the report is due and sends one for the most urgent of those won.
    async fn alert(&self, report: &mut CredentialReport, credential: Option<&AppCredential>) {
        if self.alerter.is_none() {
            return;
        }
        let levels: Vec<AlertLevel> = match report.days_left {
            Some(days) => {
                let mut levels: Vec<AlertLevel> = self
                    .thresholds
                    .days()
                    .iter()
                    .filter(|t| days <= i64::from(**t))
                    .map(|t| AlertLevel::Threshold(*t))
                    .collect();
                if days <= 0 {
                    levels.push(AlertLevel::Expired);
                }
                levels
            }
            _ => vec![AlertLevel::Unknown],
        };
        let due = levels
            .into_iter()
            .map(|level| (level, level.key(report.expires_at)))
            .collect();
        let findings = report.findings.clone();
        let redactor = credential.map(Redactor::for_credential);
        self.claim_and_send(report, due, findings, redactor.as_ref(), credential, None)
            .await;
    }

    /// Claims each of the `due` alerts (level and claim key) not claimed before, then sends one
    /// alert, for the most urgent level won, with `findings` and the sign-in `sign_in` (scrubbed
    /// with `redactor`). A failed send gives its claims back for the next run.
    async fn claim_and_send(
        &self,
        report: &mut CredentialReport,
        due: Vec<(AlertLevel, String)>,
        findings: Vec<String>,
        redactor: Option<&Redactor>,
        credential: Option<&AppCredential>,
        sign_in: Option<SignInStatus>,
    ) {
        let Some(alerter) = &self.alerter else {
            return;
        };
        if due.is_empty() {
            return;
        }
        let name = report.name.clone();
        let claimed = match self.alerts.list_alerts(&name).await {
            Ok(claimed) => claimed,
            Err(e) => {
                report.findings.push(format!(
                    "no alert sent: the alert state cannot be read: {e}"
                ));
                return;
            }
        };
        let now = self.clock.now();
        let mut won = Vec::new();
        for (level, key) in due {
            if claimed.contains(&key) {
                continue;
            }
            match self.alerts.claim_alert(&name, &key, now).await {
                Ok(true) => won.push((level, key)),
                Ok(false) => {}
                Err(e) => {
                    report.findings.push(format!(
                        "alert {key} not claimed: {e}; it is tried again on the next run"
                    ));
                }
            }
        }
        let Some(level) = won.iter().map(|(l, _)| *l).max_by_key(|l| l.urgency()) else {
            return;
        };
        let mut alert = Alert {
            credential: name.clone(),
            client_id: report.client_id.clone(),
            tenant_id: credential.map(|c| c.tenant_id.clone()),
            kind: report.kind,
            level,
            expires_at: report.expires_at,
            days_left: report.days_left,
            source: report.source,
            findings,
            sign_in,
        };
        if let Some(redactor) = redactor {
            alert = scrub_alert(alert, redactor);
        }
        match alerter.send(&alert).await {
            Ok(()) => {
                report.alerted.extend(won.iter().map(|(l, _)| l.label()));
            }
            Err(e) => {
                for (_, key) in &won {
                    if let Err(release) = self.alerts.release_alert(&name, key).await {
                        tracing::warn!(credential = %name, key, error = %release, "alert claim not released");
                    }
                }
                report
                    .findings
                    .push(format!("{e}; the alert is sent again on the next run"));
            }
        }
    }
}

/// The expiry of the credential in use, from its app registration, or why it cannot be told.
/// When `credential` expires according to its app registration in Graph (needs
/// Application.Read.All or Application.ReadWrite.OwnedBy), or why Graph cannot tell: the
/// doctor's view of what [`ExpiryChecker::check`] finds.
pub async fn expiry_from_graph(
    graph: &GraphClient,
    credential: &AppCredential,
) -> Result<OffsetDateTime, ExpiryUnknown> {
    match graph.app(credential.clone()).application().await {
        Ok(application) => find_expiry(credential, &application),
        Err(e) => Err(ExpiryUnknown {
            reason: graph_cannot_tell(credential, &e),
            secret_expired: matches!(e, GraphError::ExpiredSecret { .. }),
        }),
    }
}

/// Why the app registration could not tell when a credential expires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ExpiryUnknown {
    /// What went wrong and what to do.
    pub reason: String,
    /// Entra refused the client secret because it has expired (AADSTS7000222): the date is
    /// unknown, the fact is not.
    pub secret_expired: bool,
}

impl From<String> for ExpiryUnknown {
    fn from(reason: String) -> Self {
        Self {
            reason,
            secret_expired: false,
        }
    }
}

fn find_expiry(
    credential: &AppCredential,
    application: &Application,
) -> Result<OffsetDateTime, ExpiryUnknown> {
    let app = &credential.client_id;
    let stored_key = credential.key_id.as_deref();
    match &credential.secret {
        ClientAuth::Public => Err(ExpiryUnknown::from(format!(
            "app {app} is a public client: it has no client secret or certificate to expire"
        ))),
        ClientAuth::Secret(secret) => {
            let passwords = &application.password_credentials;
            let found = if let Some(key_id) = stored_key {
                let found: Vec<_> = passwords
                    .iter()
                    .filter(|p| p.key_id.eq_ignore_ascii_case(key_id))
                    .collect();
                if found.is_empty() {
                    return Err(ExpiryUnknown::from(format!(
                        "app {app} has no client secret with the stored key_id {key_id}: the secret was deleted from the app, or key_id is wrong (Entra ID > App registrations > Certificates & secrets shows the Secret ID)"
                    )));
                }
                found
            } else {
                let hint: String = secret.expose_secret().chars().take(3).collect();
                let found: Vec<_> = passwords
                    .iter()
                    .filter(|p| p.hint.as_deref() == Some(hint.as_str()))
                    .collect();
                match found.len() {
                    0 => {
                        return Err(ExpiryUnknown::from(format!(
                            "no client secret of app {app} matches the one stored (by its hint): it was deleted from the app, or the stored value is not one of the app's secrets; store key_id with the secret"
                        )));
                    }
                    1 => found,
                    n => {
                        let ids: Vec<&str> = found.iter().map(|p| p.key_id.as_str()).collect();
                        return Err(ExpiryUnknown::from(format!(
                            "the client secret cannot be matched: {n} client secrets of app {app} begin alike (key ids {}); store key_id with the secret",
                            ids.join(", ")
                        )));
                    }
                }
            };
            found.first().and_then(|p| p.end_date_time).ok_or_else(|| {
                ExpiryUnknown::from(format!(
                    "app {app}'s client secret has no endDateTime in Graph"
                ))
            })
        }
        ClientAuth::Certificate(certificate) => {
            let thumbprint = certificate.thumbprint_sha1_hex();
            let keys = &application.key_credentials;
            let by_key_id =
                stored_key.and_then(|k| keys.iter().find(|c| c.key_id.eq_ignore_ascii_case(k)));
            let found = by_key_id.or_else(|| keys.iter().find(|c| c.has_thumbprint(&thumbprint)));
            match found {
                Some(key) => key.end_date_time.ok_or_else(|| {
                    ExpiryUnknown::from(format!(
                        "app {app}'s certificate has no endDateTime in Graph"
                    ))
                }),
                None => Err(ExpiryUnknown::from(format!(
                    "no certificate of app {app} has thumbprint {thumbprint}{}: upload the certificate in Entra ID > App registrations > Certificates & secrets > Certificates",
                    stored_key
                        .map(|k| format!(" or key_id {k}"))
                        .unwrap_or_default()
                ))),
            }
        }
    }
}

/// Why Graph could not tell the expiry, with what to do.
fn graph_cannot_tell(credential: &AppCredential, error: &GraphError) -> String {
    match error {
        GraphError::ExpiredSecret { .. } => error.to_string(),
        GraphError::ApplicationPermissionDenied { code, .. } => format!(
            "Graph cannot tell when it expires: app {} may not read its own registration (403 {code}); grant Application.Read.All or Application.ReadWrite.OwnedBy (application permission, admin consent)",
            credential.client_id
        ),
        other => format!("Graph cannot tell when it expires: {other}"),
    }
}

fn scrub_alert(mut alert: Alert, redactor: &Redactor) -> Alert {
    alert.findings.iter_mut().for_each(|f| redactor.scrub(f));
    if let Some(status) = &mut alert.sign_in {
        delegated::scrub(status, redactor);
    }
    alert
}

#[cfg(test)]
mod tests;
