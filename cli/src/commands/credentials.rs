//! `mailroom credentials check`: when each credential in use expires, one line each; for a
//! delegated credential, its sign-in (who, scopes, mailboxes, days since the last refresh). And
//! `mailroom credentials login` ([`super::login`]).

use std::sync::Arc;

use mailroom::adapters::alerts::PrintAlerter;
use mailroom::clock::SystemClock;
use mailroom::credentials::Credentials;
use mailroom::expiry::{CredentialReport, ExpiryChecker, ExpirySource, SignInStatus, Thresholds};
use mailroom::graph::GraphClient;
use time::format_description::well_known::Rfc3339;

use crate::args::{Backend, CredentialsCommand, Global, LoginArgs};
use crate::context::Context;

pub async fn run(
    context: &Context,
    global: &Global,
    command: CredentialsCommand,
) -> anyhow::Result<bool> {
    match command {
        CredentialsCommand::Check { thresholds } => check(context, thresholds).await,
        CredentialsCommand::Login(args) => {
            let (name, options) = login_options(args);
            super::login::run(context, &global.data_dir, &name, options).await
        }
    }
}

/// `credentials login` with `--backend aws`, run without a context (it needs no table).
pub async fn login_aws(args: LoginArgs) -> anyhow::Result<bool> {
    let (name, options) = login_options(args);
    super::login::run_aws(&name, options).await
}

/// The credential and the options of a `credentials login`.
fn login_options(args: LoginArgs) -> (String, super::login::Options) {
    let options = super::login::Options {
        device_code: args.device_code,
        open_browser: !args.no_browser,
        port: args.port,
        login_hint: args.login_hint,
        timeout: std::time::Duration::from_secs(args.timeout),
    };
    (args.name, options)
}

/// Checks every credential in use and prints one line each; returns whether all are fine.
pub async fn check(context: &Context, thresholds: Thresholds) -> anyhow::Result<bool> {
    let checker = ExpiryChecker {
        mailboxes: context.state.clone(),
        alerts: context.state.clone(),
        credentials: Arc::new(Credentials::new(
            context.secrets.clone(),
            Credentials::DEFAULT_TTL,
        )),
        graph: GraphClient::new(context.graph.clone())?,
        // Locally the alerts are printed, once per threshold (claims in the local database).
        // Against the deployment, claiming here would take the alerts from its function.
        alerter: match context.backend {
            Backend::Local => Some(Arc::new(PrintAlerter)),
            Backend::Aws => None,
        },
        clock: Arc::new(SystemClock),
        thresholds: thresholds.clone(),
        probe_rotation: true,
    };
    let report = checker.run().await?;
    if report.credentials.is_empty() {
        println!("no credentials in use: no mailbox is configured and enabled");
        return Ok(true);
    }
    let mut fine = true;
    for credential in &report.credentials {
        let attention = credential.needs_attention(&thresholds);
        fine &= !attention;
        println!("{}", line(credential, attention));
    }
    Ok(fine)
}

/// `✓ contoso: 212 days left, expires 2027-06-30T00:00:00Z (source: graph); findings: none;
/// rotation: not refused (…)`; a delegated credential's line begins with its sign-in:
/// `✓ alice: delegated, signed in as alice@contoso.com; scopes granted: Mail.ReadWrite; last
/// refresh 3 days before this check (87 of 90 days left), refreshed now; mailboxes:
/// alice@contoso.com readable; public client: no secret to expire; findings: none`.
fn line(credential: &CredentialReport, attention: bool) -> String {
    let secret_failing = credential.source != ExpirySource::NoSecret
        && (credential.is_expired() || credential.days_left.is_none());
    let mark = if secret_failing || credential.sign_in_failing() {
        "✗"
    } else if attention {
        "!"
    } else {
        "✓"
    };
    let sign_in = credential
        .delegated
        .as_ref()
        .map(|status| format!("delegated, {}; ", sign_in(status)))
        .unwrap_or_default();
    if credential.source == ExpirySource::NoSecret {
        return format!(
            "{mark} {}: {sign_in}public client: no secret to expire; findings: {}",
            credential.name,
            findings(credential)
        );
    }
    let days = match credential.days_left {
        Some(0) => "expired".to_owned(),
        Some(days) if days < 0 => format!("expired {} ago", plural(-days, "day")),
        Some(days) => format!("{} left", plural(days, "day")),
        None => "days left unknown".to_owned(),
    };
    let expiry = match credential
        .expires_at
        .and_then(|at| at.format(&Rfc3339).ok())
    {
        Some(at) => format!("expires {at}"),
        // Entra refused the secret as expired; nobody recorded when.
        None if credential.is_expired() => "expiry date not recorded".to_owned(),
        None => "expires unknown".to_owned(),
    };
    let findings = findings(credential);
    let rotation = match credential.rotation_permitted {
        Some(true) => {
            "; rotation: not refused (Application.ReadWrite.OwnedBy not denied; a rotation proves it)"
        }
        Some(false) => "; rotation: not possible",
        None => "",
    };
    format!(
        "{mark} {}: {sign_in}{days}, {expiry} (source: {}); findings: {findings}{rotation}",
        credential.name,
        credential.source.as_str()
    )
}

fn findings(credential: &CredentialReport) -> String {
    if credential.findings.is_empty() {
        "none".to_owned()
    } else {
        credential.findings.join("; ")
    }
}

/// `signed in as alice@contoso.com; scopes granted: Mail.ReadWrite; last refresh 3 days before
/// this check (87 of 90 days left), refreshed now; mailboxes: alice@contoso.com readable`.
fn sign_in(status: &SignInStatus) -> String {
    let who = match (&status.user, status.signed_in_at) {
        // Text from Entra: shown escaped, as mailbox text is (`mailroom::domain::shown`).
        (Some(user), _) => format!("signed in as {}", mailroom::domain::shown(user)),
        (None, Some(_)) => "signed in (Entra did not name the user)".to_owned(),
        (None, None) => "nobody signed in".to_owned(),
    };
    let scopes = if status.scopes_granted.is_empty() {
        "scopes granted: not listed".to_owned()
    } else {
        format!("scopes granted: {}", status.scopes_granted.join(", "))
    };
    let missing = if status.scopes_missing.is_empty() {
        String::new()
    } else {
        format!(" (missing: {})", status.scopes_missing.join(", "))
    };
    let window = status.inactivity_window_days;
    let left = status
        .inactivity_days_left
        .filter(|_| status.sign_in_required.is_none());
    let refresh = match (status.days_since_refresh, left) {
        (Some(since), None) => format!("last refresh {} before this check", plural(since, "day")),
        (Some(since), Some(left)) => format!(
            "last refresh {} before this check ({} of {window} days left)",
            plural(since, "day"),
            left.max(0)
        ),
        _ => "never refreshed".to_owned(),
    };
    let now = match (&status.sign_in_required, status.refreshed) {
        (Some(_), _) => "needs a new sign-in",
        (None, true) => "refreshed now",
        (None, false) => "not refreshed now",
    };
    let mailboxes = if status.mailboxes.is_empty() {
        "none configured".to_owned()
    } else {
        status
            .mailboxes
            .iter()
            .map(|m| format!("{} {}", m.mailbox, m.access.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("{who}; {scopes}{missing}; {refresh}, {now}; mailboxes: {mailboxes}")
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}
