//! Peak memory and CPU of an import, measured in a process of its own: the benchmark runs itself
//! again as a child (`mailroom-bench memory-child`), which imports through the real AWS adapters
//! on moto, as the Lambda function does, from the sandbox in the parent. The child reports its
//! peak resident set (`VmHWM`) and the CPU time it used, so neither the sandbox nor moto is
//! counted.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use graph_sandbox::{DEFAULT_TENANT, Mailbox, NewMessage, World};
use mailroom::adapters::aws::{AwsClients, DynamoStateStore, S3BlobStore, SecretsManagerSource};
use mailroom::clock::SystemClock;
use mailroom::credentials::Credentials;
use mailroom::domain::AfterImport;
use mailroom::engine::{Engine, EngineOptions, NoObserver};
use mailroom::graph::GraphClient;
use mailroom_tests::moto::sdk_config_for;
use mailroom_tests::stack::Stack;
use serde::{Deserialize, Serialize};

use crate::import::{FOLDER, LatencyModel, PROCESSED, sandbox_graph_config};

const MAILBOX: &str = "large@contoso.com";

/// Where the child finds everything; the parent passes it on the command line.
#[derive(clap::Args, Debug, Clone)]
pub struct ChildArgs {
    #[arg(long)]
    graph_url: String,
    #[arg(long)]
    aws_endpoint: String,
    #[arg(long)]
    table: String,
    #[arg(long)]
    bucket: String,
}

/// What the child measured of itself.
#[derive(Debug, Serialize, Deserialize)]
pub struct Usage {
    pub imported: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Peak resident set of the whole process, in MiB.
    pub peak_rss_mb: f64,
    /// CPU time (user and system) spent importing, in milliseconds.
    pub cpu_ms: f64,
}

/// The child: one import run, then its usage as one JSON line on stdout.
pub async fn child(args: ChildArgs) -> anyhow::Result<()> {
    let clients = AwsClients::from_sdk_config(&sdk_config_for(&args.aws_endpoint), true);
    let engine = Engine {
        state: Arc::new(DynamoStateStore::new(clients.dynamodb, &args.table)),
        blobs: Arc::new(S3BlobStore::new(clients.s3, &args.bucket)),
        credentials: Arc::new(Credentials::new(
            Arc::new(SecretsManagerSource::new(clients.secrets)),
            Credentials::DEFAULT_TTL,
        )),
        graph: GraphClient::new(sandbox_graph_config(&args.graph_url))?,
        clock: Arc::new(SystemClock),
        observer: Arc::new(NoObserver),
        events: None,
        options: EngineOptions::default(),
        stop: Default::default(),
    };
    let cpu_before = cpu_ns()?;
    let started = Instant::now();
    let report = engine
        .run(
            time::OffsetDateTime::now_utc() + time::Duration::minutes(14),
            None,
        )
        .await?;
    let usage = Usage {
        imported: report.imported(),
        bytes: report
            .mailboxes
            .iter()
            .flat_map(|m| &m.folders)
            .map(|f| f.bytes)
            .sum(),
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_mb: peak_rss_kb()? / 1024.0,
        cpu_ms: (cpu_ns()? - cpu_before) / 1e6,
    };
    println!("{}", serde_json::to_string(&usage)?);
    Ok(())
}

/// `VmHWM` of `/proc/self/status`: the peak resident set, in KiB.
fn peak_rss_kb() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status (the memory section needs Linux)")
}

/// Time this process has spent on a CPU, in nanoseconds (`/proc/self/schedstat`, first field).
fn cpu_ns() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/schedstat")?;
    stat.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .context("unreadable /proc/self/schedstat (the memory section needs Linux)")
}

/// Imports `messages` into a fresh stack from a child process and returns what it used.
pub async fn measure(messages: Vec<NewMessage>, model: &LatencyModel) -> anyhow::Result<Usage> {
    let expected = messages.len() as u64;
    let mailbox = messages.into_iter().fold(
        Mailbox::new(MAILBOX).folder(FOLDER).folder(PROCESSED),
        |mailbox, m| mailbox.message(FOLDER, m),
    );
    let stack = Stack::start(World::default_test().mailbox(DEFAULT_TENANT, mailbox)).await;
    stack
        .configure(
            MAILBOX,
            FOLDER,
            AfterImport::Move {
                processed_folder: PROCESSED.into(),
            },
        )
        .await;
    model.apply(&stack.sandbox);
    let exe = std::env::current_exe().context("finding the benchmark's own binary")?;
    let mut command = Command::new(exe);
    command
        .arg("memory-child")
        .args(["--graph-url", &stack.sandbox.url()])
        .args(["--aws-endpoint", &stack.moto.endpoint()])
        .args(["--table", &stack.table])
        .args(["--bucket", &stack.bucket])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await?
        .context("running the memory child")?;
    if !output.status.success() {
        bail!("the memory child failed: {}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let usage: Usage = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .with_context(|| format!("the memory child's report: {stdout}"))?;
    if usage.imported != expected {
        bail!(
            "the memory child imported {} of {expected} messages",
            usage.imported
        );
    }
    Ok(usage)
}
