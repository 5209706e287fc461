//! The soak: a seeded random run of the whole import, push and rotation machinery under faults,
//! ending with the invariant checked. `cargo run --release -p mailroom-bench -- soak` (10,000
//! messages over 20 mailboxes); the suite runs a short one (bench/tests/soak.rs).
//!
//! Mail arrives in rounds, to mailboxes chosen at random, each mailbox with one of the four
//! after-import actions. Meanwhile:
//! - Graph (the sandbox) answers a share of requests with a fault: 503 with Retry-After, 500,
//!   429, a dropped connection, a truncated body;
//! - AWS (a proxy in front of moto, every service) answers a share of calls with throttling, a
//!   500, a connection reset before the call, or a lost answer after moto acted on it;
//! - imports crash at random steps, in the scheduled runs and in the push jobs alike; the
//!   engine's clock then moves past the lease so the next runner takes over;
//! - change notifications reach the webhook through a relay that drops, duplicates and reorders
//!   them; the webhook queues jobs on SQS (on moto, through the faulty proxy) for three
//!   consumers;
//! - the app's client secret is rotated, by the rotation function's four steps, twice.
//!
//! Then faults and crashes stop, the scheduled run finishes what is left, and every message
//! that arrived is checked: one record, done, with its MIME in the bucket byte for byte, the
//! after-import action carried out; the bucket holds nothing else. The last line printed is the
//! summary, `lost=0 duplicated=0 …`; the exit code is non-zero if anything was lost, stored
//! twice or left unfinished.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use graph_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_SECRET, DEFAULT_SECRET_ID, DEFAULT_TENANT, FaultKind, FaultRule,
    Mailbox, MessageInfo, NewMessage, World,
};
use mailroom::adapters::aws::{SecretsManagerSource, SecretsManagerVersions};
use mailroom::clock::Clock;
use mailroom::domain::{AfterImport, FolderKey, MessageId, RecordState};
use mailroom::engine::{
    EngineOptions, ImportObserver, Interrupted, MailboxStatus, RunReport, Step,
};
use mailroom::ports::SecretSource;
use mailroom::rotation::RotationStep;
use mailroom_tests::awsproxy::{AwsFault, AwsProxy, Chaos};
use mailroom_tests::moto::Moto;
use mailroom_tests::push::{PushRig, RelayChaos};
use mailroom_tests::stack::{RUN_BUDGET, Stack};

const FOLDER: &str = "Inbox";
const PROCESSED: &str = "Inbox/Processed";

/// `mailroom-bench soak` options.
#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// Messages that arrive over the run.
    #[arg(long, default_value_t = 10_000)]
    pub messages: usize,
    /// Mailboxes they arrive in (each with one of the four after-import actions in turn).
    #[arg(long, default_value_t = 20)]
    pub mailboxes: usize,
    /// Rounds of arrivals; each round ends with a scheduled run.
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    /// Share of Graph requests and of AWS calls answered with a fault (0 to 1).
    #[arg(long, default_value_t = 0.05)]
    pub fault_rate: f64,
    /// Chance that an import crashes before any one step.
    #[arg(long, default_value_t = 0.002)]
    pub crash_rate: f64,
    /// Share of change notifications dropped, and delivered twice.
    #[arg(long, default_value_t = 0.1)]
    pub drop_rate: f64,
    #[arg(long, default_value_t = 0.2)]
    pub duplicate_rate: f64,
    /// Seed of every random choice (arrivals, faults, crashes, notifications). Default: the
    /// time; printed, so a failing run can be repeated.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Deletes one stored object before the check, which must then report it lost (proves the
    /// check can fail).
    #[arg(long, hide = true)]
    pub tamper: bool,
}

/// What the run did and what the check found.
#[derive(Debug, Default)]
pub struct Summary {
    pub lost: usize,
    pub duplicated: usize,
    pub orphans: usize,
    pub unfinished: usize,
    pub corrupt: usize,
    pub messages: usize,
    pub mailboxes: usize,
    pub seed: u64,
    pub graph_requests: usize,
    pub graph_faults: usize,
    pub aws_calls: u64,
    pub aws_faults: u64,
    pub crashes: usize,
    pub notifications: usize,
    pub notifications_dropped: usize,
    pub notifications_duplicated: usize,
    pub push_jobs: usize,
    pub rotations: usize,
    /// The app's passwords at the end: after a rotation, exactly the current one.
    pub app_passwords: usize,
    /// Whether the secret in Secrets Manager is the rotation's, not the original.
    pub secret_rotated: bool,
    pub scheduled_runs: usize,
    /// Scheduled runs that failed as a whole (the mailbox list unreadable).
    pub failed_ticks: usize,
    pub seconds: f64,
}

