//! Import runs against the Graph sandbox, with the real AWS adapters on moto behind a proxy that
//! counts their calls: throughput as a ratio of Graph's ceiling, requests and AWS calls per
//! message, 429s under a backlog longer than one budget window, and scaling across mailboxes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use graph_sandbox::{DEFAULT_CLIENT_ID, DEFAULT_SECRET, DEFAULT_TENANT, Mailbox, Sandbox, World};
use mailroom::adapters::local::{
    DirBlobStore, FileSecretSource, LocalCredential, SecretRef, SqliteStateStore,
};
use mailroom::clock::SystemClock;
use mailroom::credentials::Credentials;
use mailroom::domain::{AfterImport, MailboxAddress, MailboxConfig};
use mailroom::engine::{Engine, EngineOptions, NoObserver, RunReport};
use mailroom::graph::{GraphClient, GraphConfig, RequestBudget};
use mailroom::ports::MailboxConfigs;
use mailroom_tests::awsproxy::AwsProxy;
use mailroom_tests::moto::Moto;
use mailroom_tests::stack::Stack;
use serde::Serialize;

pub const FOLDER: &str = "Inbox/Backup Reports";
pub const PROCESSED: &str = "Inbox/Processed";

/// Graph's latency as the sandbox plays it: a base per request, more per KiB of MIME, jitter.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LatencyModel {
    pub base_ms: f64,
    pub per_kib_ms: f64,
    pub jitter: f64,
}

impl LatencyModel {
    pub fn apply(&self, sandbox: &Sandbox) {
        sandbox.set_latency(Duration::from_secs_f64(self.base_ms / 1000.0));
        sandbox.set_latency_model(
            Duration::from_secs_f64(self.per_kib_ms / 1000.0),
            self.jitter,
        );
    }
}

/// What to do with each message after storing it: the three modes a user picks from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Move,
    MarkRead,
    None,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Move, Mode::MarkRead, Mode::None];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Move => "move",
            Mode::MarkRead => "mark_read",
            Mode::None => "none",
        }
    }

    fn action(self) -> AfterImport {
        match self {
            Mode::Move => AfterImport::Move {
                processed_folder: PROCESSED.into(),
            },
            Mode::MarkRead => AfterImport::MarkRead,
            Mode::None => AfterImport::None,
        }
    }
}

/// Where the engine stores: the AWS adapters on moto (through the counting proxy), or the local
/// backend (SQLite and files), which takes moto's single Python process out of the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Aws,
    Local,
}

/// One import run's set-up.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub backend: Backend,
    pub mode: Mode,
    pub mailboxes: usize,
    pub messages_per_mailbox: usize,
    /// Messages worked on at once per folder: 1 is the naive importer.
    pub message_concurrency: usize,
    /// The budget the sandbox enforces per app and mailbox.
    pub budget: RequestBudget,
    /// Whether the client paces itself to that budget.
    pub paced: bool,
}

