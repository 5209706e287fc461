//! Load on the webhook: a burst of change notifications POSTed in batches, as Graph sends them
//! (a `value` array of up to a few dozen), to the webhook on loopback (the same
//! [`mailroom::push::Webhook`] the Lambda function serves), which looks each subscription up in
//! DynamoDB and queues sync jobs on an SQS FIFO queue, both on moto.
//!
//! Figures: the rate held, each answer's latency against Graph's 3-second budget, and the jobs
//! per folder. A burst must lose no job (every folder notified has one) and queue no more than
//! one per folder per deduplication window; the section fails otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt;
use mailroom::domain::job::{JobKind, SyncJob};
use mailroom::domain::{ClientState, MailboxAddress, SubscriptionRecord};
use mailroom::ports::Subscriptions;
use mailroom::push::Webhook;
use mailroom_tests::moto::Moto;
use serde::Serialize;

/// Graph waits this long for an answer before it counts a delivery as failed (docs/graph.md §6).
const GRAPH_BUDGET: Duration = Duration::from_secs(3);

/// What one burst showed.
#[derive(Debug, Serialize)]
pub struct Burst {
    pub notifications: usize,
    pub requests: usize,
    pub folders: usize,
    pub seconds: f64,
    /// Notifications answered per second.
    pub rate_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Answers slower than Graph's 3 seconds.
    pub over_budget: usize,
    /// Sync jobs queued, and the most for one folder.
    pub jobs: usize,
    pub most_jobs_per_folder: usize,
    /// Deduplication windows the burst spanned: the most jobs a folder may get.
    pub windows: usize,
}

