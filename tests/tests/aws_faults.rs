//! AWS faults on the import path, injected by the proxy between the SDK and moto
//! (tests/src/awsproxy.rs): what the SDK's own retries absorb, what reaches the engine, and the
//! end state, which is always the mailbox stored exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use graph_sandbox::{DEFAULT_TENANT, Mailbox, World};
use mailroom::domain::AfterImport;
use mailroom::engine::MailboxStatus;
use mailroom_tests::awsproxy::{AwsFault, AwsProxy, FaultRule};
use mailroom_tests::moto::Moto;
use mailroom_tests::stack::Stack;

const MAILBOX: &str = "reports@contoso.com";
const FOLDER: &str = "Inbox/Backup Reports";
const MESSAGES: usize = 12;

async fn stack() -> (Stack, AwsProxy) {
    let proxy = AwsProxy::start(&Moto::shared().endpoint()).await;
    let world = World::default_test().mailbox(
        DEFAULT_TENANT,
        Mailbox::new(MAILBOX)
            .folder(FOLDER)
            .folder("Inbox/Processed")
            .messages(FOLDER, MESSAGES),
    );
    let stack = Stack::start(world).await.via(proxy.endpoint());
    stack
        .configure(
            MAILBOX,
            FOLDER,
            AfterImport::Move {
                processed_folder: "Inbox/Processed".into(),
            },
        )
        .await;
    (stack, proxy)
}

