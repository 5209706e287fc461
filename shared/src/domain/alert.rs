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
    /// Nothing to expire: a delegated credential's public client has no secret or certificate.
    NoSecret,
}

impl ExpirySource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Graph => "graph",
            Self::Stored => "stored",
            Self::TokenEndpoint => "token_endpoint",
            Self::Unknown => "unknown",
            Self::NoSecret => "no_secret",
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
    /// A delegated credential's user must sign in again (or has never signed in).
    SignInRequired,
    /// A delegated credential's sign-in had at most this many days left of Entra's inactivity
    /// window when the check began: nothing had refreshed it for that long.
    Inactive(u32),
}

impl AlertLevel {
    /// `30`, `expired`, `unknown`: the alert key's suffix and the report's word for it.
    pub fn label(self) -> String {
        match self {
            Self::Threshold(days) => days.to_string(),
            Self::Expired => "expired".to_owned(),
            Self::Unknown => "unknown".to_owned(),
            Self::SignInRequired => "sign_in_required".to_owned(),
            Self::Inactive(days) => format!("inactive_{days}"),
        }
    }

    /// Higher is more urgent.
    pub(crate) fn urgency(self) -> i64 {
        match self {
            Self::Expired | Self::SignInRequired => i64::MAX,
            Self::Unknown => i64::MAX - 1,
            Self::Threshold(days) | Self::Inactive(days) => -i64::from(days),
        }
    }

    /// Whether the alert is about a delegated credential's sign-in rather than a secret's expiry.
    pub fn is_sign_in(self) -> bool {
        matches!(self, Self::SignInRequired | Self::Inactive(_))
    }

    /// The claim key of an expiry alert: `{expires_at RFC 3339}#{label}`, or `unknown`. A
    /// sign-in's alerts are keyed by the sign-in's own times instead (`crate::expiry`).
    pub fn key(self, expires_at: Option<OffsetDateTime>) -> String {
        match (self, expires_at) {
            (Self::Unknown | Self::SignInRequired | Self::Inactive(_), _) => self.label(),
            // Known to have expired, on an unknown date (Entra refused the secret).
            (_, None) => self.label(),
            (_, Some(at)) => format!("{}#{}", rfc3339(at), self.label()),
        }
    }
}

/// Whether the signed-in user could read a configured mailbox folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Graph answered the read.
    Readable,
    /// Graph refused it (403), or the mailbox or folder is not there for this user.
    Denied,
    /// Not checked (no token), or the read failed for another reason.
    Unknown,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Readable => "readable",
            Self::Denied => "denied",
            Self::Unknown => "unknown",
        }
    }
}

/// One configured mailbox folder of a delegated credential, read with the signed-in user's token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailboxAccess {
    pub mailbox: String,
    pub folder: String,
    pub access: Access,
    /// What went wrong and what to do; absent when readable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A delegated credential's sign-in, as the credential check found it (docs/delegated.md, "The
