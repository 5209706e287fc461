//! The event of every stored message (shared/src/engine/events.rs), end to end: the engine
//! publishes to an EventBridge bus on moto, whose rule delivers to an SQS queue the test reads.
//! Every stored message yields one event id, carrying what the payload promises; a crash at any
//! step, the event steps included, loses no event and never gives one message two ids.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use graph_sandbox::{DEFAULT_TENANT, Mailbox, MessageInfo, NewMessage, World};
use mailroom::adapters::aws::EventBridgePublisher;
use mailroom::domain::event::{MessageEvent, RawLocation};
use mailroom::domain::{AfterImport, FolderKey, MailboxAddress, MessageId};
use mailroom::engine::{Engine, EngineOptions, ImportObserver, Interrupted, NoObserver, Step};
use mailroom::ports::EventOutbox;
use mailroom_tests::stack::{RUN_BUDGET, Stack};

const MAILBOX: &str = "ops@contoso.com";
const FOLDER: &str = "Inbox/Alerts";
const PROCESSED: &str = "Inbox/Processed";

fn world() -> World {
    World::default_test().mailbox(
        DEFAULT_TENANT,
        Mailbox::new(MAILBOX)
            .folder(FOLDER)
            .folder(PROCESSED)
            .messages(FOLDER, 4),
    )
}

/// A stack whose engines publish to a fresh bus; returns the queue its rule delivers to.
async fn stack() -> (Stack, String, String) {
    let stack = Stack::start(world()).await;
    stack
        .configure(
            MAILBOX,
            FOLDER,
            AfterImport::Move {
                processed_folder: PROCESSED.into(),
            },
        )
        .await;
    let (bus, queue) = stack.moto.fresh_event_sink().await;
    (stack, bus, queue)
}

fn engine(stack: &Stack, bus: &str, observer: Arc<dyn ImportObserver>) -> Engine {
    let mut engine = stack.engine_with(observer, EngineOptions::default());
    engine.events = Some(Arc::new(EventBridgePublisher::new(
        stack.clients().eventbridge,
        bus,
    )));
    engine
}

/// The Mailroom events on `queue`, as delivered (duplicates kept).
async fn delivered(stack: &Stack, queue: &str) -> Vec<MessageEvent> {
    stack
        .moto
        .drain_queue(queue)
        .await
        .into_iter()
        .map(|(_, body)| {
            let envelope: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(envelope["source"], "mailroom");
            assert_eq!(envelope["detail-type"], "Message Stored");
            serde_json::from_value(envelope["detail"].clone()).unwrap()
        })
        .collect()
}

