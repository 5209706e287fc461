//! `mailroom doctor`: one line per check per mailbox folder, with the fix for what is wrong.

use mailroom::doctor::{
    Check, CheckStatus, DoctorOptions, check_discovery, check_mailbox, is_valid,
};
use mailroom::domain::{MailboxAddress, MailboxConfig};
use mailroom::graph::GraphClient;
use time::OffsetDateTime;

use crate::context::{Context, parse_address};

/// With `send_test` (`Some(to)`), also the outbound test: a message from each mailbox to `to`,
/// or to itself.
pub async fn run(
    context: &Context,
    mailbox: Option<&str>,
    send_test: Option<Option<&str>>,
) -> anyhow::Result<bool> {
    let only = mailbox.map(parse_address).transpose()?;
    let configs = context.mailboxes(only.as_ref()).await?;
    // Only the rules' own checks when no mailbox is named.
    let rules = match only {
        None => context.state.list_discover_rules().await?,
        Some(_) => Vec::new(),
    };
    if configs.is_empty() && rules.is_empty() {
        println!("no mailboxes configured; add one with `mailroom mailbox add`");
        return Ok(true);
    }
    let graph = GraphClient::new(context.graph.clone())?;
    let mut all_valid = true;
    for rule in &rules {
        println!("discovery rule {} — {rule}", rule.id());
        let check = match context.secrets.fetch(&rule.credential).await {
            Ok(credential) => check_discovery(&graph, &credential, rule).await,
            Err(e) => credential_missing(context, e.to_string()),
        };
        println!("  {}", check.to_string().replace('\n', "\n  "));
        all_valid &= check.status != CheckStatus::Fail;
    }
    for config in &configs {
        println!("{} — {} ({})", config.address, config.folder, config.action);
        let checks = checks_for(context, &graph, config).await;
        for check in &checks {
            println!("  {}", check.to_string().replace('\n', "\n  "));
        }
        all_valid &= is_valid(&checks);
    }
    if let Some(to) = send_test {
        let to = to.map(parse_address).transpose()?;
        let mut mailboxes: Vec<&MailboxAddress> = configs.iter().map(|c| &c.address).collect();
        mailboxes.dedup();
        for from in mailboxes {
            println!("{from} — outbound test");
            let check = super::send::outbound_test(context, from, to.as_ref()).await;
            println!("  {}", check.to_string().replace('\n', "\n  "));
            all_valid &= check.status != CheckStatus::Fail;
        }
    }
    Ok(all_valid)
}

/// The doctor's checks for one mailbox folder (also `mailbox add`'s validation).
pub async fn checks_for(
    context: &Context,
    graph: &GraphClient,
    config: &MailboxConfig,
) -> Vec<Check> {
    let options = DoctorOptions {
        scope_probe: scope_probe(context, &config.credential),
        now: OffsetDateTime::now_utc(),
        expiry_warning_days: 30,
    };
    match context.secrets.fetch(&config.credential).await {
        Ok(credential) => check_mailbox(graph, &credential, config, &options).await,
        Err(e) => vec![credential_missing(context, e.to_string())],
    }
}

/// The check for a credential that cannot be read.
fn credential_missing(context: &Context, detail: String) -> Check {
    Check {
        name: "credential",
        status: CheckStatus::Fail,
        detail,
        fix: Some(match context.backend {
            crate::args::Backend::Local => "declare it as [credential.NAME] in mailroom.toml, with the secret's Value in client_secret_env or client_secret_file, or a certificate in certificate_file and private_key_file".to_owned(),
            crate::args::Backend::Aws => "create the Secrets Manager secret (see README, \"The import function\")".to_owned(),
        }),
    }
}

fn scope_probe(context: &Context, credential: &str) -> Option<MailboxAddress> {
    context
        .local
        .as_ref()?
        .credentials
        .get(credential)?
        .scope_probe
        .clone()
}
