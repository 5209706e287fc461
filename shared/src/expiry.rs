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
//! Time comes from an injected [`Clock`]. Nothing here formats a secret value: findings and
//! alerts name the credential, the app and key ids, and are scrubbed of the secret all the same.

use std::fmt::Write as _;
use std::sync::Arc;

use secrecy::ExposeSecret;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::clock::Clock;
use crate::credentials::{AppCredential, ClientAuth, Credentials};
use crate::graph::{Application, GraphClient, GraphError, PasswordManagement};
use crate::ports::{Alerter, AsStateStore, SecretError, StoreError};

/// The days before expiry at which to alert, most distant first (e.g. 30, 14, 7, 3, 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thresholds(Vec<u32>);

impl Thresholds {
    pub const DEFAULT: &'static str = "30,14,7,3,1";

    /// Whole days, comma-separated, e.g. `30,14,7,3,1`, in any order.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut days = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.parse::<u32>() {
                Ok(n) if (1..=3650).contains(&n) => days.push(n),
                _ => {
                    return Err(format!(
                        "'{part}' is not a number of days from 1 to 3650 (write e.g. {})",
                        Self::DEFAULT
                    ));
                }
            }
        }
        days.sort_unstable_by_key(|d| std::cmp::Reverse(*d));
        days.dedup();
        if days.is_empty() {
            return Err(format!(
                "no thresholds given (write e.g. {})",
                Self::DEFAULT
            ));
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

/// Where a credential's expiry was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpirySource {
    /// The app's registration, read from Graph.
    Graph,
    /// The `expires_at` stored with the secret (a certificate's notAfter).
    Stored,
    /// Entra's token endpoint, which refused the client secret as expired (AADSTS7000222):
    /// it has expired, on a date nobody recorded.
    TokenEndpoint,
    /// Nowhere.
    Unknown,
}

impl ExpirySource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Graph => "graph",
            Self::Stored => "stored",
            Self::TokenEndpoint => "token_endpoint",
            Self::Unknown => "unknown",
        }
    }
}

/// What kind of credential it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    ClientSecret,
    Certificate,
}

impl CredentialKind {
    fn of(credential: &AppCredential) -> Self {
        match credential.secret {
            ClientAuth::Secret(_) => Self::ClientSecret,
            ClientAuth::Certificate(_) => Self::Certificate,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Self::ClientSecret => "client secret",
            Self::Certificate => "certificate",
        }
    }
}

/// Why an alert is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertLevel {
    /// Days left are at most this threshold.
    Threshold(u32),
    /// The credential has expired.
    Expired,
    /// Nobody can tell when it expires (or it cannot be read at all).
    Unknown,
}

impl AlertLevel {
    /// `30`, `expired`, `unknown`: the alert key's suffix and the report's word for it.
    pub fn label(self) -> String {
        match self {
            Self::Threshold(days) => days.to_string(),
            Self::Expired => "expired".to_owned(),
            Self::Unknown => "unknown".to_owned(),
        }
    }

    /// Higher is more urgent.
    fn urgency(self) -> i64 {
        match self {
            Self::Expired => i64::MAX,
            Self::Unknown => i64::MAX - 1,
            Self::Threshold(days) => -i64::from(days),
        }
    }

    /// The claim key: `{expires_at RFC 3339}#{label}`, or `unknown`.
    pub fn key(self, expires_at: Option<OffsetDateTime>) -> String {
        match (self, expires_at) {
            (Self::Unknown, _) => "unknown".to_owned(),
            // Known to have expired, on an unknown date (Entra refused the secret).
            (_, None) => self.label(),
            (_, Some(at)) => format!("{}#{}", rfc3339(at), self.label()),
        }
    }
}

