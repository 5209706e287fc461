//! `mailroom serve`: the single-machine service — the engine on a schedule until stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::context::Context;

use super::import::import_once;

pub async fn run(context: &Context, every: Option<u64>) -> anyhow::Result<bool> {
    let interval = every
        .map(|minutes| Duration::from_secs(minutes * 60))
        .or_else(|| context.local.as_ref().map(|l| l.schedule))
        .unwrap_or(Duration::from_secs(
            crate::config::DEFAULT_SCHEDULE_MINUTES * 60,
        ));
    serve(context, interval).await
}

/// Runs now, then every `interval`, until Ctrl-C or SIGTERM. A signal during a run stops new
/// work; the messages in hand finish and cursors are saved before it exits.
pub async fn serve(context: &Context, interval: Duration) -> anyhow::Result<bool> {
    let stop = Arc::new(AtomicBool::new(false));
    let signal = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("stopping: finishing the messages in hand");
        signal.store(true, Ordering::SeqCst);
    });
    eprintln!(
        "serving: importing every {} minutes from {}; Ctrl-C stops",
        interval.as_secs() / 60,
        context.location
    );
    loop {
        let report = import_once(context, None, Some(stop.clone())).await?;
        if report.failed_mailboxes() > 0 {
            eprintln!("some mailboxes failed; they are retried on the next run (see above)");
        }
        let deadline = tokio::time::Instant::now() + interval;
        while tokio::time::Instant::now() < deadline {
            if stop.load(Ordering::SeqCst) {
                return Ok(true);
            }
            tokio::time::sleep(
                Duration::from_millis(200).min(deadline - tokio::time::Instant::now()),
            )
            .await;
        }
        if stop.load(Ordering::SeqCst) {
            return Ok(true);
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                tokio::signal::ctrl_c().await.ok();
            }
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.ok();
    }
}
