//! `mailroom status`: per mailbox folder, what is stored and where the import stands.

use mailroom::domain::{RecordState, shown};

use crate::context::Context;

pub async fn run(context: &Context) -> anyhow::Result<bool> {
    let configs = context.mailboxes(None).await?;
    if configs.is_empty() {
        println!("no mailboxes configured; add one with `mailroom mailbox add`");
        return Ok(true);
    }
    println!("state: {}", context.location);
    println!(
        "{:<32} {:<28} {:>7} {:>8} {:<20} {:<26} last run",
        "mailbox", "folder", "stored", "pending", "cursor", "last import"
    );
    for config in &configs {
        let records = context.state.list_records(&config.address).await?;
        // `folder = "*"` holds what the mailbox's folders configured on their own do not.
        let configured: Vec<&str> = configs
            .iter()
            .filter(|c| c.address == config.address && !c.is_every_folder())
            .map(|c| c.folder.as_str())
            .collect();
        let of_folder: Vec<_> = records
            .iter()
            .filter(|r| match config.is_every_folder() {
                true => !configured.iter().any(|c| c.eq_ignore_ascii_case(&r.folder)),
                false => r.folder == config.folder,
            })
            .collect();
        let pending = of_folder
            .iter()
            .filter(|r| r.state == RecordState::Stored)
            .count();
        let last_import = of_folder
            .iter()
            .map(|r| r.imported_at)
            .max()
            .map(|t| t.replace_nanosecond(0).unwrap_or(t).to_string())
            .unwrap_or_else(|| "never".into());
        let cursor = if config.is_every_folder() {
            "one per folder"
        } else if config.action.uses_delta() {
            match context.state.get_cursor(&config.key()).await? {
                Some(c) if c.next_link.is_some() => "mid-round (resumes)",
                Some(c) if c.delta_link.is_some() => "delta link saved",
                _ => "none (full sync next)",
            }
        } else {
            "folder is the queue"
        };
        let last_run = match context.state.last_run(&config.address).await? {
            Some(run) => format!(
                "{} {} ({} imported, {} failed){}",
                run.finished_at
                    .replace_nanosecond(0)
                    .unwrap_or(run.finished_at),
                run.status,
                run.imported,
                run.failed,
                run.error.map(|e| format!(": {e}")).unwrap_or_default()
            ),
            None => "never".into(),
        };
        let mailbox = match (&config.discovered_by, config.enabled) {
            (_, false) => format!("{} (disabled)", config.address),
            (Some(_), true) => format!("{} (discovered)", config.address),
            (None, true) => config.address.to_string(),
        };
        println!(
            "{:<32} {:<28} {:>7} {:>8} {:<20} {:<26} {}",
            mailbox,
            shown(&config.folder),
            of_folder.len(),
            pending,
            cursor,
            last_import,
            shown(&last_run),
        );
    }
    // Events not yet published (docs/events.md): the endpoint or bus was down at the last run.
    let mut mailboxes: Vec<_> = configs.iter().map(|c| &c.address).collect();
    mailboxes.dedup();
    for mailbox in mailboxes {
        let waiting = context.state.pending_events(mailbox).await?.len();
        if waiting > 0 {
            println!(
                "events {mailbox}: {waiting} waiting to be published (the next run tries again; see its log for why)"
            );
        }
    }
    for rule in context.state.list_discover_rules().await? {
        let id = rule.id();
        let last = match context.state.last_discovery_run(&id).await? {
            None => "never run".to_owned(),
            Some(run) => match run.error {
                Some(error) => format!("{} failed: {error}", run.at),
                None => format!(
                    "{}: {} archived, added {}, enabled {}, disabled {}",
                    run.at, run.archived, run.added, run.enabled, run.disabled
                ),
            },
        };
        println!("discovery {id}: {last}");
    }
    Ok(true)
}
