//! `mailroom import`: "Import now", with progress and a summary.

use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

use mailroom::domain::shown;
use mailroom::engine::{MailboxStatus, RunReport};
use time::OffsetDateTime;

use crate::context::{Context, parse_address};
use crate::progress::Progress;

pub async fn run(context: &Context, mailbox: Option<&str>) -> anyhow::Result<bool> {
    let only = mailbox.map(parse_address).transpose()?;
    // Fail early, naming the configured mailboxes, if the one asked for is not among them.
    let configs = context.mailboxes(only.as_ref()).await?;
    if configs.is_empty() {
        println!("no mailboxes configured; add one with `mailroom mailbox add`");
        return Ok(true);
    }
    let report = import_once(context, only.as_ref(), None).await?;
    Ok(report.failed_mailboxes() == 0)
}

/// One run with progress, Ctrl-C stopping new work; prints the summary.
pub async fn import_once(
    context: &Context,
    only: Option<&mailroom::domain::MailboxAddress>,
    stop: Option<CancellationToken>,
) -> anyhow::Result<RunReport> {
    let progress = Arc::new(Progress::new());
    let stop = stop.unwrap_or_default();
    let engine = context.engine(progress.clone(), stop.clone())?;
    let started = Instant::now();
    let run = engine.run(OffsetDateTime::now_utc() + time::Duration::days(1), only);
    tokio::pin!(run);
    let report = tokio::select! {
        report = &mut run => report?,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("stopping: finishing the messages in hand (Ctrl-C again to abort)");
            stop.cancel();
            tokio::select! {
                report = &mut run => report?,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("aborted; the next run resumes where this one stopped"),
            }
        }
    };
    progress.finish();
    print_summary(&report, started.elapsed());
    Ok(report)
}

pub fn print_summary(report: &RunReport, elapsed: std::time::Duration) {
    println!(
        "{:<32} {:<28} {:>8} {:>8} {:>7}  result",
        "mailbox", "folder", "imported", "skipped", "failed"
    );
    for mailbox in &report.mailboxes {
        if mailbox.folders.is_empty() {
            let status = match mailbox.status {
                MailboxStatus::Busy => "busy (another runner holds it)",
                MailboxStatus::NeedsSignIn => "needs sign-in",
                _ => "failed",
            };
            println!(
                "{:<32} {:<28} {:>8} {:>8} {:>7}  {status}",
                mailbox.mailbox.as_str(),
                "-",
                0,
                0,
                0
            );
        }
        for folder in &mailbox.folders {
            let result = match (&folder.error, folder.failed, folder.stopped_at_deadline) {
                (Some(e), _, _) => format!("error: {e}"),
                (None, 0, true) => "stopped early; the next run continues".to_owned(),
                (None, 0, false) => "ok".to_owned(),
                (None, n, _) => format!("{n} failed; the next run retries them"),
            };
            println!(
                "{:<32} {:<28} {:>8} {:>8} {:>7}  {}",
                mailbox.mailbox.as_str(),
                shown(&folder.folder),
                folder.imported,
                folder.already_stored + folder.unchanged + folder.vanished,
                folder.failed,
                shown(&result),
            );
        }
        if let Some(error) = mailbox
            .error
            .as_ref()
            .filter(|_| !mailbox.folders.is_empty())
        {
            println!("  {}: {error}", mailbox.mailbox);
        }
        if let Some(events) = &mailbox.events {
            match &events.error {
                Some(error) => println!(
                    "  {}: {} event(s) published, {} not yet (the next run tries again): {error}",
                    mailbox.mailbox, events.published, events.unpublished
                ),
                None if events.published > 0 => {
                    println!(
                        "  {}: {} event(s) published",
                        mailbox.mailbox, events.published
                    )
                }
                None => {}
            }
        }
    }
    let bytes: u64 = report
        .mailboxes
        .iter()
        .flat_map(|m| &m.folders)
        .map(|f| f.bytes)
        .sum();
    println!(
        "imported {} messages ({:.1} MB) in {:.1} s",
        report.imported(),
        bytes as f64 / 1_000_000.0,
        elapsed.as_secs_f64()
    );
}
