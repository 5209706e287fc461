//! `mailroom serve`: the single-machine service, as the serverless deployment runs: on a schedule
//! one job per mailbox on an in-process queue, run by a pool of workers a time slice at a time;
//! with `--listen`/`--public-url` the push path too: the webhook over HTTP, subscriptions kept
//! for the public URL, and its sync jobs on the same queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mailroom::adapters::local::{LocalJobQueue, local_queue};
use mailroom::domain::job::{JobKind, SyncJob};
use mailroom::engine::{Engine, JobOutcome, NoObserver, PushOptions, run_local_jobs};
use mailroom::expiry::Thresholds;
use mailroom::ports::JobQueue;
use mailroom::push::{PushUrls, Webhook};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::context::Context;

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

/// The jobs, running: an in-process queue (the local stand-in for the SQS FIFO queue) and a pool
/// of `mailbox_parallelism` workers, as the import function's consumers are in AWS.
pub struct Jobs {
    pub engine: Arc<Engine>,
    pub queue: LocalJobQueue,
    runner: tokio::task::JoinHandle<()>,
}

impl Jobs {
    /// Starts the workers on `engine`; they stop at `stop`, after the job in hand.
    pub fn start(engine: Arc<Engine>, stop: CancellationToken) -> Jobs {
        let (queue, jobs) = local_queue();
        let workers = engine.options.mailbox_parallelism;
        let runner = tokio::spawn(run_local_jobs(
            engine.clone(),
            jobs,
            queue.clone(),
            stop,
            Duration::from_secs(5),
            workers,
            print_job,
        ));
        Jobs {
            engine,
            queue,
            runner,
        }
    }
}

/// The push path, running: the webhook server, and the jobs it queues.
pub struct Push {
    pub jobs: Jobs,
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
        let jobs = Jobs::start(Arc::new(engine), stop.clone());
        let webhook = Webhook::new(context.state.clone(), Arc::new(jobs.queue.clone()));
        let server_stop = stop;
        tokio::spawn(async move {
            let shutdown = async move { server_stop.cancelled().await };
            if let Err(e) = axum::serve(listener, mailroom::push::server::router(webhook))
                .with_graceful_shutdown(shutdown)
                .await
            {
                eprintln!("the webhook server stopped: {e}");
            }
        });
        eprintln!(
            "push: webhook listening on {local_addr}; Graph notifies {}",
            urls.notification_url
        );
        Ok(Push { jobs })
    }

    /// Creates, renews and removes subscriptions, here or (`queued`) as jobs for the workers;
    /// prints what changed.
    pub async fn maintain(&self, queued: bool) -> anyhow::Result<()> {
        let queue = queued.then_some(&self.jobs.queue as &dyn JobQueue);
        let report = self.jobs.engine.maintain_subscriptions(queue).await?;
        if report.created + report.renewed + report.removed > 0 {
            eprintln!(
                "push: subscriptions created {}, renewed {}, removed {}, unchanged {}",
                report.created, report.renewed, report.removed, report.unchanged
            );
        }
        if report.queued > 0 {
            eprintln!(
                "push: {} folder(s)' subscription upkeep queued",
                report.queued
            );
        }
        for error in &report.errors {
            eprintln!("push: not subscribed (the schedule still imports it): {error}");
        }
        Ok(())
    }
}

fn print_job(job: &SyncJob, outcome: &JobOutcome) {
    let what = match job.kind {
        JobKind::Mailbox => job.mailbox.to_string(),
        kind => format!("{} {} ({})", job.mailbox, job.folder, kind.as_str()),
    };
    match outcome {
        JobOutcome::Done { .. }
            if matches!(job.kind, JobKind::Subscription | JobKind::Resubscribe) =>
        {
            eprintln!("job: {what}: done")
        }
        JobOutcome::Done { imported } => eprintln!("job: {what}: {imported} message(s) stored"),
        JobOutcome::Skipped(why) => eprintln!("job: {what}: skipped: {why}"),
        JobOutcome::Busy(why) => eprintln!("job: {what}: busy, retrying shortly: {why}"),
        JobOutcome::Incomplete => eprintln!("job: {what}: more to do, continuing"),
        JobOutcome::Continued { imported } => {
            eprintln!("job: {what}: {imported} message(s) stored, more to do, continuing")
        }
        JobOutcome::Failed {
            error,
            retry_can_help: true,
        } => eprintln!("job: {what}: failed, retrying shortly: {error}"),
        JobOutcome::Failed { error, .. } => {
            eprintln!("job: {what}: failed, and a retry will not help until this is fixed: {error}")
        }
    }
}

const CREDENTIAL_CHECK_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// How often `serve` looks in its outbox directory.
const OUTBOX_INTERVAL: Duration = Duration::from_secs(10);

/// Queues every mailbox's job now, then every `interval`, until `stop` is cancelled (Ctrl-C or
/// SIGTERM); the workers run them a slice at a time, so one mailbox's backlog never holds up the
/// others. On a signal the workers finish the messages in hand and save cursors before it exits.
pub async fn serve(
    context: &Context,
    interval: Duration,
    push: Option<&Push>,
    stop: CancellationToken,
) -> anyhow::Result<bool> {
    let own;
    let jobs = match push {
        Some(push) => &push.jobs,
        None => {
            let engine = context.engine(Arc::new(NoObserver), stop.clone())?;
            own = Jobs::start(Arc::new(engine), stop.clone());
            &own
        }
    };
    eprintln!(
        "serving: importing every {} minutes from {}, {} mailboxes at a time; Ctrl-C stops",
        interval.as_secs() / 60,
        context.location,
        jobs.engine.options.mailbox_parallelism
    );
    let mut sender = None;
    if let Some(dir) = context.outbox_dir.clone() {
        eprintln!(
            "sending: the requests saved as *.json in {} are sent within {} seconds (docs/sending.md)",
            dir.display(),
            OUTBOX_INTERVAL.as_secs()
        );
        // Its own loop, so a request waits seconds, not a schedule's minutes.
        let (engine, stop) = (jobs.engine.clone(), stop.clone());
        sender = Some(tokio::spawn(async move {
            loop {
                // Each request prints its own line; a broken outbox directory stops nothing else.
                if let Err(e) = super::outbox::drain(&engine, &dir).await {
                    eprintln!("outbox: {e:#}");
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(OUTBOX_INTERVAL) => {}
                }
            }
        }));
    }
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
            // rule; a new user's mailbox is queued in the same tick.
            if let Err(e) = super::discover::discover_due(context, local.discover_every).await {
                eprintln!("discovery failed (the import still runs): {e:#}");
            }
        }
        if let Some(push) = push {
            push.maintain(true).await?;
        }
        let fan_out = jobs.engine.enqueue_mailboxes(&jobs.queue).await?;
        eprintln!("queued {} mailbox job(s)", fan_out.queued);
        for failed in &fan_out.failed {
            eprintln!("not queued (the next run queues it): {failed}");
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
    // The workers finish the job in hand (its messages stored, cursors saved), then stop.
    while !jobs.runner.is_finished() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And the outbox finishes the request in hand.
    if let Some(sender) = sender {
        sender.await.ok();
    }
    Ok(true)
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
