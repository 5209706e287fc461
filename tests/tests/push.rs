//! Push, end to end over HTTP: sandbox notifications → webhook → SQS FIFO (moto) → import →
//! DynamoDB + S3 (moto). The scheduled poll is never run unless a test says so; every test ends
//! with the invariant: what the mailbox held is stored exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use graph_sandbox::{DEFAULT_TENANT, LifecycleEvent, Mailbox, MessageInfo, NewMessage, World};
use mailroom::clock::Clock;
use mailroom::domain::{AfterImport, MailboxAddress};
use mailroom::ports::{Leases, MailboxConfigs, Subscriptions};
use mailroom_tests::push::PushRig;
use mailroom_tests::stack::Stack;

const MAILBOX: &str = "ops@contoso.com";
const FOLDER: &str = "Inbox/Alerts";
const PROCESSED: &str = "Inbox/Processed";
const WAIT: Duration = Duration::from_secs(15);

fn world() -> World {
    World::default_test().mailbox(
        DEFAULT_TENANT,
        Mailbox::new(MAILBOX).folder(FOLDER).folder(PROCESSED),
    )
}

fn move_to_processed() -> AfterImport {
    AfterImport::Move {
        processed_folder: PROCESSED.into(),
    }
}

/// A rig with the folder configured and subscribed.
async fn subscribed(action: AfterImport) -> PushRig {
    let stack = Stack::start(world()).await;
    stack.configure(MAILBOX, FOLDER, action).await;
    let rig = PushRig::start(stack).await;
    let report = rig.maintain().await;
    assert_eq!(report.created, 1, "{report:?}");
    assert!(report.errors.is_empty(), "{report:?}");
    rig
}

fn add(rig: &PushRig, n: usize, prefix: &str) -> Vec<MessageInfo> {
    (0..n)
        .map(|i| {
            rig.stack.sandbox.add_message(
                MAILBOX,
                FOLDER,
                NewMessage::new(&format!("{prefix} {i}")),
            )
        })
        .collect()
}

