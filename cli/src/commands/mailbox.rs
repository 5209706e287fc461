//! `mailroom mailbox add|list|remove`: the watched mailbox folders, in mailroom.toml (local) or
//! in the deployment's DynamoDB table (`--backend aws`).

use anyhow::bail;
use mailroom::doctor::is_valid;
use mailroom::domain::{AfterImport, MailboxConfig};
use mailroom::graph::GraphClient;

use crate::args::{AddArgs, Backend, Global, MailboxCommand};
use crate::config;
use crate::context::{Context, parse_address};

use super::doctor::checks_for;

pub async fn run(
    context: &Context,
    global: &Global,
    command: MailboxCommand,
) -> anyhow::Result<bool> {
    match command {
        MailboxCommand::List => list(context).await,
        MailboxCommand::Add(args) => add(context, global, args).await,
        MailboxCommand::Remove { address, folder } => {
            remove(context, global, &address, folder.as_deref()).await
        }
    }
}

async fn list(context: &Context) -> anyhow::Result<bool> {
    let configs = context.mailboxes(None).await?;
    if configs.is_empty() {
        println!("no mailboxes configured; add one with `mailroom mailbox add`");
        return Ok(true);
    }
    println!(
        "{:<32} {:<28} {:<30} {:<16} {:<8} source",
        "mailbox", "folder", "action", "credential", "enabled"
    );
    for c in configs {
        println!(
            "{:<32} {:<28} {:<30} {:<16} {:<8} {}",
            c.address.as_str(),
            c.folder,
            c.action.to_string(),
            c.credential,
            if c.enabled { "yes" } else { "no" },
            source(&c)
        );
    }
    Ok(true)
}

async fn add(context: &Context, global: &Global, args: AddArgs) -> anyhow::Result<bool> {
    let config = MailboxConfig {
        address: parse_address(&args.address)?,
        folder: args.folder.trim().to_owned(),
        action: AfterImport::from_parts(&args.action, args.processed_folder.as_deref())?,
        credential: args.credential,
        enabled: !args.disabled,
        discovered_by: None,
    };
    if let Some(local) = &context.local {
        local.credential(&config.credential)?;
    }
    let existing = context.state.list_mailboxes().await?;
    if existing
        .iter()
        .any(|c| c.address == config.address && c.folder.eq_ignore_ascii_case(&config.folder))
    {
        bail!(
            "{} folder '{}' is already configured; remove it first with `mailroom mailbox remove {} --folder '{}'`",
            config.address,
            config.folder,
            config.address,
            config.folder
        );
    }
    if !args.no_validate {
        let graph = GraphClient::new(context.graph.clone())?;
        let checks = checks_for(context, &graph, &config).await;
        for check in &checks {
            println!("  {}", check.to_string().replace('\n', "\n  "));
        }
        if !is_valid(&checks) {
            eprintln!("not saved: fix the ✗ above (or pass --no-validate to save anyway)");
            return Ok(false);
        }
    }
    match global.backend {
        Backend::Local => config::append_mailbox(&global.config, &config)?,
        Backend::Aws => context.state.put_mailbox(&config).await?,
    }
    println!(
        "added {} {} ({}) to {}",
        config.address,
        config.folder,
        config.action,
        where_(context, global)
    );
    Ok(true)
}

async fn remove(
    context: &Context,
    global: &Global,
    address: &str,
    folder: Option<&str>,
) -> anyhow::Result<bool> {
    let address = parse_address(address)?;
    let configs = context.mailboxes(Some(&address)).await?;
    let targets: Vec<_> = configs
        .into_iter()
        .filter(|c| folder.is_none_or(|f| c.folder.eq_ignore_ascii_case(f.trim())))
        .collect();
    if targets.is_empty() {
        bail!(
            "{address} has no folder '{}' configured",
            folder.unwrap_or_default()
        );
    }
    if let Some(rule) = targets.iter().find_map(|t| t.discovered_by.as_deref()) {
        bail!(
            "{address} was discovered by rule {rule}, which would add it again: exclude it in the rule instead (exclude = [\"{address}\"]); its mail stays"
        );
    }
    match global.backend {
        Backend::Local => {
            config::remove_mailbox(&global.config, &address, folder)?;
        }
        Backend::Aws => {
            for target in &targets {
                context.state.remove_mailbox(&target.key()).await?;
            }
        }
    }
    for target in targets {
        println!(
            "removed {} {} from {}",
            target.address,
            target.folder,
            where_(context, global)
        );
    }
    Ok(true)
}

/// Where a folder's configuration comes from, for people.
pub fn source(config: &MailboxConfig) -> String {
    match &config.discovered_by {
        Some(rule) => format!("discovered ({rule})"),
        None => "configured".to_owned(),
    }
}

fn where_(context: &Context, global: &Global) -> String {
    match global.backend {
        Backend::Local => global.config.display().to_string(),
        Backend::Aws => context.location.clone(),
    }
}
