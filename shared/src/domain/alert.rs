//! Credential alerts: why one is sent, what it says. The expiry policy that decides when is
//! [`crate::expiry`]; the channels that deliver it are [`crate::ports::Alerter`]s.

use std::fmt::Write as _;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::credential::{AppCredential, ClientAuth};

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
    /// No secret of its own: a delegated credential's public client.
    PublicClient,
}

impl CredentialKind {
    pub(crate) fn of(credential: &AppCredential) -> Self {
        match credential.secret {
            ClientAuth::Secret(_) => Self::ClientSecret,
            ClientAuth::Certificate(_) => Self::Certificate,
            ClientAuth::Public => Self::PublicClient,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Self::ClientSecret => "client secret",
            Self::Certificate => "certificate",
            Self::PublicClient => "public client",
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
    pub(crate) fn urgency(self) -> i64 {
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

/// RFC 3339 in UTC, whole seconds (stable across Graph's and the stored forms of one time).
pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    let at = at
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(at);
    at.format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// `2026-12-01`.
pub(crate) fn date(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}",
        at.year(),
        u8::from(at.month()),
        at.day()
    )
}

pub(crate) fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}
