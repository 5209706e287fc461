//! `mailroom-bench`: Mailroom measured against Graph's limits in one run.
//!
//! `cargo run --release -p mailroom-bench` runs every section and prints a table, then writes
//! `target/bench/report.json` with the same figures; `--quick` runs each section small (a minute
//! or two: the test suite runs it once to prove the benchmark works). Figures are ratios to the
//! limits where there is one, so runs on noisy machines compare. Nothing here asserts a time.
#![allow(clippy::expect_used)]

mod coldstart;
mod fanout;
mod import;
mod memory;
mod push;
mod report;
mod soak;
mod webhook;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use graph_sandbox::NewMessage;
use mailroom::graph::RequestBudget;
use serde_json::json;

use crate::import::{Backend, LatencyModel, Mode, Scenario};
use crate::report::{Report, round2};

#[derive(Parser, Debug)]
#[command(name = "mailroom-bench", about, version)]
struct Args {
    /// Each section small: a run of a minute or two that proves the benchmark works.
    #[arg(long)]
    quick: bool,
    /// Graph's base latency per request, in milliseconds. Microsoft publishes no figure; 100 ms
    /// is what a small request from an AWS region typically takes, and keeps moto (one Python
    /// process) from being the bottleneck.
    #[arg(long, default_value_t = 100.0)]
    latency_ms: f64,
    /// Graph's added latency per KiB of MIME, in milliseconds.
    #[arg(long, default_value_t = 0.02)]
    per_kib_ms: f64,
    /// Each latency is scaled by a random factor in 1 ± this.
    #[arg(long, default_value_t = 0.2)]
    jitter: f64,
    /// The budget's time scale: 10,000 requests per 10 minutes becomes 10,000/S per 600/S
    /// seconds (the same rate, a shorter window). Default 120, or 300 with --quick.
    #[arg(long)]
    time_scale: Option<u32>,
    /// Only these sections (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
    /// Where the JSON report is written.
    #[arg(long, default_value = "target/bench/report.json")]
    out: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// The memory section's child process (run by the benchmark itself).
    #[command(hide = true)]
    MemoryChild(memory::ChildArgs),
    /// A seeded random run under Graph and AWS faults, crashes, lost and repeated
    /// notifications and secret rotations, ending with every message checked; the last line is
    /// `lost=0 duplicated=0 …` and the exit code is 1 if the invariant does not hold.
    Soak(soak::SoakArgs),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    /// Ceiling ratio, requests and AWS calls per message per mode; the naive baseline.
    Import,
    /// A backlog longer than one budget window: 429s after warm-up, paced and unpaced.
    Budget,
    /// 1, 4, 16 and 32 mailboxes in one process.
    Scaling,
    /// Tenant scale: 1,000 mailboxes x 50 messages worked by 1, 4 and 16 queue consumers; the
    /// time to queue one tick's jobs.
    Fanout,
    /// Message arrives -> record done, through the local webhook and through SQS on moto.
    Push,
    /// A burst of change notifications on the webhook: the rate held, answers against Graph's
    /// 3 seconds, jobs per folder.
    Webhook,
    /// Peak RSS importing one large message and many small ones; CPU per message.
    Memory,
    /// Each function's start-up against a hello-world lambda_runtime binary; binary sizes.
    Coldstart,
}

