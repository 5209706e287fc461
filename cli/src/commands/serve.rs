//! `mailroom serve`: the single-machine service — the engine on a schedule until stopped, and
//! with `--listen`/`--public-url` the push path too: the webhook over HTTP, subscriptions kept
//! for the public URL, and sync jobs run from an in-process queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mailroom::adapters::local::local_queue;
use mailroom::domain::job::SyncJob;
use mailroom::engine::{Engine, JobOutcome, NoObserver, PushOptions, run_local_jobs};
use mailroom::expiry::Thresholds;
use mailroom::push::{PushUrls, Webhook};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::context::Context;

use super::import::import_once;

pub async fn run(
    context: &Context,
    every: Option<u64>,
    push: Option<(SocketAddr, String)>,
) -> anyhow::Result<bool> {
    let interval = every
        .map(|minutes| Duration::from_secs(minutes * 60))
        .or_else(|| context.local.as_ref().map(|l| l.schedule))
        .unwrap_or(Duration::from_secs(
            crate::config::DEFAULT_SCHEDULE_MINUTES * 60,
        ));
    let stop = stop_on_signal();
    let push = match push {
        Some((listen, public_url)) => {
            let listener = TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen} for Graph notifications"))?;
            Some(Push::start(context, listener, &public_url, stop.clone())?)
        }
        None => None,
    };
    serve(context, interval, push.as_ref(), stop).await
}

/// A token cancelled on Ctrl-C or SIGTERM.
pub fn stop_on_signal() -> CancellationToken {
    let stop = CancellationToken::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("stopping: finishing the messages in hand");
        signal.cancel();
    });
    stop
}

/// The push path, running: the webhook server and the job runner.
pub struct Push {
    pub engine: Arc<Engine>,
}

impl Push {
    /// Serves the webhook on `listener` and runs the jobs it queues, until `stop`.
    pub fn start(
        context: &Context,
        listener: TcpListener,
        public_url: &str,
        stop: CancellationToken,
    ) -> anyhow::Result<Push> {
        let urls = PushUrls::from_base(public_url).map_err(anyhow::Error::msg)?;
        let local_addr = listener.local_addr()?;
        let mut engine = context.engine(Arc::new(NoObserver), stop.clone())?;
        engine.options.push = Some(PushOptions::new(urls.clone()));
        let engine = Arc::new(engine);

        let (queue, jobs) = local_queue();
        let webhook = Webhook::new(context.state.clone(), Arc::new(queue.clone()));
        let server_stop = stop.clone();
        tokio::spawn(async move {
            let shutdown = async move { server_stop.cancelled().await };
            if let Err(e) = axum::serve(listener, mailroom::push::server::router(webhook))
                .with_graceful_shutdown(shutdown)
                .await
            {
                eprintln!("the webhook server stopped: {e}");
            }
        });
        tokio::spawn(run_local_jobs(
            engine.clone(),
            jobs,
            queue,
            stop,
            Duration::from_secs(5),
            print_job,
        ));
        eprintln!(
            "push: webhook listening on {local_addr}; Graph notifies {}",
            urls.notification_url
        );
        Ok(Push { engine })
    }

    /// Creates, renews and removes subscriptions; prints what changed.
    pub async fn maintain(&self) -> anyhow::Result<()> {
        let report = self.engine.maintain_subscriptions().await?;
        if report.created + report.renewed + report.removed > 0 || !report.errors.is_empty() {
            eprintln!(
                "push: subscriptions created {}, renewed {}, removed {}, unchanged {}",
                report.created, report.renewed, report.removed, report.unchanged
            );
        }
        for error in &report.errors {
            eprintln!("push: not subscribed (the schedule still imports it): {error}");
        }
        Ok(())
    }
}

fn print_job(job: &SyncJob, outcome: &JobOutcome) {
    let what = format!("{} {} ({})", job.mailbox, job.folder, job.kind.as_str());
    match outcome {
        JobOutcome::Done { imported } => {
            eprintln!("push: {what}: {imported} message(s) stored")
        }
        JobOutcome::Skipped(why) => eprintln!("push: {what}: skipped: {why}"),
        JobOutcome::Busy(why) => eprintln!("push: {what}: busy, retrying shortly: {why}"),
        JobOutcome::Incomplete => eprintln!("push: {what}: more to do, continuing"),
        JobOutcome::Continued { imported } => {
            eprintln!("push: {what}: {imported} message(s) stored, more to do, continuing")
        }
        JobOutcome::Failed {
            error,
            retry_can_help: true,
        } => eprintln!("push: {what}: failed, retrying shortly: {error}"),
        JobOutcome::Failed { error, .. } => {
            eprintln!(
                "push: {what}: failed, and a retry will not help until this is fixed: {error}"
            )
        }
    }
}

const CREDENTIAL_CHECK_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Runs now, then every `interval`, until `stop` is cancelled (Ctrl-C or SIGTERM). A signal during a
/// run stops new work; the messages in hand finish and cursors are saved before it exits.
pub async fn serve(
    context: &Context,
    interval: Duration,
    push: Option<&Push>,
    stop: CancellationToken,
) -> anyhow::Result<bool> {
    eprintln!(
        "serving: importing every {} minutes from {}; Ctrl-C stops",
        interval.as_secs() / 60,
        context.location
    );
    // The credential check runs at start and then daily, as the secret-expiry function does in
    // AWS; locally its alerts are printed, once per threshold.
    let mut last_check: Option<tokio::time::Instant> = None;
    loop {
        if last_check.is_none_or(|at| at.elapsed() >= CREDENTIAL_CHECK_INTERVAL) {
            last_check = Some(tokio::time::Instant::now());
            match super::credentials::check(context, Thresholds::default()).await {
                Ok(true) => {}
                Ok(false) => eprintln!("a credential needs attention (see above)"),
                Err(e) => eprintln!("the credential check failed: {e:#}"),
            }
        }
        if let Some(local) = &context.local {
            // Daily by default ([settings] discover_hours), and at once for a new or changed
            // rule; a new user's mailbox is imported in the same run.
            if let Err(e) = super::discover::discover_due(context, local.discover_every).await {
                eprintln!("discovery failed (the import still runs): {e:#}");
            }
        }
        if let Some(push) = push {
            push.maintain().await?;
        }
        let report = import_once(context, None, Some(stop.clone())).await?;
        if report.failed_mailboxes() > 0 {
            eprintln!("some mailboxes failed; they are retried on the next run (see above)");
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(true),
            _ = tokio::time::sleep(interval) => {}
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