/// credential check"). Holds no token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignInStatus {
    /// Who signed in (the ID token's `preferred_username`), if Entra named them.
    pub user: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub signed_in_at: Option<OffsetDateTime>,
    /// The Graph scopes the credential asks for.
    pub scopes_configured: Vec<String>,
    /// The scopes Entra granted, as its last token answer listed them.
    pub scopes_granted: Vec<String>,
    /// Configured Graph scopes that are not among the granted ones.
    pub scopes_missing: Vec<String>,
    /// The last successful redemption of the refresh token before this check.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_refresh_at: Option<OffsetDateTime>,
    /// Whole days from then until the check.
    pub days_since_refresh: Option<i64>,
    /// Entra's inactivity window: a refresh token unused this many days is refused.
    pub inactivity_window_days: i64,
    /// Days that were left of the window when the check began, counting a started day; 0 or
    /// less once it had passed.
    pub inactivity_days_left: Option<i64>,
    /// This check redeemed the refresh token and stored its successor: the window starts again.
    pub refreshed: bool,
    /// When the sign-in lapses unless something refreshes it before; absent when Entra already
    /// refuses it.
    #[serde(with = "time::serde::rfc3339::option")]
    pub lapses_at: Option<OffsetDateTime>,
    /// Why the user must sign in again, when they must.
    pub sign_in_required: Option<String>,
    /// The enabled mailbox folders that use the credential, each read with the user's token.
    pub mailboxes: Vec<MailboxAccess>,
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
    /// A delegated credential's sign-in: what a sign-in alert is about.
    pub sign_in: Option<SignInStatus>,
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
        let (head, tail) = match (self.level, self.days_left) {
            (AlertLevel::SignInRequired, _) => (
                "Mailroom: credential '".to_owned(),
                " needs its user to sign in again".to_owned(),
            ),
            (AlertLevel::Inactive(_), _) => {
                ("Mailroom: sign-in '".to_owned(), self.inactive_tail())
            }
            (AlertLevel::Expired, _) if date.is_empty() => (self.head(), " has expired".to_owned()),
            (AlertLevel::Expired, _) => (self.head(), format!(" has expired ({date})")),
            (AlertLevel::Unknown, _) => (self.head(), ": expiry unknown".to_owned()),
            (AlertLevel::Threshold(_), Some(days)) => (
                self.head(),
                format!(" expires in {} ({date})", plural(days, "day")),
            ),
            (AlertLevel::Threshold(days), None) => (
                self.head(),
                format!(" expires within {}", plural(i64::from(days), "day")),
            ),
        };
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

    fn head(&self) -> String {
        format!("Mailroom: {} '", self.noun())
    }

    /// `' not refreshed for 62 days (28 days left)`, or what this check's refresh changed.
    fn inactive_tail(&self) -> String {
        let status = self.sign_in.as_ref();
        let since = status.and_then(|s| s.days_since_refresh);
        let left = status.and_then(|s| s.inactivity_days_left);
        let refreshed = status.is_some_and(|s| s.refreshed);
        match (since, left) {
            (Some(since), _) if refreshed => format!(
                " went {} without a refresh (refreshed now)",
                plural(since, "day")
            ),
            (Some(since), Some(left)) if left <= 0 => format!(
                " not refreshed for {}: past the inactivity window",
                plural(since, "day")
            ),
            (Some(since), Some(left)) => format!(
                " not refreshed for {} ({} left)",
                plural(since, "day"),
                plural(left, "day")
            ),
            _ => " not refreshed for long".to_owned(),
        }
    }

    /// What to do about it.
    pub fn action(&self) -> String {
        let name = &self.credential;
        let sign_in_again = format!(
            "sign in again: mailroom credentials login {name} (with --backend aws for a deployed credential)"
        );
        match (self.level, self.kind) {
            (AlertLevel::SignInRequired, _) => format!(
                "{sign_in_again}; fix any finding above first (a scope the app registration lacks, consent an administrator must grant, a policy that blocks the user)"
            ),
            (AlertLevel::Inactive(_), _) if self.sign_in.as_ref().is_some_and(|s| s.refreshed) => {
                format!(
                    "nothing to do for the sign-in itself: this check refreshed it, so its {}-day window starts again; but find out why nothing else did (each import and the daily credential check refresh it: are they running?)",
                    self.sign_in
                        .as_ref()
                        .map_or(0, |s| s.inactivity_window_days)
                )
            }
            (AlertLevel::Inactive(_), _) => format!(
                "make the refresh succeed before the window ends (see the findings above; each import and the daily credential check redeem the refresh token); once it has lapsed, the user must {sign_in_again}"
            ),
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
        let noun = match (&self.sign_in, self.level.is_sign_in()) {
            (Some(_), _) | (None, true) => format!("delegated, {}", self.noun()),
            _ => self.noun().to_owned(),
        };
        let _ = writeln!(text, "Credential: {} ({noun})", self.credential);
        if let Some(client_id) = &self.client_id {
            let _ = writeln!(text, "App (client id): {client_id}");
        }
        if let Some(tenant_id) = &self.tenant_id {
            let _ = writeln!(text, "Tenant: {tenant_id}");
        }
        if self.level.is_sign_in() {
            if let Some(status) = &self.sign_in {
                sign_in_lines(&mut text, status);
            }
        } else {
            self.expiry_lines(&mut text);
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

    fn expiry_lines(&self, text: &mut String) {
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
    }
}

/// A sign-in's facts, one per line.
fn sign_in_lines(text: &mut String, status: &SignInStatus) {
    let user = status.user.as_deref().unwrap_or("(not named by Entra)");
    match status.signed_in_at {
        Some(at) => {
            let _ = writeln!(text, "Signed in as: {user}, on {}", rfc3339(at));
        }
        None => {
            let _ = writeln!(text, "Signed in as: nobody has signed in");
        }
    }
    if !status.scopes_granted.is_empty() {
        let _ = writeln!(text, "Scopes granted: {}", status.scopes_granted.join(", "));
    }
    if !status.scopes_missing.is_empty() {
        let _ = writeln!(
            text,
            "Scopes configured but not granted: {}",
            status.scopes_missing.join(", ")
        );
    }
    if let (Some(at), Some(days)) = (status.last_refresh_at, status.days_since_refresh) {
        let _ = writeln!(
            text,
            "Last refresh before this check: {} ({} before it)",
            rfc3339(at),
            plural(days, "day")
        );
    }
    let window = status.inactivity_window_days;
    let left = status
        .inactivity_days_left
        .filter(|_| status.sign_in_required.is_none());
    match (left, status.refreshed) {
        (Some(left), true) => {
            let _ = writeln!(
                text,
                "Inactivity window: {window} days; {} were left; this check refreshed the sign-in, so the window starts again",
                plural(left.max(0), "day")
            );
        }
        (Some(left), false) => {
            let _ = writeln!(
                text,
                "Inactivity window: {window} days; {} left; this check could not refresh the sign-in",
                plural(left.max(0), "day")
            );
        }
        (None, _) => {}
    }
    if let Some(at) = status.lapses_at {
        let _ = writeln!(text, "Lapses unless refreshed: {}", rfc3339(at));
    }
    if let Some(reason) = &status.sign_in_required {
        let _ = writeln!(text, "Sign-in required: {reason}");
    }
    for mailbox in &status.mailboxes {
        let _ = writeln!(
            text,
            "Mailbox {} ({}): {}",
            mailbox.mailbox,
            mailbox.folder,
            mailbox.access.as_str()
        );
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
