//! The scheduled run fanned out (shared/src/engine/jobs.rs): one job per mailbox on the SQS FIFO
//! queue on moto, consumed by several consumers at once (Lambda scaling out), each mailbox job
//! working one time slice and queueing its continuation. Discovery feeds it: hundreds of
//! mailboxes with `folder = "*"`, imported exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use graph_sandbox::{DEFAULT_CLIENT_ID, DEFAULT_TENANT, Mailbox, MessageInfo, NewMessage, World};
use mailroom::adapters::aws::SqsJobQueue;
use mailroom::clock::SystemClock;
use mailroom::discovery::{DiscoverRule, Members};
use mailroom::domain::job::{JobKind, SyncJob};
use mailroom::domain::{AfterImport, MailboxAddress};
use mailroom::engine::{EngineOptions, JobOutcome, NoObserver};
use mailroom::ports::{DiscoverRules, MailboxConfigs, Subscriptions};
use mailroom_tests::push::PushRig;
use mailroom_tests::stack::Stack;

fn user(i: usize) -> String {
    format!("user{i:03}@contoso.com")
}

fn every_folder(stack: &Stack) -> DiscoverRule {
    DiscoverRule {
        credential: stack.credential.clone(),
        members: Members::All,
        exclude: Vec::new(),
        shared_mailboxes: false,
        folder: "*".into(),
        action: AfterImport::None,
    }
}

