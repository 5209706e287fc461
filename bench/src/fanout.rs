//! The fan-out at tenant scale (docs/architecture.md, "Fan-out"): mailboxes with a backlog behind
//! Graph's per-mailbox budget, worked by 1, 4 and 16 consumers taking mailbox jobs from one
//! queue (each job one time slice, continued until its mailbox is done); and the time the
//! scheduled run takes to queue one job per mailbox on SQS (moto).
//!
//! The consumers share the process, the sandbox and in-memory stores, so what is measured is how
//! the jobs use Graph's budget, not moto. Each consumer count gets a fresh sandbox and store and
//! the same time window; throughput is the messages stored in the window (or until the backlog
//! is done, if that comes first).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use graph_sandbox::{DEFAULT_CLIENT_ID, DEFAULT_SECRET, DEFAULT_TENANT, Mailbox, Sandbox, World};
use mailroom::adapters::aws::SqsJobQueue;
use mailroom::adapters::local::local_queue;
use mailroom::adapters::memory::{MemoryBlobStore, MemorySecretSource, MemoryStateStore};
use mailroom::clock::SystemClock;
use mailroom::credentials::{AppCredential, ClientAuth, Credentials};
use mailroom::domain::{AfterImport, FolderKey, MailboxAddress, MailboxConfig};
use mailroom::engine::{Engine, EngineOptions, ImportObserver, JobOutcome, MessageOutcome};
use mailroom::graph::{GraphClient, RequestBudget};
use mailroom::ports::MailboxConfigs;
use mailroom_tests::moto::Moto;
use serde::Serialize;

use crate::import::{LatencyModel, sandbox_graph_config};

const CREDENTIAL: &str = "sandbox";

/// One consumer count's run.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumersRun {
    pub consumers: usize,
    pub seconds: f64,
    pub messages: u64,
    pub messages_per_second: f64,
    /// Mailbox jobs that ran out of their slice and queued a continuation.
    pub continuations: u64,
    pub throttled: usize,
    /// 429s once the first budget window has passed.
    pub throttled_after_warmup: usize,
}

fn address(i: usize) -> String {
    format!("tenant{i:04}@contoso.com")
}

fn world(mailboxes: usize, messages: usize) -> World {
    (0..mailboxes).fold(World::default_test(), |world, i| {
        world.mailbox(
            DEFAULT_TENANT,
            Mailbox::new(&address(i)).messages("Inbox", messages),
        )
    })
}

fn config(i: usize) -> MailboxConfig {
    MailboxConfig {
        address: MailboxAddress::parse(&address(i)).expect("a valid address"),
        folder: "Inbox".to_owned(),
        action: AfterImport::None,
        credential: CREDENTIAL.to_owned(),
        enabled: true,
        discovered_by: None,
    }
}

/// Counts the messages stored.
#[derive(Default)]
struct Stored(AtomicU64);

