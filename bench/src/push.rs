//! Push latency: from a message arriving in the sandbox to its record being done, through the
//! two push paths Mailroom has. The sandbox delivers each change notification as soon as the
//! message arrives, so the figure is Mailroom's part (webhook, queue, import), not Graph's
//! delivery time, for which Microsoft documents no bound.
//!
//! - `sqs`: the webhook on loopback, an SQS FIFO queue on moto and a consumer running the batch
//!   as Lambda's event source mapping would (`mailroom_tests::push::PushRig`), AWS adapters,
//!   their calls counted. The consumer long-polls; an idle receive counts as a call too.
//! - `local`: `mailroom serve --listen`'s arrangement: the webhook, the in-process queue and
//!   the local job runner, on the local backend (SQLite and files).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use graph_sandbox::{DEFAULT_TENANT, Mailbox, NewMessage, Sandbox, World};
use mailroom::adapters::local::local_queue;
use mailroom::domain::{AfterImport, FolderKey, MailboxAddress, MailboxConfig, MessageId};
use mailroom::engine::{
    EngineOptions, ImportObserver, Interrupted, PushOptions, Step, run_local_jobs,
};
use mailroom::ports::MailboxConfigs;
use mailroom::push::{PushUrls, Webhook};
use mailroom_tests::awsproxy::AwsProxy;
use mailroom_tests::moto::Moto;
use mailroom_tests::push::PushRig;
use mailroom_tests::stack::Stack;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::import::{FOLDER, LatencyModel, PROCESSED, local_engine, sandbox_graph_config};

const MAILBOX: &str = "invoices@contoso.com";

/// When each message's record became done (just before the engine marks it done, after the
/// blob, the record and the move).
#[derive(Default)]
struct DoneAt(Mutex<HashMap<String, Instant>>);

impl ImportObserver for DoneAt {
    fn before(
        &self,
        step: Step,
        _key: &FolderKey,
        id: Option<&MessageId>,
    ) -> Result<(), Interrupted> {
        if let (Step::MarkDone, Some(id)) = (step, id) {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(id.as_str().to_owned())
                .or_insert_with(Instant::now);
        }
        Ok(())
    }
}

/// Latency percentiles of one path.
#[derive(Debug, Serialize)]
pub struct Latencies {
    pub messages: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// AWS calls per message, by `service.Operation` (the SQS path only).
    pub aws_calls_per_message: BTreeMap<String, f64>,
}

fn world() -> World {
    World::default_test().mailbox(
        DEFAULT_TENANT,
        Mailbox::new(MAILBOX).folder(FOLDER).folder(PROCESSED),
    )
}

fn action() -> AfterImport {
    AfterImport::Move {
        processed_folder: PROCESSED.into(),
    }
}

/// Adds `count` messages `interval` apart and waits until each is done; the latencies.
async fn arrive_and_wait(
    sandbox: &Sandbox,
    done: &DoneAt,
    count: usize,
    interval: Duration,
) -> anyhow::Result<Latencies> {
    let mut arrived = Vec::with_capacity(count);
    for i in 0..count {
        let info = sandbox.add_message(
            MAILBOX,
            FOLDER,
            NewMessage::new(&format!("Invoice INV-{i:05}")).from("Fabrikam", "ar@fabrikam.com"),
        );
        arrived.push((info.immutable_id, Instant::now()));
        tokio::time::sleep(interval).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut latencies = loop {
        let stored = done.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let latencies: Vec<f64> = arrived
            .iter()
            .filter_map(|(id, at)| stored.get(id).map(|d| (*d - *at).as_secs_f64() * 1000.0))
            .collect();
        if latencies.len() == count {
            break latencies;
        }
        if Instant::now() > deadline {
            bail!(
                "after 60 s, {} of {count} messages were stored by push",
                latencies.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Ok(Latencies {
        messages: count,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: at(1.0),
        aws_calls_per_message: BTreeMap::new(),
    })
}

/// The webhook, SQS on moto and the AWS adapters.
pub async fn through_sqs(
    model: &LatencyModel,
    count: usize,
    interval: Duration,
) -> anyhow::Result<Latencies> {
    let proxy = AwsProxy::start(&Moto::shared().endpoint()).await;
    let stack = Stack::start(world()).await.via(proxy.endpoint());
    stack.configure(MAILBOX, FOLDER, action()).await;
    let done = Arc::new(DoneAt::default());
    let rig = PushRig::start_observed(stack, done.clone()).await;
    let report = rig.maintain().await;
    if report.created != 1 {
        bail!("the SQS rig did not subscribe: {report:?}");
    }
    model.apply(&rig.stack.sandbox);
    proxy.reset();
    let mut latencies = arrive_and_wait(&rig.stack.sandbox, &done, count, interval).await?;
    // Let the consumer's last receive and delete finish before counting.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    latencies.aws_calls_per_message = crate::import::per_message(proxy.calls(), count as u64);
    Ok(latencies)
}

/// The webhook, the in-process queue and the local job runner on the local backend.
pub async fn through_local(
    model: &LatencyModel,
    count: usize,
    interval: Duration,
) -> anyhow::Result<Latencies> {
    let sandbox = Sandbox::start(world()).await?;
    let dir = tempfile::tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let urls = PushUrls::from_base(&format!("http://{}", listener.local_addr()?))?;
    let options = EngineOptions {
        push: Some(PushOptions::new(urls)),
        ..EngineOptions::default()
    };
    let (mut engine, state) =
        local_engine(dir.path(), sandbox_graph_config(&sandbox.url()), options).await?;
    let done = Arc::new(DoneAt::default());
    engine.observer = done.clone();
    state
        .put_mailbox(&MailboxConfig {
            address: MailboxAddress::parse(MAILBOX)?,
            folder: FOLDER.to_owned(),
            action: action(),
            credential: "sandbox".to_owned(),
            enabled: true,
            discovered_by: None,
        })
        .await?;
    let engine = Arc::new(engine);
    let (queue, jobs) = local_queue();
    let webhook = Webhook::new(state, Arc::new(queue.clone()));
    let stop = CancellationToken::new();
    let server_stop = stop.clone();
    tokio::spawn(async move {
        let shutdown = async move { server_stop.cancelled().await };
        axum::serve(listener, mailroom::push::server::router(webhook))
            .with_graceful_shutdown(shutdown)
            .await
    });
    tokio::spawn(run_local_jobs(
        engine.clone(),
        jobs,
        queue,
        stop.clone(),
        Duration::from_millis(200),
        1,
        |_, _| {},
    ));
    let report = engine.maintain_subscriptions(None).await?;
    if report.created != 1 {
        bail!("the local rig did not subscribe: {report:?}");
    }
    model.apply(&sandbox);
    let latencies = arrive_and_wait(&sandbox, &done, count, interval).await;
    stop.cancel();
    latencies
}
