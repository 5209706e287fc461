//! `mailroom discover [--dry-run]` and `mailroom discover add|list|remove`: the mailboxes of a
//! tenant found in its directory (`[[discover]]` rules), in mailroom.toml (local) or in the
//! deployment's DynamoDB table (`--backend aws`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use mailroom::domain::{MailboxConfig, shown};
use mailroom::engine::{DiscoveryReport, NoObserver, RuleReport};

use crate::args::{Backend, DiscoverArgs, DiscoverCommand, Global};
use crate::config::{self, RawDiscover};
use crate::context::Context;

/// Addresses listed per kind of change before "… and N more" (all of them with -v).
const LISTED: usize = 20;

pub async fn run(
    context: &Context,
    global: &Global,
    dry_run: bool,
    command: Option<DiscoverCommand>,
) -> anyhow::Result<bool> {
    match command {
        None => discover(context, global, dry_run).await,
        Some(DiscoverCommand::List) => list(context).await,
        Some(DiscoverCommand::Add(args)) => add(context, global, args).await,
        Some(DiscoverCommand::Remove { id }) => remove(context, global, &id).await,
    }
}

async fn discover(context: &Context, global: &Global, dry_run: bool) -> anyhow::Result<bool> {
    let engine = context.engine(Arc::new(NoObserver), Default::default())?;
    let report = engine.discover(dry_run).await?;
    if let Some(busy) = &report.busy {
        bail!("{busy}; try again when it has finished");
    }
    if report.rules.is_empty() && report.orphaned.is_empty() {
        println!(
            "no discovery rules; add one with `mailroom discover add` or a [[discover]] table in mailroom.toml"
        );
        return Ok(true);
    }
    print_report(&report, global.verbose > 0);
    Ok(report.failed() == 0)
}

/// `mailroom serve`'s discovery: the rules that are due, with a line for each that changed
/// something or failed.
pub async fn discover_due(context: &Context, every: Duration) -> anyhow::Result<()> {
    let engine = context.engine(Arc::new(NoObserver), Default::default())?;
    let report = engine.discover_due(every).await?;
    for RuleReport { rule, outcome } in &report.rules {
        match outcome {
            Ok(changes) if !changes.plan.is_empty() => eprintln!(
                "discovery {}: added {}, enabled {}, updated {}, disabled {} (stored mail stays)",
                rule.id(),
                changes.plan.add.len(),
                changes.plan.enable.len(),
                changes.plan.update.len(),
                changes.plan.disable.len()
            ),
            Ok(_) => {}
            Err(e) => eprintln!("discovery {}: failed, nothing changed: {e}", rule.id()),
        }
    }
    if !report.orphaned.is_empty() {
        eprintln!(
            "discovery: disabled {} mailbox folder(s) whose rule is gone (stored mail stays)",
            report.orphaned.len()
        );
    }
    Ok(())
}

fn print_report(report: &DiscoveryReport, all: bool) {
    let did = if report.dry_run { "would " } else { "" };
    for RuleReport { rule, outcome } in &report.rules {
        println!("rule {}: {rule}", rule.id());
        let changes = match outcome {
            Ok(changes) => changes,
            Err(e) => {
                println!("  ✗ {e}");
                println!("  nothing changed for this rule");
                continue;
            }
        };
        println!(
            "  {} mailbox(es) archived, {} directory user(s) skipped",
            changes.selection.mailboxes.len(),
            changes.selection.skipped.len()
        );
        if all {
            for (who, why) in &changes.selection.skipped {
                // Directory entries are the tenant's, not this operator's: shown escaped.
                println!("    skipped {}: {}", shown(who), shown(&why.to_string()));
            }
        }
        let plan = &changes.plan;
        print_configs(&format!("{did}add"), &plan.add, all);
        print_configs(&format!("{did}enable"), &plan.enable, all);
        print_configs(&format!("{did}update"), &plan.update, all);
        print_configs(
            &format!("{did}disable (gone from the directory or excluded; stored mail stays)"),
            &plan.disable,
            all,
        );
        print_configs(
            "left as configured (by hand or by another rule)",
            &changes.configured_otherwise,
            all,
        );
        println!("  {} unchanged", plan.unchanged);
    }
    print_configs(
        &format!("{did}disable (their rule is gone; stored mail stays)"),
        &report.orphaned,
        all,
    );
    if report.dry_run {
        println!("dry run: nothing changed; run `mailroom discover` to apply");
    }
}