/// Waits until the queue is empty and stays so, or panics after `within`.
async fn drained(rig: &PushRig, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut empty_since = None;
    loop {
        if rig.queued().await == 0 {
            let since = *empty_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() > Duration::from_millis(1500) {
                return;
            }
        } else {
            empty_since = None;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queue still holds {} job(s)",
            rig.queued().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_discovered_mailboxes_are_imported_once_by_concurrent_consumers() {
    const MAILBOXES: usize = 200;
    let mut world = World::default_test();
    for i in 0..MAILBOXES {
        world = world.mailbox(
            DEFAULT_TENANT,
            Mailbox::new(&user(i))
                .messages("Inbox", 2)
                .messages("Inbox/Projects", 1)
                .messages("Deleted Items", 1),
        );
    }
    let stack = Stack::start(world).await;
    stack
        .sandbox
        .set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.Read", "User.Read.All"]);
    let rule = every_folder(&stack);
    stack.state.put_discover_rule(&rule).await.unwrap();
    let mut rig = PushRig::start(stack).await;
    rig.add_consumers(2);

    // The tick: discovery, then one job per mailbox.
    let report = rig.engine.discover(false).await.unwrap();
    assert_eq!(report.failed(), 0);
    let fan_out = rig.engine.enqueue_mailboxes(&rig.queue()).await.unwrap();
    assert_eq!((fan_out.queued, fan_out.failed.len()), (MAILBOXES, 0));
    drained(&rig, Duration::from_secs(240)).await;
    let everyone: Vec<(String, Vec<MessageInfo>)> = (0..MAILBOXES)
        .map(|i| (user(i), rig.stack.every_folder_messages(&user(i))))
        .collect();
    let expected: Vec<(&str, Vec<MessageInfo>)> = everyone
        .iter()
        .map(|(u, m)| (u.as_str(), m.clone()))
        .collect();
    rig.stack.assert_each_stored_exactly_once(&expected).await;

    // Between ticks one user leaves and one joins; mail arrives for someone else.
    assert!(rig.stack.sandbox.delete_user(&user(7)));
    rig.stack
        .sandbox
        .add_message("newcomer@contoso.com", "Inbox", NewMessage::new("Hello"));
    rig.stack
        .sandbox
        .add_message(&user(8), "Inbox/Projects", NewMessage::new("Update"));
    let report = rig.engine.discover(false).await.unwrap();
    let plan = &report.rules[0].outcome.as_ref().unwrap().plan;
    assert_eq!((plan.add.len(), plan.disable.len()), (1, 1));
    let fan_out = rig.engine.enqueue_mailboxes(&rig.queue()).await.unwrap();
    assert_eq!(fan_out.queued, MAILBOXES, "the leaver's job is not queued");
    drained(&rig, Duration::from_secs(240)).await;
    let mut expected = expected;
    expected.push((
        "newcomer@contoso.com",
        rig.stack.every_folder_messages("newcomer@contoso.com"),
    ));
    let user8 = rig.stack.every_folder_messages(&user(8));
    expected[8].1 = user8;
    rig.stack.assert_each_stored_exactly_once(&expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_backlog_works_in_slices_each_queueing_its_continuation() {
    const MESSAGES: usize = 60;
    const MAILBOX: &str = "backlog@contoso.com";
    let world = World::default_test().mailbox(
        DEFAULT_TENANT,
        Mailbox::new(MAILBOX).messages("Inbox", MESSAGES),
    );
    let stack = Stack::start(world).await;
    // Slow enough that a 300 ms slice ends with work left.
    stack.sandbox.set_latency(Duration::from_millis(40));
    stack.configure(MAILBOX, "Inbox", AfterImport::None).await;
    let (_, queue_url) = stack.moto.fresh_fifo_queue().await;
    let sqs = stack.clients().sqs;
    let queue = SqsJobQueue::new(sqs.clone(), &queue_url);
    let mut engine = stack.engine_with(
        Arc::new(NoObserver),
        EngineOptions {
            job_slice: Duration::from_millis(300),
            // The deadline is checked between pages.
            page_size: 5,
            ..EngineOptions::default()
        },
    );
    // Slices are wall-clock time.
    engine.clock = Arc::new(SystemClock);
    let job = SyncJob::mailbox(MailboxAddress::parse(MAILBOX).unwrap());
    use mailroom::ports::JobQueue;
    queue.enqueue(&job).await.unwrap();

    let mut outcomes = Vec::new();
    for _ in 0..100 {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .unwrap();
        let Some(message) = received.messages().first() else {
            break;
        };
        assert_eq!(
            received.messages().len(),
            1,
            "one job at a time per mailbox"
        );
        let group =
            message.attributes().unwrap()[&MessageSystemAttributeName::MessageGroupId].clone();
        assert_eq!(group, MAILBOX);
        let job = SqsJobQueue::parse_job(message.body().unwrap()).unwrap();
        assert_eq!(job.kind, JobKind::Mailbox);
        let stop_at = time::OffsetDateTime::now_utc() + time::Duration::minutes(10);
        let outcome = engine.run_job_continuing(&job, stop_at, &queue).await;
        sqs.delete_message()
            .queue_url(&queue_url)
            .receipt_handle(message.receipt_handle().unwrap())
            .send()
            .await
            .unwrap();
        let done = matches!(outcome, JobOutcome::Done { .. });
        outcomes.push(outcome);
        if done {
            break;
        }
    }
    let continued = outcomes
        .iter()
        .filter(|o| matches!(o, JobOutcome::Continued { .. }))
        .count();
    assert!(
        continued >= 2,
        "the backlog took several slices: {outcomes:?}"
    );
    assert!(
        matches!(outcomes.last(), Some(JobOutcome::Done { .. })),
        "{outcomes:?}"
    );
    let held = stack.sandbox.folder_messages(MAILBOX, "Inbox");
    stack.assert_stored_exactly_once(MAILBOX, &held).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_backlog_delays_the_small_mailboxes_by_at_most_one_slice() {
    const BIG: &str = "big@contoso.com";
    let small: Vec<String> = (0..5).map(|i| format!("small{i}@contoso.com")).collect();
    let mut world =
        World::default_test().mailbox(DEFAULT_TENANT, Mailbox::new(BIG).messages("Inbox", 150));
    for address in &small {
        world = world.mailbox(DEFAULT_TENANT, Mailbox::new(address).messages("Inbox", 3));
    }
    let stack = Stack::start(world).await;
    stack.sandbox.set_latency(Duration::from_millis(20));
    stack.configure(BIG, "Inbox", AfterImport::None).await;
    for address in &small {
        stack.configure(address, "Inbox", AfterImport::None).await;
    }
    let (_, queue_url) = stack.moto.fresh_fifo_queue().await;
    let sqs = stack.clients().sqs;
    let queue = SqsJobQueue::new(sqs.clone(), &queue_url);
    let mut engine = stack.engine_with(
        Arc::new(NoObserver),
        EngineOptions {
            job_slice: Duration::from_millis(250),
            page_size: 5,
            ..EngineOptions::default()
        },
    );
    engine.clock = Arc::new(SystemClock);
    // The big mailbox's job first, as the worst case.
    use mailroom::ports::JobQueue;
    queue
        .enqueue(&SyncJob::mailbox(MailboxAddress::parse(BIG).unwrap()))
        .await
        .unwrap();
    for address in &small {
        queue
            .enqueue(&SyncJob::mailbox(MailboxAddress::parse(address).unwrap()))
            .await
            .unwrap();
    }

    // One consumer, one job at a time: the order the jobs ran in.
    let mut ran: Vec<(String, u32)> = Vec::new();
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(1)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let Some(message) = received.messages().first() else {
            break;
        };
        let job = SqsJobQueue::parse_job(message.body().unwrap()).unwrap();
        let stop_at = time::OffsetDateTime::now_utc() + time::Duration::minutes(10);
        engine.run_job_continuing(&job, stop_at, &queue).await;
        sqs.delete_message()
            .queue_url(&queue_url)
            .receipt_handle(message.receipt_handle().unwrap())
            .send()
            .await
            .unwrap();
        ran.push((job.mailbox.to_string(), job.slice));
        assert!(ran.len() < 200, "{ran:?}");
    }
    let last_small = ran.iter().rposition(|(m, _)| m != BIG).unwrap();
    let big_before = ran[..last_small].iter().filter(|(m, _)| m == BIG).count();
    assert!(
        big_before <= 1,
        "the small mailboxes waited for {big_before} slices of the big one: {ran:?}"
    );
    let big_slices = ran.iter().filter(|(m, _)| m == BIG).count();
    assert!(big_slices >= 3, "the backlog took several slices: {ran:?}");
    for address in std::iter::once(BIG).chain(small.iter().map(String::as_str)) {
        assert_eq!(
            stack.records(address).await.len(),
            stack.sandbox.folder_messages(address, "Inbox").len(),
            "{address}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_upkeep_fans_out_one_job_per_due_folder() {
    const MAILBOXES: usize = 6;
    let mut world = World::default_test();
    for i in 0..MAILBOXES {
        world = world.mailbox(DEFAULT_TENANT, Mailbox::new(&user(i)).folder("Inbox"));
    }
    let stack = Stack::start(world).await;
    for i in 0..MAILBOXES {
        stack.configure(&user(i), "Inbox", AfterImport::None).await;
    }
    let mut rig = PushRig::start(stack).await;
    rig.add_consumers(1);
    let subscriptions = |rig: &PushRig| {
        let state = rig.stack.state.clone();
        async move {
            let mut records = state.list_subscriptions().await.unwrap();
            records.sort_by(|a, b| a.mailbox.cmp(&b.mailbox));
            records
        }
    };

    // The first tick: every folder is due; the tick queues a job for each and calls no Graph.
    rig.stack.sandbox.clear_requests();
    let report = rig.maintain_queued().await;
    assert_eq!((report.queued, report.created), (6, 0), "{report:?}");
    assert!(rig.stack.sandbox.requests().is_empty());
    drained(&rig, Duration::from_secs(60)).await;
    let first = subscriptions(&rig).await;
    let mailboxes: Vec<String> = first.iter().map(|r| r.mailbox.to_string()).collect();
    assert_eq!(mailboxes, (0..MAILBOXES).map(user).collect::<Vec<_>>());
    assert_eq!(rig.stack.sandbox.subscriptions().len(), MAILBOXES);

    // The next tick: every subscription is fresh; nothing is queued.
    let report = rig.maintain_queued().await;
    assert_eq!((report.queued, report.unchanged), (0, 6), "{report:?}");

    // Two days on, each is within a day of expiry: the jobs renew them in place.
    rig.stack.clock.advance(time::Duration::days(2));
    rig.stack
        .sandbox
        .advance_clock(Duration::from_secs(2 * 86_400));
    let report = rig.maintain_queued().await;
    assert_eq!((report.queued, report.unchanged), (6, 0), "{report:?}");
    drained(&rig, Duration::from_secs(60)).await;
    let renewed = subscriptions(&rig).await;
    for (before, after) in first.iter().zip(&renewed) {
        assert_eq!(before.id, after.id);
        assert!(after.expires_at > before.expires_at + time::Duration::days(1));
    }

    // A folder no longer configured: its job removes the subscription, at Graph and here.
    let gone = mailroom::domain::FolderKey {
        mailbox: MailboxAddress::parse(&user(0)).unwrap(),
        folder: "Inbox".into(),
    };
    assert!(rig.stack.state.remove_mailbox(&gone).await.unwrap());
    let report = rig.maintain_queued().await;
    assert_eq!((report.queued, report.unchanged), (1, 5), "{report:?}");
    drained(&rig, Duration::from_secs(60)).await;
    let left = subscriptions(&rig).await;
    assert_eq!(left.len(), MAILBOXES - 1);
    assert!(left.iter().all(|r| r.key() != gone));
    assert_eq!(rig.stack.sandbox.subscriptions().len(), MAILBOXES - 1);

    // Push still brings new mail in through the kept subscriptions.
    let message = rig
        .stack
        .sandbox
        .add_message(&user(3), "Inbox", NewMessage::new("Pushed"));
    rig.wait_for_records(&user(3), &[message.immutable_id], Duration::from_secs(15))
        .await;
}
