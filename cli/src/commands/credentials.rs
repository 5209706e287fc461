//! `mailroom credentials check`: when each credential in use expires, one line each; and
//! `mailroom credentials login` ([`super::login`]).

use std::sync::Arc;

use mailroom::adapters::alerts::PrintAlerter;
use mailroom::clock::SystemClock;
use mailroom::credentials::Credentials;
use mailroom::expiry::{CredentialReport, ExpiryChecker, Thresholds};
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
/// rotation: not refused (…)`.
fn line(credential: &CredentialReport, attention: bool) -> String {
    let mark = if credential.is_expired() || credential.days_left.is_none() {
        "✗"
    } else if attention {
        "!"
    } else {
        "✓"
    };
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
    let findings = if credential.findings.is_empty() {
        "none".to_owned()
    } else {
        credential.findings.join("; ")
    };
    let rotation = match credential.rotation_permitted {
        Some(true) => {
            "; rotation: not refused (Application.ReadWrite.OwnedBy not denied; a rotation proves it)"
        }
        Some(false) => "; rotation: not possible",
        None => "",
    };
    format!(
        "{mark} {}: {days}, {expiry} (source: {}); findings: {findings}{rotation}",
        credential.name,
        credential.source.as_str()
    )
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}