/// One alert about one credential. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The credential's name (secret id, or local credential name).
    pub credential: String,
    pub client_id: Option<String>,
    pub tenant_id: Option<String>,
    pub kind: Option<CredentialKind>,
    pub level: AlertLevel,
    pub expires_at: Option<OffsetDateTime>,
    pub days_left: Option<i64>,
    pub source: ExpirySource,
    pub findings: Vec<String>,
}

impl Alert {
    fn noun(&self) -> &'static str {
        self.kind.map_or("credential", CredentialKind::noun)
    }

    fn app(&self) -> String {
        self.client_id
            .as_deref()
            .map(|id| format!(" of app {id}"))
            .unwrap_or_default()
    }

    /// One line, ASCII, at most 100 characters (an SNS subject's limit): a long credential name
    /// is shortened, never the days or the date.
    pub fn subject(&self) -> String {
        let date = self.expires_at.map(date).unwrap_or_default();
        let tail = match (self.level, self.days_left) {
            (AlertLevel::Expired, _) if date.is_empty() => " has expired".to_owned(),
            (AlertLevel::Expired, _) => format!(" has expired ({date})"),
            (AlertLevel::Unknown, _) => ": expiry unknown".to_owned(),
            (AlertLevel::Threshold(_), Some(days)) => {
                format!(" expires in {} ({date})", plural(days, "day"))
            }
            (AlertLevel::Threshold(days), None) => {
                format!(" expires within {}", plural(i64::from(days), "day"))
            }
        };
        let head = format!("Mailroom: {} '", self.noun());
        let ascii = |text: &str| -> String {
            text.chars()
                .map(|c| {
                    if c.is_ascii() && !c.is_ascii_control() {
                        c
                    } else {
                        '?'
                    }
                })
                .collect()
        };
        let mut name = ascii(&self.credential);
        let room = 100usize.saturating_sub(head.len() + tail.len() + 1);
        if name.len() > room {
            name.truncate(room.saturating_sub(3));
            name.push_str("...");
        }
        let subject = format!("{head}{name}'{tail}");
        subject.chars().take(100).collect()
    }

    /// What to do about it.
    pub fn action(&self) -> String {
        let name = &self.credential;
        match (self.level, self.kind) {
            (AlertLevel::Unknown, _) => format!(
                "make the expiry known: store expires_at and key_id with the credential '{name}' (Entra ID > App registrations > Certificates & secrets shows both), or grant the app Application.Read.All or Application.ReadWrite.OwnedBy so Mailroom reads it from Graph; fix any finding above first"
            ),
            (_, Some(CredentialKind::Certificate)) => format!(
                "create a new certificate and key, upload the certificate in Entra ID > App registrations{} > Certificates & secrets > Certificates, store both in the credential '{name}' (certificate_pem and private_key_pem), then delete the old certificate from the app",
                self.app()
            ),
            _ => format!(
                "rotate it: create a new client secret in Entra ID > App registrations{} > Certificates & secrets, store its Value, key_id and expires_at in the credential '{name}', then delete the old secret; or turn on rotation (Application.ReadWrite.OwnedBy) so Mailroom does it",
                self.app()
            ),
        }
    }

    /// The message body: plain text, one fact per line.
    pub fn text(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "{}", self.subject());
        let _ = writeln!(text);
        let _ = writeln!(text, "Credential: {} ({})", self.credential, self.noun());
        if let Some(client_id) = &self.client_id {
            let _ = writeln!(text, "App (client id): {client_id}");
        }
        if let Some(tenant_id) = &self.tenant_id {
            let _ = writeln!(text, "Tenant: {tenant_id}");
        }
        match self.expires_at {
            Some(at) => {
                let _ = writeln!(
                    text,
                    "Expires: {} (from {})",
                    rfc3339(at),
                    match self.source {
                        ExpirySource::Graph => "the app registration in Graph",
                        _ => "the expires_at stored with the credential",
                    }
                );
            }
            None => {
                let _ = writeln!(text, "Expires: unknown");
            }
        }
        if let Some(days) = self.days_left {
            let _ = writeln!(text, "Days left: {days}");
        }
        if !self.findings.is_empty() {
            let _ = writeln!(text, "Findings:");
            for finding in &self.findings {
                let _ = writeln!(text, "- {finding}");
            }
        }
        let _ = writeln!(text, "What to do: {}", self.action());
        text
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
        }
    }

    /// Expired, or nobody can tell, or within the first (most distant) threshold.
    pub fn needs_attention(&self, thresholds: &Thresholds) -> bool {
        match self.days_left {
            None => true,
            Some(days) => days <= i64::from(thresholds.first()),
        }
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

/// All the expiry check may ask of the state store: the configured mailboxes (to know which
/// credentials are in use) and the alert claims. Narrower than [`StateStore`] on purpose, so the
/// type system proves what the secret-expiry function's role needs ([`ExpiryChecker::IAM_ACTIONS`]).
#[async_trait::async_trait]
pub trait AlertState: Send + Sync {
    async fn list_mailboxes(&self) -> Result<Vec<crate::domain::MailboxConfig>, StoreError>;
    async fn list_alerts(&self, credential: &str) -> Result<Vec<String>, StoreError>;
    async fn claim_alert(
        &self,
        credential: &str,
        alert_key: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    async fn release_alert(&self, credential: &str, alert_key: &str) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
impl<T: AsStateStore> AlertState for T {
    async fn list_mailboxes(&self) -> Result<Vec<crate::domain::MailboxConfig>, StoreError> {
        self.state_store().list_mailboxes().await
    }
    async fn list_alerts(&self, credential: &str) -> Result<Vec<String>, StoreError> {
        self.state_store().list_alerts(credential).await
    }
    async fn claim_alert(
        &self,
        credential: &str,
        alert_key: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.state_store()
            .claim_alert(credential, alert_key, now)
            .await
    }
    async fn release_alert(&self, credential: &str, alert_key: &str) -> Result<(), StoreError> {
        self.state_store()
            .release_alert(credential, alert_key)
            .await
    }
}

/// The expiry check over the configured mailboxes' credentials.
pub struct ExpiryChecker {
    pub state: Arc<dyn AlertState>,
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
    /// The AWS actions the check's state store calls need ([`AlertState`] on DynamoDB: the
    /// mailbox list and alert claims are queries, a claim a conditional put, a release a
    /// delete). The template grants the secret-expiry role exactly these on the table, besides
    /// its credentials and alert channels.
    pub const IAM_ACTIONS: &[&str] = &["dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:Query"];

    /// The distinct credentials of the enabled mailboxes, sorted.
    pub async fn credential_names(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = self
            .state
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
        self.alert(&mut report, Some(&credential)).await;
        scrub(&mut report, &credential);
        tracing::info!(
            credential = name,
            days_left = report.days_left,
            source = report.source.as_str(),
            findings = report.findings.len(),
            alerted = ?report.alerted,
            "credential expiry checked"
        );
        report
    }

    /// Claims the alerts the report is due and sends one for the most urgent of those won.
    async fn alert(&self, report: &mut CredentialReport, credential: Option<&AppCredential>) {
        let Some(alerter) = &self.alerter else {
            return;
        };
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
        if levels.is_empty() {
            return;
        }
        let name = report.name.clone();
        let claimed = match self.state.list_alerts(&name).await {
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
        for level in levels {
            let key = level.key(report.expires_at);
            if claimed.contains(&key) {
                continue;
            }
            match self.state.claim_alert(&name, &key, now).await {
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
        let alert = Alert {
            credential: name.clone(),
            client_id: report.client_id.clone(),
            tenant_id: credential.map(|c| c.tenant_id.clone()),
            kind: report.kind,
            level,
            expires_at: report.expires_at,
            days_left: report.days_left,
            source: report.source,
            findings: report.findings.clone(),
        };
        let alert = match credential {
            Some(credential) => scrub_alert(alert, credential),
            None => alert,
        };
        match alerter.send(&alert).await {
            Ok(()) => {
                report.alerted = won.iter().map(|(l, _)| l.label()).collect();
            }
            Err(e) => {
                for (_, key) in &won {
                    if let Err(release) = self.state.release_alert(&name, key).await {
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
        Ok(application) => find_expiry(credential, &application).map_err(|reason| ExpiryUnknown {
            reason,
            secret_expired: false,
        }),
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

fn find_expiry(
    credential: &AppCredential,
    application: &Application,
) -> Result<OffsetDateTime, String> {
    let app = &credential.client_id;
    let stored_key = credential.key_id.as_deref();
    match &credential.secret {
        ClientAuth::Secret(secret) => {
            let passwords = &application.password_credentials;
            let found = if let Some(key_id) = stored_key {
                let found: Vec<_> = passwords
                    .iter()
                    .filter(|p| p.key_id.eq_ignore_ascii_case(key_id))
                    .collect();
                if found.is_empty() {
                    return Err(format!(
                        "app {app} has no client secret with the stored key_id {key_id}: the secret was deleted from the app, or key_id is wrong (Entra ID > App registrations > Certificates & secrets shows the Secret ID)"
                    ));
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
                        return Err(format!(
                            "no client secret of app {app} matches the one stored (by its hint): it was deleted from the app, or the stored value is not one of the app's secrets; store key_id with the secret"
                        ));
                    }
                    1 => found,
                    n => {
                        let ids: Vec<&str> = found.iter().map(|p| p.key_id.as_str()).collect();
                        return Err(format!(
                            "the client secret cannot be matched: {n} client secrets of app {app} begin alike (key ids {}); store key_id with the secret",
                            ids.join(", ")
                        ));
                    }
                }
            };
            found
                .first()
                .and_then(|p| p.end_date_time)
                .ok_or_else(|| format!("app {app}'s client secret has no endDateTime in Graph"))
        }
        ClientAuth::Certificate(certificate) => {
            let thumbprint = certificate.thumbprint_sha1_hex();
            let keys = &application.key_credentials;
            let by_key_id =
                stored_key.and_then(|k| keys.iter().find(|c| c.key_id.eq_ignore_ascii_case(k)));
            let found = by_key_id.or_else(|| keys.iter().find(|c| c.has_thumbprint(&thumbprint)));
            match found {
                Some(key) => key
                    .end_date_time
                    .ok_or_else(|| format!("app {app}'s certificate has no endDateTime in Graph")),
                None => Err(format!(
                    "no certificate of app {app} has thumbprint {thumbprint}{}: upload the certificate in Entra ID > App registrations > Certificates & secrets > Certificates",
                    stored_key
                        .map(|k| format!(" or key_id {k}"))
                        .unwrap_or_default()
                )),
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

/// Removes the secret's value from every finding (none should hold it; this makes sure).
fn scrub(report: &mut CredentialReport, credential: &AppCredential) {
    if let Some(secret) = credential.client_secret() {
        let value = secret.expose_secret();
        if !value.is_empty() {
            for finding in &mut report.findings {
                if finding.contains(value) {
                    *finding = finding.replace(value, "[REDACTED]");
                }
            }
        }
    }
}

fn scrub_alert(mut alert: Alert, credential: &AppCredential) -> Alert {
    if let Some(secret) = credential.client_secret() {
        let value = secret.expose_secret();
        if !value.is_empty() {
            for finding in &mut alert.findings {
                if finding.contains(value) {
                    *finding = finding.replace(value, "[REDACTED]");
                }
            }
        }
    }
    alert
}

/// RFC 3339 in UTC, whole seconds (stable across Graph's and the stored forms of one time).
fn rfc3339(at: OffsetDateTime) -> String {
    let at = at
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(at);
    at.format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// `2026-12-01`.
fn date(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}",
        at.year(),
        u8::from(at.month()),
        at.day()
    )
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests;