impl Summary {
    /// Nothing lost, nothing twice, nothing left half done.
    pub fn holds(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.orphans == 0
            && self.unfinished == 0
            && self.corrupt == 0
            && (self.rotations == 0 || (self.app_passwords == 1 && self.secret_rotated))
    }

    pub fn line(&self) -> String {
        let pct = |part: f64, whole: f64| 100.0 * part / whole.max(1.0);
        format!(
            "lost={} duplicated={} orphans={} unfinished={} corrupt={} messages={} mailboxes={} \
             seed={} graph_requests={} graph_faults={} ({:.1}%) aws_calls={} aws_faults={} \
             ({:.1}%) crashes={} notifications={} dropped={} delivered_twice={} push_jobs={} \
             rotations={} app_passwords={} scheduled_runs={} failed_ticks={} seconds={:.0}",
            self.lost,
            self.duplicated,
            self.orphans,
            self.unfinished,
            self.corrupt,
            self.messages,
            self.mailboxes,
            self.seed,
            self.graph_requests,
            self.graph_faults,
            pct(self.graph_faults as f64, self.graph_requests as f64),
            self.aws_calls,
            self.aws_faults,
            pct(self.aws_faults as f64, self.aws_calls as f64),
            self.crashes,
            self.notifications,
            self.notifications_dropped,
            self.notifications_duplicated,
            self.push_jobs,
            self.rotations,
            self.app_passwords,
            self.scheduled_runs,
            self.failed_ticks,
            self.seconds,
        )
    }
}

/// Crashes an import before a step at random, as a process dying there would.
struct RandomCrashes {
    rate: f64,
    on: AtomicBool,
    rng: Mutex<fastrand::Rng>,
    crashes: AtomicUsize,
}

impl ImportObserver for RandomCrashes {
    fn before(
        &self,
        step: Step,
        _key: &FolderKey,
        _id: Option<&MessageId>,
    ) -> Result<(), Interrupted> {
        if !self.on.load(Ordering::SeqCst) {
            return Ok(());
        }
        let crash = self
            .rng
            .lock()
            .map(|mut rng| rng.f64() < self.rate)
            .unwrap_or(false);
        if crash {
            self.crashes.fetch_add(1, Ordering::SeqCst);
            return Err(Interrupted(step));
        }
        Ok(())
    }
}

fn address(i: usize) -> String {
    format!("soak{i:03}@contoso.com")
}

fn action(i: usize) -> AfterImport {
    match i % 4 {
        0 => AfterImport::None,
        1 => AfterImport::Move {
            processed_folder: PROCESSED.into(),
        },
        2 => AfterImport::MarkRead,
        _ => AfterImport::Delete,
    }
}

/// The secret as the rotation function expects it: with the key id of its password.
fn secret_json() -> String {
    serde_json::json!({
        "tenant_id": DEFAULT_TENANT,
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_SECRET,
        "key_id": DEFAULT_SECRET_ID,
    })
    .to_string()
}

/// The Graph faults: each kind on its share of requests.
fn graph_chaos(rate: f64, seed: u64) -> Vec<FaultRule> {
    let kinds = [
        FaultKind::Status(503, Some(0.05)),
        FaultKind::Status(500, None),
        FaultKind::Throttle(0.05),
        FaultKind::DropConnection,
        FaultKind::TruncateBody,
    ];
    let each = rate / kinds.len() as f64;
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| FaultRule::new(kind).rate(each, seed.wrapping_add(i as u64)))
        .collect()
}