impl Args {
    fn runs(&self, section: Section) -> bool {
        self.only.is_empty() || self.only.contains(&section)
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match &args.command {
        Some(Command::MemoryChild(child)) => return runtime.block_on(memory::child(child.clone())),
        Some(Command::Soak(soak)) => {
            let summary = runtime.block_on(soak::run(soak))?;
            println!("{}", summary.line());
            if !summary.holds() {
                std::process::exit(1);
            }
            return Ok(());
        }
        None => {}
    }
    let report = runtime.block_on(run(&args))?;
    report.print_summary();
    report
        .write(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("\nreport: {}", args.out.display());
    Ok(())
}

async fn run(args: &Args) -> anyhow::Result<Report> {
    let mut report = Report::new(args.quick);
    let model = LatencyModel {
        base_ms: args.latency_ms,
        per_kib_ms: args.per_kib_ms,
        jitter: args.jitter,
    };
    report.parameter("latency", model);
    println!(
        "Graph sandbox: {} ms per request + {} ms per KiB of MIME, jitter ±{:.0}%; 4 requests in \
         flight per mailbox; {} cores",
        model.base_ms,
        model.per_kib_ms,
        model.jitter * 100.0,
        report.cores
    );
    if args.runs(Section::Import) {
        import_section(args, model, &mut report).await?;
    }
    if args.runs(Section::Budget) {
        budget_section(args, model, &mut report).await?;
    }
    if args.runs(Section::Scaling) {
        scaling_section(args, model, &mut report).await?;
    }
    if args.runs(Section::Fanout) {
        fanout_section(args, model, &mut report).await?;
    }
    if args.runs(Section::Push) {
        push_section(args, model, &mut report).await?;
    }
    if args.runs(Section::Webhook) {
        webhook_section(args, &mut report).await?;
    }
    if args.runs(Section::Memory) {
        memory_section(args, model, &mut report).await?;
    }
    if args.runs(Section::Coldstart) {
        coldstart_section(args, &mut report).await?;
    }
    Ok(report)
}

/// Each mode at 25 messages and at the large size; the naive importer on `move`.
async fn import_section(
    args: &Args,
    model: LatencyModel,
    report: &mut Report,
) -> anyhow::Result<()> {
    let large = if args.quick { 100 } else { 1000 };
    report.parameter("messages_per_mode", large);
    println!("\n== import: one mailbox, AWS adapters on moto ({large} and 25 messages per mode)");
    println!(
        "{:<10} {:>6} {:>8} {:>9} {:>8} {:>9} {:>8} {:>9}",
        "mode", "msgs", "seconds", "msg/s", "req/msg", "latency", "ceiling", "aws/msg"
    );
    let mut details = Vec::new();
    let mut pipelined_move = None;
    for mode in Mode::ALL {
        for messages in [25, large] {
            let run = import::run(&Scenario::new(mode, messages), &model).await?;
            let aws: f64 = run.aws_calls_per_message.values().sum();
            println!(
                "{:<10} {:>6} {:>8.2} {:>9.1} {:>8.3} {:>7.1}ms {:>8.2} {:>9.2}",
                mode.name(),
                run.messages,
                run.seconds,
                run.messages_per_second,
                run.requests_per_message,
                run.mean_latency_ms,
                run.ceiling_ratio,
                aws
            );
            if messages == large {
                report.figure(
                    &format!("ceiling_ratio_{}", mode.name()),
                    round2(run.ceiling_ratio),
                );
                report.figure(
                    &format!("requests_per_message_{}", mode.name()),
                    (run.requests_per_message * 1000.0).round() / 1000.0,
                );
                if mode == Mode::Move {
                    report.figure("aws_calls_per_message", &run.aws_calls_per_message);
                    pipelined_move = Some(run.messages_per_second);
                }
            } else {
                report.figure(
                    &format!("requests_per_message_{}_25", mode.name()),
                    (run.requests_per_message * 1000.0).round() / 1000.0,
                );
            }
            details.push(json!({"mode": mode.name(), "run": run}));
        }
    }

    let naive_messages = if args.quick { 50 } else { 200 };
    let naive = import::run(
        &Scenario {
            message_concurrency: 1,
            ..Scenario::new(Mode::Move, naive_messages)
        },
        &model,
    )
    .await?;
    println!(
        "{:<10} {:>6} {:>8.2} {:>9.1} {:>8.3} {:>7.1}ms {:>8.2}   (one message at a time)",
        "naive",
        naive.messages,
        naive.seconds,
        naive.messages_per_second,
        naive.requests_per_message,
        naive.mean_latency_ms,
        naive.ceiling_ratio,
    );
    if let Some(pipelined) = pipelined_move {
        report.figure(
            "speedup_vs_naive",
            round2(pipelined / naive.messages_per_second),
        );
    }
    details.push(json!({"mode": "naive (move, one message at a time)", "run": naive}));
    report.detail("import", details);
    Ok(())
}

/// A backlog of three budget windows at a scaled budget, paced and unpaced.
async fn budget_section(
    args: &Args,
    model: LatencyModel,
    report: &mut Report,
) -> anyhow::Result<()> {
    let scale = args
        .time_scale
        .unwrap_or(if args.quick { 300 } else { 120 });
    let real = RequestBudget::default();
    let budget = RequestBudget {
        requests: real.requests / scale,
        window: real.window / scale,
    };
    // Three windows' worth of requests at two per message (`move`).
    let messages = (budget.requests as usize * 3).div_ceil(2);
    report.parameter("time_scale", scale);
    report.parameter(
        "budget",
        json!({"requests": budget.requests, "window_seconds": budget.window.as_secs_f64()}),
    );
    println!(
        "\n== budget: {} requests per {:.1} s per mailbox (Graph's 10,000 per 10 minutes, time \
         scale {scale}); {messages} messages in move mode, three windows",
        budget.requests,
        budget.window.as_secs_f64()
    );
    let mut details = Vec::new();
    for paced in [true, false] {
        let scenario = Scenario {
            budget,
            paced,
            ..Scenario::new(Mode::Move, messages)
        };
        let run = import::run(&scenario, &model).await?;
        let label = if paced { "paced" } else { "unpaced" };
        println!(
            "{label:<10} {:>6} msgs in {:>6.2} s; ceiling ratio {:.2}; 429s {} ({} after the first window)",
            run.messages, run.seconds, run.ceiling_ratio, run.throttled, run.throttled_after_warmup
        );
        if paced {
            report.figure("ceiling_ratio_budget", round2(run.ceiling_ratio));
            report.figure("throttled_after_warmup", run.throttled_after_warmup);
        } else {
            report.figure("throttled_after_warmup_unpaced", run.throttled_after_warmup);
        }
        details.push(json!({"paced": paced, "run": run}));
    }
    report.detail("budget", details);
    Ok(())
}

/// Messages per second for 1, 4, 16 and 32 mailboxes in one process, on the local backend.
async fn scaling_section(
    args: &Args,
    model: LatencyModel,
    report: &mut Report,
) -> anyhow::Result<()> {
    let messages = if args.quick { 20 } else { 100 };
    report.parameter("scaling_messages_per_mailbox", messages);
    println!(
        "\n== scaling: {messages} messages per mailbox, local backend (SQLite and files), move"
    );
    let mut details = Vec::new();
    let mut single = None;
    for mailboxes in [1, 4, 16, 32] {
        let scenario = Scenario {
            backend: Backend::Local,
            mailboxes,
            ..Scenario::new(Mode::Move, messages)
        };
        let run = import::run(&scenario, &model).await?;
        let rate = run.messages_per_second;
        let single_rate = *single.get_or_insert(rate);
        let efficiency = rate / (single_rate * mailboxes as f64);
        println!(
            "{mailboxes:>3} mailboxes: {:>6} msgs in {:>6.2} s = {:>7.1} msg/s; {:.2} of linear; ceiling ratio {:.2}",
            run.messages, run.seconds, rate, efficiency, run.ceiling_ratio
        );
        if mailboxes == 32 {
            report.figure("scaling_efficiency_32", round2(efficiency));
        }
        details.push(json!({"mailboxes": mailboxes, "efficiency": efficiency, "run": run}));
    }
    report.detail("scaling", details);
    Ok(())
}

/// Tenant scale: throughput with 1, 4 and 16 consumers of mailbox jobs on one backlog, paced to
/// the (time-scaled) budget; and the time one tick takes to queue a job per mailbox on SQS.
async fn fanout_section(
    args: &Args,
    model: LatencyModel,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (mailboxes, messages, window) = if args.quick {
        (64, 20, Duration::from_secs(4))
    } else {
        (1000, 50, Duration::from_secs(30))
    };
    let scale = args
        .time_scale
        .unwrap_or(if args.quick { 300 } else { 120 });
    let real = RequestBudget::default();
    let budget = RequestBudget {
        requests: real.requests / scale,
        window: real.window / scale,
    };
    // Slices shorter than a mailbox's backlog takes, so runs see continuations.
    let slice = window / 12;
    report.parameter(
        "fanout",
        json!({"mailboxes": mailboxes, "messages_per_mailbox": messages,
               "window_seconds": window.as_secs_f64(), "slice_seconds": slice.as_secs_f64()}),
    );
    println!(
        "
== fanout: {mailboxes} mailboxes x {messages} messages (none), jobs on one queue, {:.1} s slices, budget {} requests per {:.1} s per mailbox; {:.0} s per consumer count",
        slice.as_secs_f64(),
        budget.requests,
        budget.window.as_secs_f64(),
        window.as_secs_f64()
    );
    let mut details = Vec::new();
    let mut single = None;
    let mut throttled_after_warmup = 0;
    for consumers in [1, 4, 16] {
        let run = fanout::consumers_run(
            mailboxes, messages, consumers, window, slice, budget, &model,
        )
        .await?;
        let single_rate = *single.get_or_insert(run.messages_per_second);
        let efficiency = run.messages_per_second / (single_rate * consumers as f64);
        println!(
            "{consumers:>3} consumers: {:>6} msgs in {:>5.1} s = {:>7.1} msg/s; {:.2} of linear; {} continuations; 429s {} ({} after warm-up)",
            run.messages,
            run.seconds,
            run.messages_per_second,
            efficiency,
            run.continuations,
            run.throttled,
            run.throttled_after_warmup
        );
        throttled_after_warmup += run.throttled_after_warmup;
        if consumers == 16 {
            report.figure("fanout_efficiency_16", round2(efficiency));
        }
        details.push(json!({"efficiency": efficiency, "run": run}));
    }
    report.figure("fanout_throttled_after_warmup", throttled_after_warmup);
    let tick_mailboxes = if args.quick { 100 } else { 1000 };
    let seconds = fanout::fan_out_seconds(tick_mailboxes, fanout::TickQueue::Accepting).await?;
    let on_moto = fanout::fan_out_seconds(tick_mailboxes, fanout::TickQueue::Moto).await?;
    println!(
        "one tick queues {tick_mailboxes} mailbox jobs in {seconds:.2} s (an SQS endpoint that \
         accepts at once; {on_moto:.2} s on moto, whose FIFO send slows with the queue's depth)"
    );
    report.parameter("fanout_tick_mailboxes", tick_mailboxes);
    report.figure("fanout_tick_seconds", round2(seconds));
    report.figure("fanout_tick_seconds_moto", round2(on_moto));
    let idle_mailboxes = if args.quick { 10 } else { 50 };
    let idle = fanout::idle_tick_calls(idle_mailboxes).await?;
    let total: f64 = idle.values().sum();
    println!("an idle tick makes {total:.2} AWS calls per mailbox: {idle:?}");
    report.figure("aws_calls_per_idle_mailbox_tick", &idle);
    details.push(json!({"tick_mailboxes": tick_mailboxes, "tick_seconds": seconds}));
    report.detail("fanout", details);
    Ok(())
}

/// One large message, then many small ones, each imported by a child process of its own.
async fn memory_section(
    args: &Args,
    model: LatencyModel,
    report: &mut Report,
) -> anyhow::Result<()> {
    let large_mb: u64 = if args.quick { 30 } else { 150 };
    let (small, small_kb) = (if args.quick { 200 } else { 1000 }, 50u64);
    report.parameter("large_message_mb", large_mb);
    report.parameter("small_messages", json!({"count": small, "kb": small_kb}));
    println!("\n== memory: a process of its own imports through the AWS adapters on moto (move)");
    let large = memory::measure(
        vec![NewMessage::generated(
            "Full disk image",
            large_mb * 1024 * 1024,
        )],
        &model,
    )
    .await?;
    println!(
        "one {large_mb} MB message: peak RSS {:.1} MB, {:.2} s, CPU {:.0} ms",
        large.peak_rss_mb, large.seconds, large.cpu_ms
    );
    let messages = (0..small)
        .map(|i| NewMessage::generated(&format!("Report {i}"), small_kb * 1024))
        .collect();
    let many = memory::measure(messages, &model).await?;
    let cpu_per_message = many.cpu_ms / many.imported.max(1) as f64;
    println!(
        "{small} messages of {small_kb} KB: peak RSS {:.1} MB, {:.2} s, CPU {:.2} ms per message",
        many.peak_rss_mb, many.seconds, cpu_per_message
    );
    // Under the names the report promises; with --quick the sizes are smaller (see parameters).
    report.figure("peak_rss_mb_150mb", round2(large.peak_rss_mb));
    report.figure("peak_rss_mb_1000x50kb", round2(many.peak_rss_mb));
    report.figure("cpu_ms_per_message", round2(cpu_per_message));
    report.detail("memory", json!({"large": large, "small": many}));
    Ok(())
}

/// Push latency through both paths; the report's headline is the worse of the two.
async fn push_section(args: &Args, model: LatencyModel, report: &mut Report) -> anyhow::Result<()> {
    let count = if args.quick { 40 } else { 200 };
    let interval = std::time::Duration::from_millis(200);
    report.parameter(
        "push",
        json!({"messages": count, "arrival_interval_ms": interval.as_millis()}),
    );
    println!(
        "\n== push: {count} messages arriving {} ms apart; arrival -> record done (move)",
        interval.as_millis()
    );
    let local = push::through_local(&model, count, interval).await?;
    let sqs = push::through_sqs(&model, count, interval).await?;
    for (path, l) in [("local webhook", &local), ("SQS on moto", &sqs)] {
        println!(
            "{path:<14} p50 {:>6.0} ms   p99 {:>6.0} ms   max {:>6.0} ms",
            l.p50_ms, l.p99_ms, l.max_ms
        );
    }
    report.figure("aws_calls_per_message_push", &sqs.aws_calls_per_message);
    report.figure("push_latency_p50_ms", local.p50_ms.max(sqs.p50_ms).round());
    report.figure("push_latency_p99_ms", local.p99_ms.max(sqs.p99_ms).round());
    report.detail("push", json!({"local": local, "sqs": sqs}));
    Ok(())
}

/// A burst of notifications on the webhook (10,000 over a minute; 2,000 over 10 s with --quick).
async fn webhook_section(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let (notifications, seconds) = if args.quick {
        (2_000, 10)
    } else {
        (10_000, 60)
    };
    let (folders, concurrency) = (200, 32);
    report.parameter(
        "webhook",
        json!({"notifications": notifications, "seconds": seconds, "folders": folders, "concurrency": concurrency}),
    );
    println!(
        "\n== webhook: {notifications} notifications over {seconds} s in batches of 1-40, {folders} folders, {concurrency} requests at a time (subscriptions in DynamoDB on moto; jobs to an accepting SQS endpoint, then a quarter of the burst to a FIFO queue on moto, checked)"
    );
    let duration = std::time::Duration::from_secs(seconds);
    // The webhook's own work, the queue accepting at once; then the jobs checked on moto's queue.
    let burst = webhook::burst(notifications, folders, duration, concurrency, false).await?;
    let checked = webhook::burst(notifications / 4, folders, duration, concurrency, true).await?;
    println!(
        "{:.0} notifications/s held; answers p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} over Graph's 3 s)",
        burst.rate_per_s, burst.p50_ms, burst.p99_ms, burst.max_ms, burst.over_budget
    );
    println!(
        "on moto's queue, {} notifications: {} jobs, none lost, at most {} per folder in {} deduplication windows; {:.0} notifications/s, p99 {:.0} ms (moto's pace)",
        checked.notifications,
        checked.jobs,
        checked.most_jobs_per_folder,
        checked.windows,
        checked.rate_per_s,
        checked.p99_ms
    );
    report.figure("webhook_rate_per_s", burst.rate_per_s.round());
    report.figure("webhook_latency_p99_ms", burst.p99_ms.round());
    report.figure("webhook_answers_over_3s", burst.over_budget);
    report.detail(
        "webhook",
        json!({"accepting_queue": burst, "moto_queue": checked}),
    );
    Ok(())
}

/// Init time of each function against the hello-world baseline, and binary sizes.
async fn coldstart_section(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let runs = if args.quick { 5 } else { 21 };
    println!(
        "\n== cold start: exec -> first invocation/next under a loopback Runtime API, median of {runs}"
    );
    let (binaries, built) = coldstart::binaries(args.quick)?;
    report.parameter("coldstart", json!({"runs": runs, "built": built}));
    println!("binaries: {built}");
    let starts = coldstart::measure(&binaries, runs).await?;
    for start in &starts {
        println!(
            "{:<24} {:>7.1} ms (min {:>6.1}) {:>5.2}x   {:>10} bytes",
            start.binary, start.init_ms, start.init_ms_min, start.ratio, start.size_bytes
        );
    }
    let worst = starts
        .iter()
        .filter(|s| s.binary != coldstart::BASELINE)
        .map(|s| s.ratio)
        .fold(0.0, f64::max);
    report.figure("init_ratio_max", round2(worst));
    report.detail("coldstart", starts);
    Ok(())
}