/// POSTs `notifications` notifications for `folders` subscribed folders in batches of 1 to 40,
/// spread evenly over `duration`, `concurrency` requests at a time.
///
/// With `queue_on_moto` the jobs go to an SQS FIFO queue on moto and are checked (none lost, at
/// most one per folder and deduplication window); without, to an endpoint that accepts every
/// batch at once, so the figures are the webhook's own work (the lookups still on moto's
/// DynamoDB), not moto's queue, which slows under load as no deployment's queue does.
pub async fn burst(
    notifications: usize,
    folders: usize,
    duration: Duration,
    concurrency: usize,
    queue_on_moto: bool,
) -> anyhow::Result<Burst> {
    let moto = Moto::shared();
    let (state, _) = moto.fresh_table().await;
    let (queue, queue_url) = if queue_on_moto {
        moto.fresh_fifo_queue().await
    } else {
        let endpoint = crate::fanout::accepting_sqs().await?;
        let config = mailroom_tests::moto::sdk_config_for(&endpoint);
        let clients = mailroom::adapters::aws::AwsClients::from_sdk_config(&config, true);
        let url = format!("{endpoint}/123456789012/jobs.fifo");
        (
            mailroom::adapters::aws::SqsJobQueue::new(clients.sqs, &url),
            url,
        )
    };
    let state = Arc::new(state);
    let mut subscriptions = Vec::new();
    for i in 0..folders {
        let record = SubscriptionRecord {
            id: uuid::Uuid::new_v4().to_string(),
            mailbox: MailboxAddress::parse(&format!("user{:03}@contoso.com", i / 5))?,
            folder: format!("Inbox/Folder {}", i % 5),
            credential: "contoso".into(),
            client_state: ClientState::generate(),
            expires_at: time::OffsetDateTime::now_utc() + time::Duration::days(2),
            notification_url: "https://mailroom.example/notifications".into(),
            created_at: time::OffsetDateTime::now_utc(),
        };
        state.put_subscription(&record).await?;
        subscriptions.push(record);
    }
    let webhook = Webhook::new(state.clone(), Arc::new(queue));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/notifications", listener.local_addr()?);
    let server = tokio::spawn(async move {
        axum::serve(listener, mailroom::push::server::router(webhook))
            .await
            .ok();
    });

    // The batches: sizes 1..=40 in a fixed pattern, each notification for a folder in turn.
    let mut batches: Vec<String> = Vec::new();
    let mut next = 0usize;
    while next < notifications {
        let size = (1 + (batches.len() * 7) % 40).min(notifications - next);
        let value: Vec<serde_json::Value> = (next..next + size)
            .map(|n| {
                let s = &subscriptions[n % folders];
                serde_json::json!({
                    "subscriptionId": s.id,
                    "clientState": s.client_state.expose(),
                    "changeType": "created",
                    "resource": format!("Users/{}/Messages/AAMk{n}", s.mailbox),
                    "subscriptionExpirationDateTime": "2026-12-06T00:00:00Z",
                    "tenantId": "00000000-0000-0000-0000-000000000000",
                })
            })
            .collect();
        batches.push(serde_json::json!({ "value": value }).to_string());
        next += size;
    }
    let requests = batches.len();
    let spacing = duration.div_f64(requests.max(1) as f64);
    let client = reqwest::Client::new();
    let started = Instant::now();
    let results: Vec<anyhow::Result<Duration>> =
        futures::stream::iter(batches.into_iter().enumerate())
            .map(|(i, body)| {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    // Graph's deliveries arrive over the burst, not all at once.
                    let due = started + spacing.mul_f64(i as f64);
                    tokio::time::sleep_until(due.into()).await;
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await?;
                    let took = sent.elapsed();
                    if response.status().as_u16() != 202 {
                        bail!("the webhook answered {} to a batch", response.status());
                    }
                    Ok(took)
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    let seconds = started.elapsed().as_secs_f64();
    server.abort();
    // Read after the burst: moto deduplicates only against messages still on its queue (SQS
    // remembers a deduplication id for 5 minutes, consumed or not).
    let bodies = match queue_on_moto {
        true => Some(
            moto.drain_queue(&queue_url)
                .await
                .into_iter()
                .map(|(_, body)| body)
                .collect::<Vec<_>>(),
        ),
        false => None,
    };
    let mut latencies: Vec<f64> = Vec::with_capacity(results.len());
    for result in results {
        latencies.push(result?.as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];

    // Every folder notified has a job; none has more than the windows the burst spanned.
    let windows = (seconds / SyncJob::DEDUPLICATION_WINDOW_SECONDS as f64).ceil() as usize + 1;
    let (jobs, most) = match bodies {
        None => (0, 0),
        Some(bodies) => {
            let mut per_folder: BTreeMap<(String, String), usize> = BTreeMap::new();
            for body in bodies {
                let job: SyncJob = serde_json::from_str(&body)?;
                if job.kind != JobKind::Sync {
                    bail!("a change notification queued a {} job", job.kind.as_str());
                }
                *per_folder
                    .entry((job.mailbox.to_string(), job.folder))
                    .or_default() += 1;
            }
            let notified: BTreeSet<(String, String)> = subscriptions
                .iter()
                .take(notifications.min(folders))
                .map(|s| (s.mailbox.to_string(), s.folder.clone()))
                .collect();
            let lost: Vec<_> = notified
                .iter()
                .filter(|k| !per_folder.contains_key(*k))
                .collect();
            if !lost.is_empty() {
                bail!("{} folder(s) notified got no job: {lost:?}", lost.len());
            }
            let most = per_folder.values().copied().max().unwrap_or(0);
            if most > windows {
                bail!(
                    "a folder got {most} jobs in a burst spanning {windows} deduplication windows"
                );
            }
            (per_folder.values().sum(), most)
        }
    };
    Ok(Burst {
        notifications,
        requests,
        folders,
        seconds,
        rate_per_s: notifications as f64 / seconds,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: at(1.0),
        over_budget: latencies
            .iter()
            .filter(|ms| **ms > GRAPH_BUDGET.as_secs_f64() * 1000.0)
            .count(),
        jobs,
        most_jobs_per_folder: most,
        windows,
    })
}