fn ids(messages: &[MessageInfo]) -> Vec<String> {
    messages.iter().map(|m| m.immutable_id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_message_is_stored_by_push_without_any_scheduled_run() {
    let rig = subscribed(move_to_processed()).await;
    let subscriptions = rig.stack.sandbox.subscriptions();
    assert_eq!(subscriptions.len(), 1);
    assert_eq!(subscriptions[0].notification_url, rig.urls.notification_url);
    assert_eq!(
        subscriptions[0].lifecycle_notification_url.as_deref(),
        Some(rig.urls.lifecycle_url.as_str())
    );
    assert_eq!(subscriptions[0].change_type, "created");
    let stored = rig.stack.state.list_subscriptions().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        subscriptions[0].client_state.as_deref(),
        Some(stored[0].client_state.expose())
    );

    let started = std::time::Instant::now();
    let messages = add(&rig, 1, "Disk almost full");
    rig.wait_for_records(MAILBOX, &ids(&messages), WAIT).await;
    eprintln!(
        "push latency (message added -> record done): {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    rig.stack
        .assert_stored_exactly_once(MAILBOX, &messages)
        .await;
    assert_eq!(
        rig.stack.sandbox.folder_messages(MAILBOX, PROCESSED).len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_reordered_notifications_store_each_message_once() {
    let rig = subscribed(move_to_processed()).await;
    rig.stack.sandbox.duplicate_next_notifications(6);
    rig.stack.sandbox.reorder_next_notifications(6);
    let messages = add(&rig, 12, "Backup job");
    rig.wait_for_records(MAILBOX, &ids(&messages), WAIT).await;
    // The sandbox holds duplicates and reordered notifications back; the import can finish
    // before they are sent. Wait for them, then check nothing was stored twice because of them.
    let sent = || -> usize {
        rig.stack
            .sandbox
            .deliveries()
            .iter()
            .filter(|d| d.delivered && d.kind == graph_sandbox::DeliveryKind::Notification)
            .map(|d| d.payload["value"].as_array().map_or(0, Vec::len))
            .sum()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while sent() <= messages.len() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.stack
        .assert_stored_exactly_once(MAILBOX, &messages)
        .await;
    let sent = sent();
    assert!(
        sent > messages.len(),
        "the sandbox duplicated some notifications: {sent} for {} messages",
        messages.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_notification_is_healed_by_the_next_scheduled_run() {
    let rig = subscribed(move_to_processed()).await;
    rig.stack.sandbox.drop_next_notifications(1);
    let lost = add(&rig, 1, "Nobody told us");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        rig.stack.records(MAILBOX).await.is_empty(),
        "nothing should have been pushed"
    );
    let report = rig.stack.run().await;
    assert_eq!(report.imported(), 1, "{report:?}");
    rig.stack.assert_stored_exactly_once(MAILBOX, &lost).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_triggers_a_full_resync_that_stores_what_was_never_notified() {
    // Delta mode: the cursor would otherwise make a later sync start after it.
    let rig = subscribed(AfterImport::None).await;
    let early = add(&rig, 3, "Before");
    rig.wait_for_records(MAILBOX, &ids(&early), WAIT).await;
    rig.stack.sandbox.drop_next_notifications(2);
    let unseen = add(&rig, 2, "Dropped");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rig.stack.records(MAILBOX).await.len(), 3);

    let id = rig.stack.sandbox.subscriptions()[0].id.clone();
    rig.stack.sandbox.clear_requests();
    assert!(rig.stack.sandbox.lifecycle(&id, LifecycleEvent::Missed));
    let all: Vec<MessageInfo> = early.iter().chain(&unseen).cloned().collect();
    rig.wait_for_records(MAILBOX, &ids(&all), WAIT).await;
    // A full resync: a delta round from scratch (no token), not a catch-up from the saved cursor.
    let delta_rounds: Vec<String> = rig
        .stack
        .sandbox
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/messages/delta"))
        .map(|r| r.query)
        .collect();
    assert!(
        delta_rounds
            .iter()
            .any(|q| !q.contains("deltatoken") && !q.contains("skiptoken")),
        "no initial delta request after `missed`: {delta_rounds:?}"
    );
    // Action `none` leaves the mailbox as it was: it still holds all five.
    rig.stack.assert_stored_exactly_once(MAILBOX, &all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_renewed_before_expiry_and_recreated_after_it_across_simulated_days() {
    let rig = subscribed(move_to_processed()).await;
    let first = rig.stack.state.list_subscriptions().await.unwrap()[0].clone();
    let advance = |days: i64| {
        rig.stack.clock.advance(time::Duration::days(days));
        rig.stack
            .sandbox
            .advance_clock(Duration::from_secs(days as u64 * 86_400));
    };

    // Day 1: plenty of time left; nothing to do.
    advance(1);
    let report = rig.maintain().await;
    assert_eq!((report.unchanged, report.renewed), (1, 0), "{report:?}");

    // Day 2 (of a ~2.9-day lifetime): within a day of expiry, so renewed in place.
    advance(1);
    let report = rig.maintain().await;
    assert_eq!(report.renewed, 1, "{report:?}");
    let renewed = rig.stack.state.list_subscriptions().await.unwrap()[0].clone();
    assert_eq!(renewed.id, first.id);
    assert!(renewed.expires_at > first.expires_at + time::Duration::days(1));
    assert_eq!(
        rig.stack.sandbox.subscriptions()[0].expiration,
        renewed.expires_at
    );

    // Four days without upkeep: Graph lets it lapse; the next upkeep makes a new one.
    advance(4);
    let report = rig.maintain().await;
    assert_eq!(report.created, 1, "{report:?}");
    let fresh = rig.stack.state.list_subscriptions().await.unwrap();
    assert_eq!(fresh.len(), 1);
    assert_ne!(fresh[0].id, first.id);
    assert!(fresh[0].expires_at > rig.stack.clock.now());

    let messages = add(&rig, 1, "After renewal");
    rig.wait_for_records(MAILBOX, &ids(&messages), WAIT).await;
    rig.stack
        .assert_stored_exactly_once(MAILBOX, &messages)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_removed_recreates_it_and_catches_up() {
    let rig = subscribed(move_to_processed()).await;
    let old = rig.stack.sandbox.subscriptions()[0].id.clone();
    assert!(
        rig.stack
            .sandbox
            .lifecycle(&old, LifecycleEvent::SubscriptionRemoved)
    );
    // Graph has the new subscription before the record of it is written: wait for both.
    let started = std::time::Instant::now();
    loop {
        let now = rig.stack.sandbox.subscriptions();
        let records = rig.stack.state.list_subscriptions().await.unwrap();
        if now.len() == 1 && now[0].id != old && records.len() == 1 && records[0].id == now[0].id {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "no new subscription; sandbox has {now:?}, the store {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let messages = add(&rig, 2, "After recreate");
    rig.wait_for_records(MAILBOX, &ids(&messages), WAIT).await;
    rig.stack
        .assert_stored_exactly_once(MAILBOX, &messages)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauthorization_required_renews_the_subscription() {
    let rig = subscribed(move_to_processed()).await;
    let before = rig.stack.state.list_subscriptions().await.unwrap()[0].clone();
    // Later, so the renewal asks for a later expiry than the one granted at creation.
    rig.stack.clock.advance(time::Duration::hours(3));
    rig.stack
        .sandbox
        .advance_clock(Duration::from_secs(3 * 3600));
    assert!(
        rig.stack
            .sandbox
            .lifecycle(&before.id, LifecycleEvent::ReauthorizationRequired)
    );
    rig.wait_for_renewal(&before, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_for_a_mailbox_leased_elsewhere_is_retried_until_it_runs() {
    let rig = subscribed(move_to_processed()).await;
    let now = rig.stack.clock.now();
    let lease = format!("mailbox#{MAILBOX}");
    rig.stack
        .state
        .acquire_lease(
            &lease,
            "another-runner",
            now,
            now + time::Duration::hours(1),
        )
        .await
        .unwrap();
    let messages = add(&rig, 1, "While busy");
    let started = std::time::Instant::now();
    while rig.jobs_failed.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(started.elapsed() < WAIT, "the job never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rig.stack.records(MAILBOX).await.is_empty());
    rig.stack
        .state
        .release_lease(&lease, "another-runner")
        .await
        .unwrap();
    rig.wait_for_records(MAILBOX, &ids(&messages), WAIT).await;
    rig.stack
        .assert_stored_exactly_once(MAILBOX, &messages)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_over_http_enqueue_nothing_and_reveal_nothing() {
    let rig = subscribed(move_to_processed()).await;
    rig.set_consuming(false);
    let record = rig.stack.state.list_subscriptions().await.unwrap()[0].clone();
    let http = reqwest::Client::new();
    let url = &rig.urls.notification_url;
    let notification = |subscription: &str, client_state: &str| {
        serde_json::json!({"value": [{
            "subscriptionId": subscription,
            "clientState": client_state,
            "changeType": "created",
            "resource": "Users/x/Messages/y",
        }]})
        .to_string()
    };
    let post = |body: String, content_type: &'static str| {
        http.post(url)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let unknown = post(
        notification("no-such-subscription", "x"),
        "application/json",
    )
    .await
    .unwrap();
    let wrong = post(
        notification(&record.id, "not-the-client-state"),
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(unknown.status(), 202);
    assert_eq!(wrong.status(), 202);
    assert_eq!(unknown.text().await.unwrap(), wrong.text().await.unwrap());
    let malformed = post("{\"value\": [".into(), "application/json")
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let text = post(
        notification(&record.id, record.client_state.expose()),
        "text/plain",
    )
    .await
    .unwrap();
    assert_eq!(text.status(), 415);
    let huge = post("x".repeat(2 * 1024 * 1024), "application/json")
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    assert_eq!(rig.queued().await, 0, "nothing may be enqueued");

    // The control: the right clientState does enqueue.
    let good = post(
        notification(&record.id, record.client_state.expose()),
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(good.status(), 202);
    assert_eq!(rig.queued().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_no_longer_configured_loses_its_subscription() {
    let rig = subscribed(move_to_processed()).await;
    let key = mailroom::domain::FolderKey {
        mailbox: MailboxAddress::parse(MAILBOX).unwrap(),
        folder: FOLDER.into(),
    };
    assert!(rig.stack.state.remove_mailbox(&key).await.unwrap());
    let report = rig.maintain().await;
    assert_eq!(report.removed, 1, "{report:?}");
    assert!(rig.stack.sandbox.subscriptions().is_empty());
    assert!(
        rig.stack
            .state
            .list_subscriptions()
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_whose_subscriptions_another_runner_keeps_is_left_to_it() {
    let stack = Stack::start(world()).await;
    stack.configure(MAILBOX, FOLDER, move_to_processed()).await;
    let rig = PushRig::start(stack).await;
    let lease = format!("subscriptions#{MAILBOX}");
    let now = rig.stack.clock.now();
    rig.stack
        .state
        .acquire_lease(
            &lease,
            "other-runner",
            now,
            now + time::Duration::minutes(5),
        )
        .await
        .unwrap();

    let report = rig.maintain().await;
    assert_eq!((report.busy, report.created), (1, 0), "{report:?}");
    assert!(rig.stack.sandbox.subscriptions().is_empty());

    // Once the other runner lets go, the next upkeep subscribes the folder once.
    rig.stack
        .state
        .release_lease(&lease, "other-runner")
        .await
        .unwrap();
    let report = rig.maintain().await;
    assert_eq!((report.busy, report.created), (0, 1), "{report:?}");
    assert_eq!(rig.stack.sandbox.subscriptions().len(), 1);
}