impl Scenario {
    pub fn new(mode: Mode, messages_per_mailbox: usize) -> Self {
        Self {
            backend: Backend::Aws,
            mode,
            mailboxes: 1,
            messages_per_mailbox,
            message_concurrency: EngineOptions::default().message_concurrency,
            budget: RequestBudget::default(),
            paced: true,
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub messages: u64,
    pub seconds: f64,
    pub messages_per_second: f64,
    /// Graph requests to the mailboxes, from folder resolution to the last message.
    pub graph_requests: usize,
    pub requests_per_message: f64,
    /// Mean time the sandbox took per request (the latency model as it played out).
    pub mean_latency_ms: f64,
    /// Answered requests per second per mailbox ÷ the lower of 4 ÷ mean latency and the budget's rate
    /// (the budget counts once the run sends more than one budget's worth).
    pub ceiling_ratio: f64,
    /// 429s answered after the first budget window.
    pub throttled_after_warmup: usize,
    pub throttled: usize,
    /// AWS calls per message, by `service.Operation`.
    pub aws_calls_per_message: BTreeMap<String, f64>,
}

/// Calls by (service, operation) as calls per message by `service.Operation`.
pub fn per_message(calls: BTreeMap<(String, String), u64>, messages: u64) -> BTreeMap<String, f64> {
    calls
        .into_iter()
        .map(|((service, operation), n)| {
            let per = n as f64 / messages.max(1) as f64;
            (
                format!("{service}.{operation}"),
                (per * 1000.0).round() / 1000.0,
            )
        })
        .collect()
}

pub fn address(i: usize) -> String {
    format!("archive{i:03}@contoso.com")
}

/// The sandbox's world: `mailboxes` mailboxes with `messages` each in [`FOLDER`].
pub fn world(mailboxes: usize, messages: usize) -> World {
    (0..mailboxes).fold(World::default_test(), |world, i| {
        world.mailbox(
            DEFAULT_TENANT,
            Mailbox::new(&address(i))
                .folder(FOLDER)
                .folder(PROCESSED)
                .messages(FOLDER, messages),
        )
    })
}

/// The configuration of mailbox `i`, with `credential`.
fn mailbox_config(i: usize, mode: Mode, credential: &str) -> MailboxConfig {
    MailboxConfig {
        address: MailboxAddress::parse(&address(i)).expect("a valid address"),
        folder: FOLDER.to_owned(),
        action: mode.action(),
        credential: credential.to_owned(),
        enabled: true,
        discovered_by: None,
    }
}

/// An engine on the local backend in `dir`, as `mailroom import` builds it, for the sandbox's
/// default app.
pub async fn local_engine(
    dir: &std::path::Path,
    graph: GraphConfig,
    options: EngineOptions,
) -> anyhow::Result<(Engine, Arc<SqliteStateStore>)> {
    let state = Arc::new(SqliteStateStore::open(&dir.join("mailroom.db"))?);
    let credential = LocalCredential {
        delegated_scopes: None,
        tenant_id: DEFAULT_TENANT.to_owned(),
        client_id: DEFAULT_CLIENT_ID.to_owned(),
        secret: SecretRef::Env("SANDBOX_SECRET".to_owned()),
        key_id: None,
        expires_at: None,
    };
    let secrets = FileSecretSource::with_env([("sandbox".to_owned(), credential)].into(), |_| {
        Some(DEFAULT_SECRET.to_owned())
    });
    let engine = Engine {
        state: state.clone(),
        blobs: Arc::new(DirBlobStore::new(dir.join("messages"))),
        credentials: Arc::new(Credentials::new(
            Arc::new(secrets),
            Credentials::DEFAULT_TTL,
        )),
        graph: GraphClient::new(graph)?,
        clock: Arc::new(SystemClock),
        observer: Arc::new(NoObserver),
        events: None,
        options,
        stop: Default::default(),
    };
    Ok((engine, state))
}

/// A Graph configuration for the sandbox at `url` that retries the way tests do.
pub fn sandbox_graph_config(url: &str) -> GraphConfig {
    let url = url::Url::parse(url).expect("the sandbox's URL");
    let mut config = GraphConfig::new(url.clone(), url);
    config.retry.base = Duration::from_millis(20);
    config.retry.max_backoff = Duration::from_millis(500);
    config
}

/// The run's Graph client and engine settings.
fn settings(scenario: &Scenario, mut graph: GraphConfig) -> (GraphConfig, EngineOptions) {
    let budget = scenario.budget;
    graph.request_budget = scenario.paced.then_some(budget);
    graph.global_concurrency = graph
        .global_concurrency
        .max(graph.per_mailbox_concurrency * scenario.mailboxes);
    graph.retry.max_retries = 8;
    graph.retry.max_retry_after = budget.window + Duration::from_secs(1);
    let options = EngineOptions {
        message_concurrency: scenario.message_concurrency,
        mailbox_parallelism: scenario.mailboxes,
        ..EngineOptions::default()
    };
    (graph, options)
}

fn prepare(sandbox: &Sandbox, scenario: &Scenario, model: &LatencyModel) {
    model.apply(sandbox);
    let budget = scenario.budget;
    sandbox.set_request_budget(budget.requests, budget.window);
    // Graph's Retry-After for a concurrency 429 is about a second; the budget's says when the
    // window frees.
    sandbox.set_throttle_retry_after(1.0);
    sandbox.clear_requests();
}

pub async fn run(scenario: &Scenario, model: &LatencyModel) -> anyhow::Result<Run> {
    let world = world(scenario.mailboxes, scenario.messages_per_mailbox);
    let deadline = time::OffsetDateTime::now_utc() + time::Duration::minutes(30);
    match scenario.backend {
        Backend::Aws => {
            let proxy = AwsProxy::start(&Moto::shared().endpoint()).await;
            let stack = Stack::start(world).await.via(proxy.endpoint());
            for i in 0..scenario.mailboxes {
                stack
                    .state
                    .put_mailbox(&mailbox_config(i, scenario.mode, &stack.credential))
                    .await?;
            }
            let (graph, options) = settings(scenario, stack.graph_config());
            let engine = stack.engine_with_graph(Arc::new(NoObserver), options, graph);
            prepare(&stack.sandbox, scenario, model);
            proxy.reset();
            let started = Instant::now();
            let report = stack.run_with(engine).await;
            figures(scenario, &stack.sandbox, report, started, proxy.calls())
        }
        Backend::Local => {
            let sandbox = Sandbox::start(world).await?;
            let dir = tempfile::tempdir()?;
            let (graph, options) = settings(scenario, sandbox_graph_config(&sandbox.url()));
            let (engine, state) = local_engine(dir.path(), graph, options).await?;
            for i in 0..scenario.mailboxes {
                state
                    .put_mailbox(&mailbox_config(i, scenario.mode, "sandbox"))
                    .await?;
            }
            prepare(&sandbox, scenario, model);
            let started = Instant::now();
            let report = engine.run(deadline, None).await?;
            figures(scenario, &sandbox, report, started, BTreeMap::new())
        }
    }
}

fn figures(
    scenario: &Scenario,
    sandbox: &Sandbox,
    report: RunReport,
    started: Instant,
    aws_calls: BTreeMap<(String, String), u64>,
) -> anyhow::Result<Run> {
    let seconds = started.elapsed().as_secs_f64();
    let messages = report.imported();
    let expected = (scenario.mailboxes * scenario.messages_per_mailbox) as u64;
    if messages != expected {
        // A figure over an import that lost messages would mean nothing.
        anyhow::bail!("imported {messages} of {expected} messages: {report:#?}");
    }
    let budget = scenario.budget;
    let requests: Vec<_> = sandbox
        .requests()
        .into_iter()
        .filter(|r| r.mailbox.is_some())
        .collect();
    let first = requests.iter().map(|r| r.started).min();
    let last = requests.iter().map(|r| r.finished).max();
    let window = match (first, last) {
        (Some(first), Some(last)) => (last - first).as_secs_f64(),
        _ => 0.0,
    };
    let mean_latency = requests
        .iter()
        .map(|r| (r.finished - r.started).as_secs_f64())
        .sum::<f64>()
        / requests.len().max(1) as f64;
    let throttled: Vec<_> = requests.iter().filter(|r| r.status == 429).collect();
    // Answered requests: a 429 did no work.
    let answered = requests.len() - throttled.len();
    let per_mailbox_rate = answered as f64 / window.max(1e-9) / scenario.mailboxes as f64;
    // The budget limits a run only once it sends more than one budget's worth; then its rate
    // is the ceiling if that is lower than what 4 requests in flight allow.
    let per_mailbox_requests = requests.len() as f64 / scenario.mailboxes as f64;
    let budget_rate = if per_mailbox_requests > f64::from(budget.requests) {
        f64::from(budget.requests) / budget.window.as_secs_f64()
    } else {
        f64::INFINITY
    };
    let ceiling = (4.0 / mean_latency.max(1e-9)).min(budget_rate);
    let warm = first.map(|f| f + budget.window);
    let throttled_after_warmup = throttled
        .iter()
        .filter(|r| warm.is_some_and(|w| r.started >= w))
        .count();

    let per_message_of = |n: u64| n as f64 / messages.max(1) as f64;
    let aws_calls_per_message = per_message(aws_calls, messages);
    Ok(Run {
        messages,
        seconds,
        messages_per_second: messages as f64 / seconds,
        graph_requests: requests.len(),
        requests_per_message: per_message_of(requests.len() as u64),
        mean_latency_ms: mean_latency * 1000.0,
        ceiling_ratio: per_mailbox_rate / ceiling,
        throttled_after_warmup,
        throttled: throttled.len(),
        aws_calls_per_message,
    })
}