impl ImportObserver for Stored {
    fn settled(&self, _key: &FolderKey, outcome: &MessageOutcome) {
        if matches!(outcome, MessageOutcome::Imported { .. }) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `consumers` consumers on a backlog of `mailboxes` × `messages`, for `window`.
pub async fn consumers_run(
    mailboxes: usize,
    messages: usize,
    consumers: usize,
    window: Duration,
    slice: Duration,
    budget: RequestBudget,
    model: &LatencyModel,
) -> anyhow::Result<ConsumersRun> {
    let sandbox = Sandbox::start(world(mailboxes, messages)).await?;
    model.apply(&sandbox);
    sandbox.set_request_budget(budget.requests, budget.window);
    sandbox.set_throttle_retry_after(1.0);
    let mut graph = sandbox_graph_config(&sandbox.url());
    graph.request_budget = Some(budget);
    graph.global_concurrency = graph.per_mailbox_concurrency * consumers.max(8);
    graph.retry.max_retry_after = budget.window + Duration::from_secs(1);
    let state = Arc::new(MemoryStateStore::default());
    for i in 0..mailboxes {
        state.put_mailbox(&config(i)).await?;
    }
    let secrets = MemorySecretSource::default();
    secrets.insert(
        CREDENTIAL,
        AppCredential::new(
            DEFAULT_TENANT,
            DEFAULT_CLIENT_ID,
            ClientAuth::Secret(DEFAULT_SECRET.to_owned().into()),
        ),
    );
    let stored = Arc::new(Stored::default());
    let engine = Arc::new(Engine {
        state,
        blobs: Arc::new(MemoryBlobStore::default()),
        credentials: Arc::new(Credentials::new(
            Arc::new(secrets),
            Credentials::DEFAULT_TTL,
        )),
        graph: GraphClient::new(graph)?,
        clock: Arc::new(SystemClock),
        observer: stored.clone(),
        events: None,
        options: EngineOptions {
            job_slice: slice,
            // The deadline is checked between pages: small pages make a mailbox's backlog span
            // several slices, as a real backlog of thousands does.
            page_size: 10,
            ..EngineOptions::default()
        },
        stop: Default::default(),
    });

    // The tick: one job per mailbox, as the scheduled run queues them.
    let (queue, jobs) = local_queue();
    let fan_out = engine.enqueue_mailboxes(&queue).await?;
    anyhow::ensure!(fan_out.queued == mailboxes, "queued {fan_out:?}");
    sandbox.clear_requests();
    let jobs = Arc::new(tokio::sync::Mutex::new(jobs));
    let continuations = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let workers: Vec<_> = (0..consumers)
        .map(|_| {
            let (engine, jobs, queue) = (engine.clone(), jobs.clone(), queue.clone());
            let continuations = continuations.clone();
            tokio::spawn(async move {
                loop {
                    let job = tokio::select! {
                        job = async { jobs.lock().await.recv().await } => job,
                        _ = engine.stop.cancelled() => None,
                    };
                    let Some(job) = job else { return };
                    let outcome = engine.run_job_continuing(&job, deadline, &queue).await;
                    if matches!(outcome, JobOutcome::Continued { .. }) {
                        continuations.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // The window, or less if the backlog is done first.
    let total = (mailboxes * messages) as u64;
    while started.elapsed() < window && stored.0.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let messages_in_window = stored.0.load(Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    engine.stop.cancel();
    for worker in workers {
        worker.await?;
    }

    let requests: Vec<_> = sandbox
        .requests()
        .into_iter()
        .filter(|r| r.mailbox.is_some())
        .collect();
    let first = requests.iter().map(|r| r.started).min();
    let throttled: Vec<_> = requests.iter().filter(|r| r.status == 429).collect();
    let warm = first.map(|f| f + budget.window);
    let throttled_after_warmup = throttled
        .iter()
        .filter(|r| warm.is_some_and(|w| r.started >= w))
        .count();
    Ok(ConsumersRun {
        consumers,
        seconds,
        messages: messages_in_window,
        messages_per_second: messages_in_window as f64 / seconds,
        continuations: continuations.load(Ordering::Relaxed),
        throttled: throttled.len(),
        throttled_after_warmup,
    })
}

/// Where the tick's jobs go.
#[derive(Debug, Clone, Copy)]
pub enum TickQueue {
    /// An SQS FIFO queue on moto. Moto's FIFO send slows with the queue's depth (100 jobs take
    /// half a second, 1,000 over thirty), so this measures moto as much as Mailroom.
    Moto,
    /// An endpoint that speaks SQS's JSON protocol and accepts every batch at once: Mailroom's own
    /// cost (reading the configuration, building the jobs, the SDK's requests over loopback),
    /// without a queue's.
    Accepting,
}

/// How long the scheduled run takes to queue one job per mailbox, the configuration read from
/// memory.
pub async fn fan_out_seconds(mailboxes: usize, target: TickQueue) -> anyhow::Result<f64> {
    let moto = Moto::shared();
    let queue = match target {
        TickQueue::Moto => {
            let (_, queue_url) = moto.fresh_fifo_queue().await;
            SqsJobQueue::new(moto.clients().sqs, &queue_url)
        }
        TickQueue::Accepting => {
            let endpoint = accepting_sqs().await?;
            let config = mailroom_tests::moto::sdk_config_for(&endpoint);
            let clients = mailroom::adapters::aws::AwsClients::from_sdk_config(&config, true);
            SqsJobQueue::new(clients.sqs, format!("{endpoint}/123456789012/jobs.fifo"))
        }
    };
    let state = Arc::new(MemoryStateStore::default());
    for i in 0..mailboxes {
        state.put_mailbox(&config(i)).await?;
    }
    let engine = Engine {
        state,
        blobs: Arc::new(MemoryBlobStore::default()),
        credentials: Arc::new(Credentials::new(
            Arc::new(MemorySecretSource::default()),
            Credentials::DEFAULT_TTL,
        )),
        graph: GraphClient::new(sandbox_graph_config("http://127.0.0.1:9"))?,
        clock: Arc::new(SystemClock),
        observer: Arc::new(mailroom::engine::NoObserver),
        events: None,
        options: EngineOptions::default(),
        stop: Default::default(),
    };
    let started = Instant::now();
    let fan_out = engine.enqueue_mailboxes(&queue).await?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        fan_out.queued == mailboxes,
        "queued {} of {mailboxes}: {:?}",
        fan_out.queued,
        fan_out.failed
    );
    Ok(seconds)
}

/// Serves SQS's JSON protocol on loopback, answering every SendMessageBatch with each entry
/// sent; returns its base URL.
pub(crate) async fn accepting_sqs() -> anyhow::Result<String> {
    use axum::http::HeaderMap;
    use serde_json::{Value, json};

    async fn answer(headers: HeaderMap, body: axum::body::Bytes) -> axum::Json<Value> {
        let target = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let request: Value = serde_json::from_slice(&body).unwrap_or_default();
        let ids: Vec<Value> = match target {
            "AmazonSQS.SendMessageBatch" => request["Entries"]
                .as_array()
                .map(|entries| entries.iter().map(|e| e["Id"].clone()).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let successful: Vec<Value> = ids
            .into_iter()
            .enumerate()
            .map(|(n, id)| {
                json!({"Id": id, "MessageId": format!("m-{n}"),
                       "MD5OfMessageBody": "00000000000000000000000000000000",
                       "SequenceNumber": "1"})
            })
            .collect();
        axum::Json(json!({"Successful": successful, "Failed": []}))
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new().fallback(answer);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

/// The AWS calls of one tick per mailbox when no mail is new (the scheduled run's fan-out and the
/// mailbox jobs), by `service.Operation`, counted by the proxy in front of moto. The queue
/// consumer's own receive, delete and attribute calls (Lambda's poller's, in AWS) are left out:
/// README, "What it costs", counts them per batch.
pub async fn idle_tick_calls(mailboxes: usize) -> anyhow::Result<BTreeMap<String, f64>> {
    use mailroom_tests::awsproxy::AwsProxy;
    use mailroom_tests::push::PushRig;
    use mailroom_tests::stack::Stack;

    let proxy = AwsProxy::start(&Moto::shared().endpoint()).await;
    let stack = Stack::start(world(mailboxes, 2))
        .await
        .via(proxy.endpoint());
    for i in 0..mailboxes {
        stack
            .configure(&address(i), "Inbox", AfterImport::None)
            .await;
    }
    let rig = PushRig::start(stack).await;
    // The first tick imports the mail; the second finds nothing new.
    for tick in 0..2 {
        if tick == 1 {
            proxy.reset();
        }
        let fan_out = rig.engine.enqueue_mailboxes(&rig.queue()).await?;
        anyhow::ensure!(fan_out.queued == mailboxes, "queued {fan_out:?}");
        let mut empty_since: Option<Instant> = None;
        let started = Instant::now();
        while empty_since.is_none_or(|since| since.elapsed() < Duration::from_secs(1)) {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(120),
                "the tick's jobs did not finish"
            );
            if rig.queued().await == 0 {
                empty_since.get_or_insert_with(Instant::now);
            } else {
                empty_since = None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let consumer_side = [
        "ReceiveMessage",
        "DeleteMessage",
        "DeleteMessageBatch",
        "ChangeMessageVisibility",
        "GetQueueAttributes",
    ];
    let calls = proxy
        .calls()
        .into_iter()
        .filter(|((service, operation), _)| {
            !(service == "sqs" && consumer_side.contains(&operation.as_str()))
        })
        .collect();
    Ok(crate::import::per_message(calls, mailboxes as u64))
}