pub async fn run(args: &SoakArgs) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    println!(
        "soak: {} messages over {} mailboxes in {} rounds; {:.1}% of Graph requests and AWS \
         calls faulted; crash chance {:.2}% per step; notifications {:.0}% dropped, {:.0}% \
         delivered twice; seed {seed}",
        args.messages,
        args.mailboxes,
        args.rounds,
        args.fault_rate * 100.0,
        args.crash_rate * 100.0,
        args.drop_rate * 100.0,
        args.duplicate_rate * 100.0
    );
    let mut rng = fastrand::Rng::with_seed(seed);

    let moto = Moto::shared();
    let proxy = AwsProxy::start(&moto.endpoint()).await;
    let mut world = World::default_test();
    for i in 0..args.mailboxes {
        world = world.mailbox(
            DEFAULT_TENANT,
            Mailbox::new(&address(i)).folder(FOLDER).folder(PROCESSED),
        );
    }
    let stack = Stack::start(world).await.via(proxy.endpoint());
    stack.sandbox.set_app_permissions(
        DEFAULT_CLIENT_ID,
        &["Mail.ReadWrite", "Application.ReadWrite.OwnedBy"],
    );
    // Tokens expire within the run, so secrets are read again after a rotation.
    stack.sandbox.set_token_lifetime(120);
    stack.store_secret(&stack.credential, &secret_json()).await;
    for i in 0..args.mailboxes {
        stack.configure(&address(i), FOLDER, action(i)).await;
    }

    let crashes = Arc::new(RandomCrashes {
        rate: args.crash_rate,
        on: AtomicBool::new(false),
        rng: Mutex::new(fastrand::Rng::with_seed(seed ^ 0xC4A5)),
        crashes: AtomicUsize::new(0),
    });
    let relay = RelayChaos {
        drop: args.drop_rate,
        duplicate: args.duplicate_rate,
        max_delay: Duration::from_millis(300),
        seed: seed ^ 0x4E07,
    };
    let mut rig = PushRig::start_with(stack, crashes.clone(), Some(relay)).await;
    rig.add_consumers(2);
    let upkeep = rig.maintain().await;
    println!(
        "subscriptions: {} created before the faults start",
        upkeep.created
    );

    // Faults and crashes from here on.
    for rule in graph_chaos(args.fault_rate, seed ^ 0x6A7F) {
        rig.stack.sandbox.inject(rule);
    }
    proxy.set_chaos(Some(Chaos {
        rate: args.fault_rate,
        seed: seed ^ 0xA5F,
        faults: vec![
            AwsFault::Throttle,
            AwsFault::ServerError,
            AwsFault::Reset,
            AwsFault::LoseAnswer,
        ],
        services: Vec::new(),
    }));
    crashes.on.store(true, Ordering::SeqCst);

    let mut arrived: BTreeMap<usize, Vec<MessageInfo>> = BTreeMap::new();
    let mut rotations = 0;
    let mut scheduled_runs = 0;
    let failed_ticks = AtomicUsize::new(0);
    let per_round = args.messages.div_ceil(args.rounds.max(1));
    let rotate_in = [args.rounds / 3, 2 * args.rounds / 3];
    for round in 0..args.rounds {
        let count = per_round.min(args.messages - arrived.values().map(Vec::len).sum::<usize>());
        for n in 0..count {
            let i = rng.usize(..args.mailboxes);
            let size = 2_000 + rng.u64(..60_000);
            let info = rig.stack.sandbox.add_message(
                &address(i),
                FOLDER,
                NewMessage::generated(&format!("Soak {round}.{n}"), size),
            );
            arrived.entry(i).or_default().push(info);
            if n % 25 == 24 {
                // Arrivals spread over the round, so push works while mail comes in.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let rotation = rotate_in.contains(&round).then(|| rotate(&rig.stack));
        let scheduled = scheduled_run(&rig, &failed_ticks);
        let (rotated, report) = tokio::join!(
            async {
                match rotation {
                    Some(r) => Some(r.await),
                    None => None,
                }
            },
            scheduled
        );
        scheduled_runs += 1;
        if let Some(rotated) = rotated {
            rotated.context("rotating the secret")?;
            rotations += 1;
        }
        let busy = report
            .mailboxes
            .iter()
            .filter(|m| m.status == MailboxStatus::Busy)
            .count();
        println!(
            "round {:>3}: {count} arrived, the scheduled run stored {} ({} mailboxes failed, {} \
             busy); push jobs run {}, crashes {}",
            round + 1,
            report.imported(),
            report
                .mailboxes
                .iter()
                .filter(|m| m.status == MailboxStatus::Failed)
                .count(),
            busy,
            rig.jobs_run.load(Ordering::SeqCst),
            crashes.crashes.load(Ordering::SeqCst),
        );
        // A crashed runner's lease expires: move the engine's clock past it.
        rig.stack
            .clock
            .advance(RUN_BUDGET * 2 + time::Duration::minutes(5));
        // Renew what is due, as the scheduled tick does (it may fail under faults: next round).
        let _ = rig.engine.maintain_subscriptions(None).await;
    }

    // The faults stop; the scheduled run finishes what is left.
    crashes.on.store(false, Ordering::SeqCst);
    rig.stack.sandbox.clear_faults();
    proxy.set_chaos(None);
    let graph_faults = rig.stack.sandbox.faults_fired();
    let aws_faults: u64 = proxy.faults_fired().values().sum();
    let aws_calls: u64 = proxy.calls().values().sum();
    let stats = rig.stack.sandbox.stats();
    rig.stack
        .clock
        .advance(RUN_BUDGET * 2 + time::Duration::minutes(5));
    for attempt in 1..=5 {
        let report = scheduled_run(&rig, &failed_ticks).await;
        scheduled_runs += 1;
        let settled = report.mailboxes.len() == args.mailboxes
            && report
                .mailboxes
                .iter()
                .all(|m| m.status == MailboxStatus::Ok && m.error.is_none());
        if settled && report.imported() == 0 {
            break;
        }
        println!(
            "final run {attempt}: stored {}; {} mailboxes not ok",
            report.imported(),
            report
                .mailboxes
                .iter()
                .filter(|m| m.status != MailboxStatus::Ok)
                .count()
        );
        rig.stack
            .clock
            .advance(RUN_BUDGET * 2 + time::Duration::minutes(5));
    }
    // Let the queue settle, so no push job is still writing while the store is checked.
    let quiet_since = Instant::now();
    while rig.queued().await > 0 && quiet_since.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    if args.tamper {
        let keys = rig.stack.bucket_keys().await;
        let key = keys.first().context("nothing stored to tamper with")?;
        rig.stack
            .s3
            .delete_object()
            .bucket(&rig.stack.bucket)
            .key(key)
            .send()
            .await?;
        println!("tampered: deleted {key}");
    }
    let mut summary = check(&rig.stack, args.mailboxes, &arrived).await;
    let passwords = rig.stack.sandbox.application_passwords(DEFAULT_CLIENT_ID);
    summary.app_passwords = passwords.len();
    let current = SecretsManagerSource::new(rig.stack.secrets.clone())
        .fetch(&rig.stack.credential)
        .await?;
    summary.secret_rotated = current.key_id.as_deref() != Some(DEFAULT_SECRET_ID)
        && passwords
            .iter()
            .any(|p| Some(p.key_id.as_str()) == current.key_id.as_deref());
    let relay = rig.relay.clone().unwrap_or_default();
    summary.seed = seed;
    summary.mailboxes = args.mailboxes;
    summary.graph_requests = stats.graph_requests + stats.token_requests;
    summary.graph_faults = graph_faults;
    summary.aws_calls = aws_calls;
    summary.aws_faults = aws_faults;
    summary.crashes = crashes.crashes.load(Ordering::SeqCst);
    summary.notifications = relay.seen.load(Ordering::SeqCst);
    summary.notifications_dropped = relay.dropped.load(Ordering::SeqCst);
    summary.notifications_duplicated = relay.duplicated.load(Ordering::SeqCst);
    summary.push_jobs = rig.jobs_run.load(Ordering::SeqCst);
    summary.rotations = rotations;
    summary.scheduled_runs = scheduled_runs;
    summary.failed_ticks = failed_ticks.load(Ordering::SeqCst);
    summary.seconds = started.elapsed().as_secs_f64();
    println!("AWS faults by kind: {:?}", proxy.faults_fired());
    Ok(summary)
}

/// One scheduled run, by a fresh process (its own lease owner and caches), crashing as the
/// push consumers do. A run that cannot even list the mailboxes (the state store failing past
/// the SDK's attempts) reports no mailbox, as the function's failed tick would; the next tick
/// tries again.
async fn scheduled_run(rig: &PushRig, failed_ticks: &AtomicUsize) -> RunReport {
    let observer = rig.engine.observer.clone();
    let engine = rig.stack.engine_with(observer, EngineOptions::default());
    let now = rig.stack.clock.now();
    match engine.run(now + RUN_BUDGET, None).await {
        Ok(report) => report,
        Err(e) => {
            println!("a scheduled tick failed: {e}");
            failed_ticks.fetch_add(1, Ordering::SeqCst);
            RunReport {
                started_at: now,
                finished_at: now,
                mailboxes: Vec::new(),
            }
        }
    }
}

/// The rotation function's four steps, as Secrets Manager invokes them, each retried (as
/// Secrets Manager retries a failed step) until it succeeds.
async fn rotate(stack: &Stack) -> anyhow::Result<()> {
    let rotator = stack.rotator(Arc::new(SecretsManagerVersions::new(stack.secrets.clone())));
    let token = uuid::Uuid::new_v4().to_string();
    for step in RotationStep::ALL {
        let event = stack.rotation_event(&token, step);
        let mut attempts = 0;
        while let Err(e) = rotator.run(&event).await {
            attempts += 1;
            if attempts >= 20 {
                anyhow::bail!("{} failed 20 times, the last: {e}", step.name());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// The invariant, counted instead of asserted: every message that arrived has one record, done,
/// matching it, with its MIME in the bucket; the action was carried out; nothing else is stored.
async fn check(
    stack: &Stack,
    mailboxes: usize,
    arrived: &BTreeMap<usize, Vec<MessageInfo>>,
) -> Summary {
    let mut summary = Summary::default();
    // Each record's object and the checksum it should have.
    let mut record_keys: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..mailboxes {
        let expected = arrived.get(&i).map(Vec::as_slice).unwrap_or_default();
        summary.messages += expected.len();
        let records = stack.records(&address(i)).await;
        let mut by_id: BTreeMap<&str, usize> = BTreeMap::new();
        let mut by_internet_id: BTreeMap<Option<&str>, usize> = BTreeMap::new();
        for r in &records {
            *by_id.entry(r.message_id.as_str()).or_default() += 1;
            *by_internet_id
                .entry(r.internet_message_id.as_deref())
                .or_default() += 1;
            record_keys.insert(r.blob_key.clone(), r.sha256.clone());
        }
        let expected_ids: BTreeSet<&str> =
            expected.iter().map(|m| m.immutable_id.as_str()).collect();
        summary.duplicated += by_id.values().map(|n| n - 1).sum::<usize>()
            + by_internet_id.values().map(|n| n - 1).sum::<usize>()
            + by_id
                .keys()
                .filter(|id| !expected_ids.contains(*id))
                .count();
        for m in expected {
            let Some(record) = records
                .iter()
                .find(|r| r.message_id.as_str() == m.immutable_id)
            else {
                summary.lost += 1;
                continue;
            };
            if record.state != RecordState::Done {
                summary.unfinished += 1;
            } else if record.sha256 != m.sha256 || record.size != m.size {
                summary.corrupt += 1;
            }
        }
        summary.unfinished += unfinished_actions(stack, i, expected);
    }
    let keys: BTreeSet<String> = stack.bucket_keys().await.into_iter().collect();
    summary.orphans = keys
        .iter()
        .filter(|k| !record_keys.contains_key(*k))
        .count();
    summary.lost += record_keys.keys().filter(|k| !keys.contains(*k)).count();
    // Byte for byte, on a sample: one object in ten (each record's checksum is compared with
    // the message's above).
    for (key, sha) in record_keys.iter().step_by(10) {
        if keys.contains(key) && stack.blob_sha256(key).await != *sha {
            summary.corrupt += 1;
        }
    }
    summary
}

/// Messages whose after-import action was not carried out: still in the folder after `move` or
/// `delete`, unread after `mark_read`, moved or read after `none`.
fn unfinished_actions(stack: &Stack, i: usize, expected: &[MessageInfo]) -> usize {
    let held: BTreeMap<String, MessageInfo> = stack
        .sandbox
        .messages(&address(i))
        .into_iter()
        .map(|m| (m.immutable_id.clone(), m))
        .collect();
    expected
        .iter()
        .filter(|m| {
            let now = held.get(&m.immutable_id);
            match action(i) {
                AfterImport::None => now.is_none_or(|n| n.folder_path != FOLDER || n.is_read),
                AfterImport::Move { .. } => now.is_none_or(|n| n.folder_path != PROCESSED),
                AfterImport::MarkRead => now.is_none_or(|n| n.folder_path != FOLDER || !n.is_read),
                AfterImport::Delete => now.is_some_and(|n| n.folder_path == FOLDER),
            }
        })
        .count()
}