fn print_configs(what: &str, configs: &[MailboxConfig], all: bool) {
    if configs.is_empty() {
        return;
    }
    let shown = if all { configs.len() } else { LISTED };
    let mut line: Vec<String> = configs
        .iter()
        .take(shown)
        .map(|c| c.address.to_string())
        .collect();
    if configs.len() > shown {
        line.push(format!(
            "… and {} more (-v lists all)",
            configs.len() - shown
        ));
    }
    println!("  {what} {}: {}", configs.len(), line.join(", "));
}

async fn list(context: &Context) -> anyhow::Result<bool> {
    let rules = context.state.list_discover_rules().await?;
    if rules.is_empty() {
        println!("no discovery rules; add one with `mailroom discover add`");
        return Ok(true);
    }
    let mailboxes = context.state.list_mailboxes().await?;
    for rule in rules {
        let id = rule.id();
        let found: Vec<_> = mailboxes
            .iter()
            .filter(|m| m.discovered_by.as_deref() == Some(id.as_str()))
            .collect();
        let enabled = found.iter().filter(|m| m.enabled).count();
        println!("{id}");
        println!("  {rule}");
        if !rule.exclude.is_empty() {
            println!("  exclude: {}", rule.exclude.join(", "));
        }
        if rule.shared_mailboxes {
            println!("  shared mailboxes included");
        }
        println!(
            "  mailboxes: {enabled} enabled, {} disabled",
            found.len() - enabled
        );
        match context.state.last_discovery_run(&id).await? {
            None => println!("  last run: never (the next discovery applies it)"),
            Some(run) => match &run.error {
                Some(error) => println!("  last run: {} failed: {error}", run.at),
                None => println!(
                    "  last run: {}: {} archived, {} skipped, added {}, enabled {}, disabled {}",
                    run.at, run.archived, run.skipped, run.added, run.enabled, run.disabled
                ),
            },
        }
    }
    Ok(true)
}

async fn add(context: &Context, global: &Global, args: DiscoverArgs) -> anyhow::Result<bool> {
    let rule = RawDiscover {
        credential: args.credential,
        users: args.all_users.then(|| "all".to_owned()),
        group: args.group,
        exclude: args.exclude,
        shared_mailboxes: args.shared_mailboxes,
        folder: args.folder,
        action: args.action,
        processed_folder: args.processed_folder,
    }
    .into_rule()?;
    if let Some(local) = &context.local {
        local.credential(&rule.credential)?;
    }
    let id = rule.id();
    if context
        .state
        .list_discover_rules()
        .await?
        .iter()
        .any(|r| r.id() == id)
    {
        bail!(
            "rule {id} exists already (same credential, users and folder); remove it first with `mailroom discover remove '{id}'`"
        );
    }
    match global.backend {
        Backend::Local => config::append_discover(&global.config, &rule)?,
        Backend::Aws => context.state.put_discover_rule(&rule).await?,
    }
    println!("added rule {id}: {rule}");
    println!(
        "see what it finds with `mailroom discover --dry-run`; `mailroom discover` applies it"
    );
    Ok(true)
}

async fn remove(context: &Context, global: &Global, id: &str) -> anyhow::Result<bool> {
    let rules = context.state.list_discover_rules().await?;
    if !rules.iter().any(|r| r.id() == id) {
        bail!(
            "no rule {id}; rules: {}",
            config::names_or(rules.iter().map(|r| r.id()), "none")
        );
    }
    match global.backend {
        Backend::Local => {
            config::remove_discover(&global.config, id)?;
        }
        Backend::Aws => {
            context.state.remove_discover_rule(id).await?;
        }
    }
    println!(
        "removed rule {id}; the next `mailroom discover` (or the daily discovery) disables its mailboxes, keeping their mail"
    );
    Ok(true)
}