fn calls(proxy: &AwsProxy, service: &str, operation: &str) -> u64 {
    proxy
        .calls()
        .get(&(service.to_owned(), operation.to_owned()))
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn throttling_and_server_errors_the_sdk_retries_do_not_reach_the_engine() {
    let (stack, proxy) = stack().await;
    let held = stack.sandbox.folder_messages(MAILBOX, FOLDER);
    for rule in [
        FaultRule::new("dynamodb", "PutItem", AwsFault::Throttle, 2),
        FaultRule::new("dynamodb", "UpdateItem", AwsFault::ServerError, 2),
        FaultRule::new("s3", "PutObject", AwsFault::Throttle, 2),
        FaultRule::new("s3", "PutObject", AwsFault::ServerError, 1),
    ] {
        proxy.inject(rule);
    }
    let report = stack.run().await;
    assert_eq!(proxy.pending_faults(), 0, "every fault fired");
    assert_eq!(report.imported(), MESSAGES as u64, "{report:#?}");
    assert_eq!(report.mailboxes[0].failed(), 0, "{report:#?}");
    stack.assert_stored_exactly_once(MAILBOX, &held).await;
    // One retry layer: each faulted call was repeated by the SDK, once per fault, and the
    // engine saw none of them (no message was attempted twice).
    assert_eq!(calls(&proxy, "s3", "PutObject"), MESSAGES as u64 + 3);
    println!("calls with 7 faults: {:?}", proxy.calls());
}

#[tokio::test]
async fn a_store_that_keeps_throttling_fails_the_run_clearly_and_the_next_run_stores_each_once() {
    let (stack, proxy) = stack().await;
    let held = stack.sandbox.folder_messages(MAILBOX, FOLDER);
    // More throttling than the SDK's attempts: the first write of the run (the mailbox's
    // lease) gives up.
    proxy.inject(FaultRule::new(
        "dynamodb",
        "PutItem",
        AwsFault::Throttle,
        12,
    ));
    let first = stack.run().await;
    let attempts = calls(&proxy, "dynamodb", "PutItem");
    let mailbox = &first.mailboxes[0];
    let error = mailbox.error.clone().unwrap_or_default();
    println!(
        "first run: {:?}, {attempts} PutItem attempts: {error}",
        mailbox.status
    );
    assert_eq!(mailbox.status, MailboxStatus::Failed, "{first:#?}");
    assert_eq!(first.imported(), 0);
    assert!(error.contains("throttl"), "{error}");
    // The SDK's attempts, once: the engine did not add a retry layer of its own on top.
    assert!((2..=4).contains(&attempts), "{attempts} attempts");

    // The throttling ends.
    proxy.clear_faults();
    let second = stack.run().await;
    assert_eq!(second.mailboxes[0].status, MailboxStatus::Ok, "{second:#?}");
    assert_eq!(second.imported(), MESSAGES as u64);
    stack.assert_stored_exactly_once(MAILBOX, &held).await;
}

#[tokio::test]
async fn a_throttled_fan_out_names_the_mailboxes_not_queued_and_the_next_tick_queues_them() {
    use mailroom::adapters::aws::SqsJobQueue;
    use mailroom::engine::NoObserver;
    use std::collections::BTreeSet;

    const MAILBOXES: usize = 30;
    let proxy = AwsProxy::start(&Moto::shared().endpoint()).await;
    let world = (0..MAILBOXES).fold(World::default_test(), |w, i| {
        w.mailbox(
            DEFAULT_TENANT,
            Mailbox::new(&format!("user{i:02}@contoso.com")),
        )
    });
    let stack = Stack::start(world).await.via(proxy.endpoint());
    for i in 0..MAILBOXES {
        stack
            .configure(
                &format!("user{i:02}@contoso.com"),
                "Inbox",
                AfterImport::None,
            )
            .await;
    }
    let (_, queue_url) = stack.moto.fresh_fifo_queue().await;
    let sqs = stack.clients().sqs;
    let queue = SqsJobQueue::new(sqs.clone(), &queue_url);
    let engine = stack.engine_with(std::sync::Arc::new(NoObserver), Default::default());

    // Throttled past the SDK's attempts for the first batches.
    proxy.inject(FaultRule::new(
        "sqs",
        "SendMessageBatch",
        AwsFault::Throttle,
        7,
    ));
    let first = engine.enqueue_mailboxes(&queue).await.unwrap();
    println!("first tick: {first:?}; calls {:?}", proxy.calls());
    assert_eq!(proxy.pending_faults(), 0);
    assert!(!first.failed.is_empty(), "{first:?}");
    assert_eq!(first.queued + first.failed.len(), MAILBOXES);
    assert!(
        first.failed[0].contains("user"),
        "names the mailbox: {first:?}"
    );

    proxy.clear_faults();
    let second = engine.enqueue_mailboxes(&queue).await.unwrap();
    assert_eq!((second.queued, second.failed.len()), (MAILBOXES, 0));

    // Every mailbox has a job; none is lost.
    let mut groups = BTreeSet::new();
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
            )
            .send()
            .await
            .unwrap();
        if received.messages().is_empty() {
            break;
        }
        for m in received.messages() {
            groups.insert(
                m.attributes().unwrap()
                    [&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId]
                    .clone(),
            );
            sqs.delete_message()
                .queue_url(&queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    assert_eq!(groups.len(), MAILBOXES);
}

#[tokio::test]
async fn a_reset_connection_and_a_lost_answer_are_retried_by_the_sdk_and_nothing_is_stored_twice() {
    let (stack, proxy) = stack().await;
    let held = stack.sandbox.folder_messages(MAILBOX, FOLDER);
    // A reset before AWS sees the call; a lost answer after AWS acted on it (the SDK's retry
    // then repeats a write that already happened: a conditional one fails its condition).
    // Spaced out, so no call meets more than the SDK's three attempts can absorb.
    for rule in [
        FaultRule::new("dynamodb", "PutItem", AwsFault::Reset, 1),
        FaultRule::new("dynamodb", "PutItem", AwsFault::LoseAnswer, 1).after(3),
        FaultRule::new("dynamodb", "PutItem", AwsFault::LoseAnswer, 1).after(6),
        FaultRule::new("dynamodb", "PutItem", AwsFault::Reset, 1).after(9),
        FaultRule::new("dynamodb", "UpdateItem", AwsFault::LoseAnswer, 1).after(1),
        FaultRule::new("dynamodb", "UpdateItem", AwsFault::LoseAnswer, 1).after(4),
        FaultRule::new("dynamodb", "UpdateItem", AwsFault::Reset, 1).after(7),
        FaultRule::new("s3", "PutObject", AwsFault::LoseAnswer, 1).after(1),
        FaultRule::new("s3", "PutObject", AwsFault::Reset, 1).after(4),
        FaultRule::new("s3", "PutObject", AwsFault::LoseAnswer, 1).after(7),
    ] {
        proxy.inject(rule);
    }
    let report = stack.run().await;
    println!(
        "first run: {report:#?}\nfaults {:?}, calls {:?}",
        proxy.faults_fired(),
        proxy.calls()
    );
    assert_eq!(proxy.pending_faults(), 0, "every fault fired");
    // A record write whose answer was lost is retried by the SDK and fails its condition: the
    // engine finds the record its own first attempt wrote, counts the message as already
    // stored, and finishes it (moves it, marks it done) all the same.
    let folder = &report.mailboxes[0].folders[0];
    assert_eq!(
        folder.imported + folder.already_stored,
        MESSAGES as u64,
        "{report:#?}"
    );
    assert_eq!(report.mailboxes[0].failed(), 0, "{report:#?}");
    stack.assert_stored_exactly_once(MAILBOX, &held).await;
    assert!(stack.sandbox.folder_messages(MAILBOX, FOLDER).is_empty());
    let rerun = stack.run().await;
    assert_eq!(rerun.imported(), 0, "{rerun:#?}");
}

#[tokio::test]
async fn a_call_answered_after_the_sdk_timeout_is_retried_and_its_late_arrival_changes_nothing() {
    use std::time::Duration;
    let proxy = AwsProxy::start(&Moto::shared().endpoint()).await;
    let world = World::default_test().mailbox(
        DEFAULT_TENANT,
        Mailbox::new(MAILBOX)
            .folder(FOLDER)
            .folder("Inbox/Processed")
            .messages(FOLDER, MESSAGES),
    );
    // The SDK gives an attempt one second (the functions: ATTEMPT_TIMEOUT); the delayed calls
    // reach moto after 2.5 s, when the SDK's retry of each has long succeeded.
    let attempt = Duration::from_secs(1);
    let stack = Stack::start(world)
        .await
        .via_timing_out(proxy.endpoint(), attempt);
    stack
        .configure(
            MAILBOX,
            FOLDER,
            AfterImport::Move {
                processed_folder: "Inbox/Processed".into(),
            },
        )
        .await;
    let held = stack.sandbox.folder_messages(MAILBOX, FOLDER);
    let late = Duration::from_millis(2500);
    for rule in [
        FaultRule::new("dynamodb", "PutItem", AwsFault::Delay(late), 1),
        FaultRule::new("dynamodb", "PutItem", AwsFault::Delay(late), 1).after(4),
        FaultRule::new("dynamodb", "UpdateItem", AwsFault::Delay(late), 1).after(1),
        FaultRule::new("dynamodb", "UpdateItem", AwsFault::Delay(late), 1).after(5),
        FaultRule::new("s3", "PutObject", AwsFault::Delay(late), 1).after(2),
    ] {
        proxy.inject(rule);
    }
    let report = stack.run().await;
    println!("run: {report:#?}\ncalls {:?}", proxy.calls());
    assert_eq!(proxy.pending_faults(), 0, "every fault fired");
    assert_eq!(report.imported(), MESSAGES as u64, "{report:#?}");
    assert_eq!(report.mailboxes[0].failed(), 0, "{report:#?}");
    // The late calls land now; they must not undo anything (a record back to pending, an
    // object replaced by other bytes).
    tokio::time::sleep(late + Duration::from_millis(500)).await;
    stack.assert_stored_exactly_once(MAILBOX, &held).await;
    let rerun = stack.run().await;
    assert_eq!(rerun.imported(), 0, "{rerun:#?}");
    stack.assert_stored_exactly_once(MAILBOX, &held).await;
}
