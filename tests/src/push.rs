//! The push path end to end, with real parts: the Graph sandbox delivers change notifications
//! over HTTP to the webhook (axum on loopback, the same [`mailroom::push::Webhook`] the Lambda
//! function serves), which looks subscriptions up in DynamoDB and queues jobs on an SQS FIFO
//! queue on moto; [`QueueConsumer`] plays Lambda's event source mapping, receiving batches and
//! running them through [`mailroom::engine::run_batch`] (the import function's code path) with
//! partial batch failures made visible again.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use mailroom::adapters::aws::SqsJobQueue;
use mailroom::engine::{
    Engine, EngineOptions, ImportObserver, NoObserver, PushOptions, QueuedJob, run_batch,
};
use mailroom::push::{PushUrls, Webhook};
use tokio::task::JoinHandle;

use crate::stack::{RUN_BUDGET, Stack};

/// A [`Stack`] with the webhook served on loopback, a FIFO queue and its consumer.
pub struct PushRig {
    pub stack: Stack,
    pub engine: Arc<Engine>,
    pub queue_url: String,
    pub webhook_addr: SocketAddr,
    pub urls: PushUrls,
    pub sqs: aws_sdk_sqs::Client,
    /// Jobs the consumer ran, and those it reported failed (to be delivered again).
    pub jobs_run: Arc<AtomicUsize>,
    pub jobs_failed: Arc<AtomicUsize>,
    /// What the relay did to the notifications, if they pass through one.
    pub relay: Option<Arc<RelayCounts>>,
    consuming: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl PushRig {
    /// Starts the webhook and the consumer over `stack`. Subscriptions are not created yet: call
    /// [`Self::maintain`].
    pub async fn start(stack: Stack) -> PushRig {
        Self::start_observed(stack, Arc::new(NoObserver)).await
    }

    /// [`Self::start`], with `observer` watching the consumer's imports.
    pub async fn start_observed(stack: Stack, observer: Arc<dyn ImportObserver>) -> PushRig {
        Self::start_with(stack, observer, None).await
    }

    /// [`Self::start_observed`], with Graph's change notifications reaching the webhook through
    /// a [`NotificationRelay`] that drops, duplicates and reorders them as `chaos` says.
    pub async fn start_with(
        stack: Stack,
        observer: Arc<dyn ImportObserver>,
        chaos: Option<RelayChaos>,
    ) -> PushRig {
        // Created on moto, used through the stack's endpoint (a counting proxy, perhaps).
        let (_, queue_url) = stack.moto.fresh_fifo_queue().await;
        let sqs = stack.clients().sqs;
        let queue = SqsJobQueue::new(sqs.clone(), &queue_url);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the webhook");
        let webhook_addr = listener.local_addr().unwrap();
        let mut tasks = Vec::new();
        let (public, relay) = match chaos {
            Some(chaos) => {
                let relay = NotificationRelay::start(webhook_addr, chaos).await;
                let public = relay.addr;
                tasks.push(relay.server);
                (public, Some(relay.counts))
            }
            None => (webhook_addr, None),
        };
        let urls = PushUrls::from_base(&format!("http://{public}")).unwrap();
        let webhook = Webhook::new(stack.state.clone(), Arc::new(queue));
        let server = tokio::spawn(async move {
            axum::serve(listener, mailroom::push::server::router(webhook))
                .await
                .expect("webhook server");
        });
        let mut options = EngineOptions {
            push: Some(PushOptions::new(urls.clone())),
            ..EngineOptions::default()
        };
        options.lease_margin = Duration::from_secs(5);
        let engine = Arc::new(stack.engine_with(observer, options));
        tasks.push(server);
        let mut rig = PushRig {
            stack,
            engine,
            queue_url,
            webhook_addr,
            urls,
            sqs,
            jobs_run: Arc::default(),
            jobs_failed: Arc::default(),
            relay,
            consuming: Arc::new(AtomicBool::new(true)),
            tasks,
        };
        let consumer = rig.consumer();
        rig.tasks.push(tokio::spawn(consumer.run()));
        rig
    }

    /// The queue, as the webhook and the scheduled run's fan-out send to it.
    pub fn queue(&self) -> SqsJobQueue {
        SqsJobQueue::new(self.sqs.clone(), &self.queue_url)
    }

    /// Starts `n` more consumers: Lambda scaling out on the queue.
    pub fn add_consumers(&mut self, n: usize) {
        for _ in 0..n {
            let consumer = self.consumer();
            self.tasks.push(tokio::spawn(consumer.run()));
        }
    }

    fn consumer(&self) -> QueueConsumer {
        QueueConsumer {
            engine: self.engine.clone(),
            queue: self.queue(),
            sqs: self.sqs.clone(),
            queue_url: self.queue_url.clone(),
            clock: self.stack.clock.clone(),
            jobs_run: self.jobs_run.clone(),
            jobs_failed: self.jobs_failed.clone(),
            consuming: self.consuming.clone(),
        }
    }

    /// Pauses or resumes the consumer (jobs wait on the queue meanwhile).
    pub fn set_consuming(&self, on: bool) {
        self.consuming.store(on, Ordering::SeqCst);
    }

    /// One scheduled-run's worth of subscription upkeep, done here.
    pub async fn maintain(&self) -> mailroom::engine::SubscriptionReport {
        self.engine
            .maintain_subscriptions(None)
            .await
            .expect("state store reachable")
    }

    /// One scheduled-run's worth of subscription upkeep, fanned out: a job per due folder on
    /// the queue, for the consumers.
    pub async fn maintain_queued(&self) -> mailroom::engine::SubscriptionReport {
        self.engine
            .maintain_subscriptions(Some(&self.queue()))
            .await
            .expect("state store reachable")
    }

    /// Waits until the mailbox holds records for all `ids` (immutable ids), or panics after
    /// `within`.
    /// Waits until the only subscription is `before` renewed (the same id, a later expiry);
    /// panics after `within`.
    pub async fn wait_for_renewal(
        &self,
        before: &mailroom::domain::SubscriptionRecord,
        within: Duration,
    ) {
        use mailroom::ports::Subscriptions as _;
        let started = std::time::Instant::now();
        loop {
            let now = self.stack.state.list_subscriptions().await.unwrap();
            if now[0].expires_at > before.expires_at {
                assert_eq!(now[0].id, before.id);
                return;
            }
            assert!(started.elapsed() < within, "not renewed: {now:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_for_records(&self, mailbox: &str, ids: &[String], within: Duration) {
        let started = std::time::Instant::now();
        loop {
            let stored: std::collections::BTreeSet<String> = self
                .stack
                .records(mailbox)
                .await
                .into_iter()
                .filter(|r| r.state == mailroom::domain::RecordState::Done)
                .map(|r| r.message_id.as_str().to_owned())
                .collect();
            if ids.iter().all(|id| stored.contains(id)) {
                return;
            }
            if started.elapsed() > within {
                panic!(
                    "after {within:?}, {} of {} messages stored by push; deliveries: {:#?}",
                    ids.iter().filter(|id| stored.contains(*id)).count(),
                    ids.len(),
                    self.stack.sandbox.deliveries()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Messages waiting on the queue (visible or in flight).
    pub async fn queued(&self) -> usize {
        use aws_sdk_sqs::types::QueueAttributeName;
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes");
        let map = attributes.attributes().cloned().unwrap_or_default();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|k| {
            map.get(k)
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0)
        })
        .sum()
    }
}

impl Drop for PushRig {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Lambda's SQS event source mapping, in miniature: receive up to 10 messages, run them as one
/// batch, delete the successes, and make the failures visible again at once (Lambda would wait
/// for the visibility timeout; tests do not).
struct QueueConsumer {
    engine: Arc<Engine>,
    queue: SqsJobQueue,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    clock: Arc<mailroom::clock::ManualClock>,
    jobs_run: Arc<AtomicUsize>,
    jobs_failed: Arc<AtomicUsize>,
    consuming: Arc<AtomicBool>,
}

impl QueueConsumer {
    async fn run(self) {
        loop {
            if !self.consuming.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
                .send()
                .await;
            let Ok(received) = received else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let messages = received.messages().to_vec();
            if messages.is_empty() {
                continue;
            }
            let batch: Vec<QueuedJob> = messages
                .iter()
                .map(|m| QueuedJob {
                    id: m.message_id().unwrap_or_default().to_owned(),
                    group: m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                        .cloned()
                        .unwrap_or_default(),
                    job: SqsJobQueue::parse_job(m.body().unwrap_or_default()),
                })
                .collect();
            self.jobs_run.fetch_add(batch.len(), Ordering::SeqCst);
            let (engine, queue) = (&self.engine, &self.queue);
            let stop_at = self.clock_now() + RUN_BUDGET;
            let failed = run_batch(batch, 4, |job| async move {
                engine.run_job_continuing(&job, stop_at, queue).await
            })
            .await;
            self.jobs_failed.fetch_add(failed.len(), Ordering::SeqCst);
            for m in &messages {
                let id = m.message_id().unwrap_or_default();
                let handle = m.receipt_handle().unwrap_or_default();
                if failed.iter().any(|f| f == id) {
                    let _ = self
                        .sqs
                        .change_message_visibility()
                        .queue_url(&self.queue_url)
                        .receipt_handle(handle)
                        .visibility_timeout(0)
                        .send()
                        .await;
                } else {
                    let _ = self
                        .sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await;
                }
            }
            if !failed.is_empty() {
                // As Lambda backs off: do not spin on a job that keeps failing.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    fn clock_now(&self) -> time::OffsetDateTime {
        use mailroom::clock::Clock;
        self.clock.now()
    }
}

/// What a [`NotificationRelay`] does to each change notification POST: drop it (answering Graph
/// `202` all the same, so Graph never retries it), deliver it twice, and deliver it after a random
/// delay of up to `max_delay`, so deliveries overtake each other. Validation handshakes and
/// lifecycle events pass straight through.
#[derive(Debug, Clone, Copy)]
pub struct RelayChaos {
    pub drop: f64,
    pub duplicate: f64,
    pub max_delay: Duration,
    pub seed: u64,
}

/// Change notification POSTs the relay saw, dropped, and delivered twice.
#[derive(Debug, Default)]
pub struct RelayCounts {
    pub seen: AtomicUsize,
    pub dropped: AtomicUsize,
    pub duplicated: AtomicUsize,
}

/// An HTTP relay between Graph (the sandbox) and the webhook, playing the network's and Graph's
/// own misbehaviour: Graph may deliver a notification more than once, out of order, or not at
/// all (docs/graph.md section 6). Test support only.
struct NotificationRelay {
    addr: SocketAddr,
    counts: Arc<RelayCounts>,
    server: JoinHandle<()>,
}

#[derive(Clone)]
struct Relay {
    webhook: SocketAddr,
    chaos: RelayChaos,
    rng: Arc<std::sync::Mutex<fastrand::Rng>>,
    counts: Arc<RelayCounts>,
    http: reqwest::Client,
}

impl NotificationRelay {
    async fn start(webhook: SocketAddr, chaos: RelayChaos) -> NotificationRelay {
        let counts = Arc::new(RelayCounts::default());
        let relay = Relay {
            webhook,
            chaos,
            rng: Arc::new(std::sync::Mutex::new(fastrand::Rng::with_seed(chaos.seed))),
            counts: counts.clone(),
            http: reqwest::Client::new(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the relay");
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(relay_request)
            .with_state(relay);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        NotificationRelay {
            addr,
            counts,
            server,
        }
    }
}

async fn relay_request(
    axum::extract::State(relay): axum::extract::State<Relay>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let target = format!(
        "http://{}{}",
        relay.webhook,
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let handshake = uri.query().is_some_and(|q| q.contains("validationToken"));
    let change = uri
        .path()
        .ends_with(mailroom::push::Endpoint::Notifications.path());
    if handshake || !change {
        // Straight through, answer and all.
        let answer = relay
            .http
            .post(&target)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await;
        return match answer {
            Ok(answer) => {
                let status = answer.status();
                let text = answer.text().await.unwrap_or_default();
                (status, text).into_response()
            }
            Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        };
    }
    relay.counts.seen.fetch_add(1, Ordering::SeqCst);
    let (dropped, twice, delays) = {
        let mut rng = relay.rng.lock().unwrap();
        let max = relay.chaos.max_delay.as_millis().max(1) as u64;
        (
            rng.f64() < relay.chaos.drop,
            rng.f64() < relay.chaos.duplicate,
            [rng.u64(..max), rng.u64(..max)],
        )
    };
    if dropped {
        relay.counts.dropped.fetch_add(1, Ordering::SeqCst);
        return axum::http::StatusCode::ACCEPTED.into_response();
    }
    let copies = if twice {
        relay.counts.duplicated.fetch_add(1, Ordering::SeqCst);
        2
    } else {
        1
    };
    for delay in delays.into_iter().take(copies) {
        let (http, target, body, content_type) = (
            relay.http.clone(),
            target.clone(),
            body.clone(),
            content_type.clone(),
        );
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            // Graph would retry a failed delivery; the relay, like a lost packet, does not.
            let _ = http
                .post(&target)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await;
        });
    }
    axum::http::StatusCode::ACCEPTED.into_response()
}