/// Each of `messages` has exactly one event id among `events` (republished copies share it), and
/// no event is about anything else.
fn assert_one_id_each(events: &[MessageEvent], messages: &[MessageInfo]) {
    let mailbox = MailboxAddress::parse(MAILBOX).unwrap();
    let mut ids: BTreeMap<String, &str> = BTreeMap::new();
    for event in events {
        assert_eq!(
            event.id,
            MessageEvent::id_of(&mailbox, &event.message_id),
            "an event id is not its message's"
        );
        ids.insert(event.id.clone(), event.message_id.as_str());
    }
    let expected: BTreeMap<String, &str> = messages
        .iter()
        .map(|m| {
            let id = MessageId::new(m.immutable_id.clone());
            (MessageEvent::id_of(&mailbox, &id), m.immutable_id.as_str())
        })
        .collect();
    assert_eq!(ids, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stored_message_yields_one_event_with_what_the_payload_promises() {
    let (stack, bus, queue) = stack().await;
    let mut messages = stack.sandbox.folder_messages(MAILBOX, FOLDER);
    messages.push(stack.sandbox.add_message(
        MAILBOX,
        FOLDER,
        NewMessage::new("Invoice \u{202E}fdp.exe").attachment(
            "invoice.pdf",
            "application/pdf",
            2048,
        ),
    ));
    let run = stack
        .run_with(engine(&stack, &bus, Arc::new(NoObserver)))
        .await;
    assert_eq!(run.imported(), messages.len() as u64, "{run:#?}");
    let events_report = run.mailboxes[0].events.clone().unwrap();
    assert_eq!(events_report.published, messages.len() as u64);

    let events = delivered(&stack, &queue).await;
    assert_eq!(events.len(), messages.len());
    assert_one_id_each(&events, &messages);
    let records = stack.records(MAILBOX).await;
    // (The generated messages may have attachments of their own.)
    let invoice = events
        .iter()
        .find(|e| e.subject.as_deref() == Some("Invoice \u{202E}fdp.exe"))
        .expect("the invoice's event");
    assert_eq!(invoice.attachments.len(), 1, "{:?}", invoice.attachments);
    assert_eq!(invoice.attachments[0].name, "invoice.pdf");
    assert_eq!(invoice.attachments[0].size, 2048);
    assert!(!invoice.preview.contains('\u{202E}'));
    assert!(!invoice.to.is_empty());
    assert!(invoice.conversation_id.is_some());
    let record = records
        .iter()
        .find(|r| r.message_id == invoice.message_id)
        .unwrap();
    assert_eq!(
        invoice.raw,
        RawLocation::S3 {
            bucket: stack.bucket.clone(),
            key: record.blob_key.clone()
        }
    );
    assert_eq!(
        (invoice.size, &invoice.sha256),
        (record.size, &record.sha256)
    );

    // The next run stores nothing and publishes nothing.
    let again = stack
        .run_with(engine(&stack, &bus, Arc::new(NoObserver)))
        .await;
    assert_eq!(again.mailboxes[0].events.clone().unwrap().published, 0);
    assert!(delivered(&stack, &queue).await.is_empty());
}

/// Stops the run before the `nth` time it reaches `step`, as a crash would.
struct CrashAt {
    step: Step,
    nth: usize,
    seen: AtomicUsize,
}

impl ImportObserver for CrashAt {
    fn before(&self, step: Step, _: &FolderKey, _: Option<&MessageId>) -> Result<(), Interrupted> {
        if step == self.step && self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.nth {
            return Err(Interrupted(step));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_step_loses_no_event_and_gives_no_message_two_ids() {
    for step in Step::ALL.into_iter().filter(|s| *s != Step::SaveCursor) {
        let (stack, bus, queue) = stack().await;
        let messages = stack.sandbox.folder_messages(MAILBOX, FOLDER);
        let crash = Arc::new(CrashAt {
            step,
            nth: 2,
            seen: AtomicUsize::new(0),
        });
        let crashed = stack.run_with(engine(&stack, &bus, crash.clone())).await;
        assert!(
            crash.seen.load(Ordering::SeqCst) >= 2,
            "{step:?}: never reached"
        );
        assert!(
            crashed.mailboxes[0]
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("interrupted"),
            "{step:?}: {crashed:#?}"
        );
        stack
            .clock
            .advance(RUN_BUDGET * 2 + time::Duration::minutes(5));
        let rerun = stack
            .run_with(engine(&stack, &bus, Arc::new(NoObserver)))
            .await;
        assert!(rerun.mailboxes[0].error.is_none(), "{step:?}: {rerun:#?}");
        stack.assert_stored_exactly_once(MAILBOX, &messages).await;
        let events = delivered(&stack, &queue).await;
        assert_one_id_each(&events, &messages);
        assert!(
            stack
                .state
                .pending_events(&MailboxAddress::parse(MAILBOX).unwrap())
                .await
                .unwrap()
                .is_empty(),
            "{step:?}: events left in the outbox"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_that_refuses_keeps_the_events_for_the_next_run() {
    let (stack, bus, queue) = stack().await;
    let messages = stack.sandbox.folder_messages(MAILBOX, FOLDER);
    // A bus that does not exist: EventBridge refuses every entry.
    let run = stack
        .run_with(engine(&stack, "no-such-bus", Arc::new(NoObserver)))
        .await;
    assert_eq!(
        run.imported(),
        messages.len() as u64,
        "the mail is stored all the same"
    );
    let report = run.mailboxes[0].events.clone().unwrap();
    assert_eq!(
        (report.published, report.unpublished),
        (0, messages.len() as u64),
        "{report:?}"
    );
    assert!(report.error.unwrap().contains("no-such-bus"));
    let pending = stack
        .state
        .pending_events(&MailboxAddress::parse(MAILBOX).unwrap())
        .await
        .unwrap();
    assert_eq!(pending.len(), messages.len());
    assert!(delivered(&stack, &queue).await.is_empty());

    // The bus is back: the next run publishes them, though it stores nothing.
    let run = stack
        .run_with(engine(&stack, &bus, Arc::new(NoObserver)))
        .await;
    assert_eq!(run.imported(), 0);
    assert_eq!(
        run.mailboxes[0].events.clone().unwrap().published,
        messages.len() as u64
    );
    assert_one_id_each(&delivered(&stack, &queue).await, &messages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_go_ten_to_a_put_events_request() {
    use mailroom_tests::awsproxy::AwsProxy;
    let world = World::default_test().mailbox(
        DEFAULT_TENANT,
        Mailbox::new(MAILBOX)
            .folder(FOLDER)
            .folder(PROCESSED)
            .messages(FOLDER, 23),
    );
    let stack = Stack::start(world).await;
    stack.configure(MAILBOX, FOLDER, AfterImport::None).await;
    let (bus, queue) = stack.moto.fresh_event_sink().await;
    let proxy = AwsProxy::start(&stack.moto.endpoint()).await;
    let stack = stack.via(proxy.endpoint());
    let run = stack
        .run_with(engine(&stack, &bus, Arc::new(NoObserver)))
        .await;
    assert_eq!(run.mailboxes[0].events.clone().unwrap().published, 23);
    let calls = proxy.calls();
    let put_events = calls
        .get(&("events".to_owned(), "PutEvents".to_owned()))
        .copied();
    assert_eq!(put_events, Some(3), "23 events: 10 + 10 + 3; {calls:?}");
    assert_eq!(delivered(&stack, &queue).await.len(), 23);
}
