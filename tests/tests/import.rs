//! End-to-end import: the real engine, the real Graph client against the sandbox over HTTP, and
//! the real AWS adapters against moto. Every test ends by checking the invariant: what the
//! mailbox held is what the store holds, each message exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use graph_sandbox::{
    App, AppSecret, DEFAULT_CLIENT_ID, DEFAULT_SECRET, DEFAULT_SECRET_ID, DEFAULT_TENANT,
    FaultKind, FaultRule, Mailbox, MessageInfo, NewMessage, Sandbox, Tenant, World,
};
use mailroom::clock::ManualClock;
use mailroom::domain::{AfterImport, FolderKey, MessageId};
use mailroom::engine::{
    EngineOptions, ImportObserver, Interrupted, MailboxStatus, NoObserver, RunReport, Step,
};
use mailroom::ports::Cursors;
use mailroom_tests::stack::{RUN_BUDGET, Stack};

const MAILBOX: &str = "reports@contoso.com";
const FOLDER: &str = "Inbox/Backup Reports";
const PROCESSED: &str = "Inbox/Processed";

fn move_to_processed() -> AfterImport {
    AfterImport::Move {
        processed_folder: PROCESSED.into(),
    }
}

/// The default test tenant with one mailbox holding `n` messages in `FOLDER`.
fn world(n: usize) -> World {
    World::default_test().mailbox(
        DEFAULT_TENANT,
        Mailbox::new(MAILBOX)
            .folder(FOLDER)
            .folder(PROCESSED)
            .messages(FOLDER, n),
    )
}

fn held(stack: &Stack) -> Vec<MessageInfo> {
    stack.sandbox.folder_messages(MAILBOX, FOLDER)
}

fn folder_error(report: &RunReport) -> String {
    report.mailboxes[0].folders[0]
        .error
        .clone()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_and_its_processed_folder_resolve_their_shared_parent_once() {
    let stack = Stack::start(world(25)).await;
    let held = held(&stack);
    stack.configure(MAILBOX, FOLDER, move_to_processed()).await;

    let report = stack.run().await;
    assert_eq!(report.mailboxes[0].folders[0].imported, 25, "{report:#?}");
    stack.assert_stored_exactly_once(MAILBOX, &held).await;

    let requests = stack.sandbox.requests();
    let folder_lookups: Vec<String> = requests
        .iter()
        .filter(|r| {
            r.method == "GET" && r.path.contains("/mailFolders") && !r.path.contains("/messages")
        })
        .map(|r| r.path.clone())
        .collect();
    // Inbox by its well-known name, then one listing of its children answers both
    // "Backup Reports" and "Processed".
    assert_eq!(folder_lookups.len(), 2, "{folder_lookups:#?}");
    let graph = requests.iter().filter(|r| r.mailbox.is_some()).count();
    // Per message: its MIME and its move; then the folder lookups and the listings.
    println!(
        "{graph} Graph requests for 25 messages ({:.2} per message)",
        graph as f64 / 25.0
    );
    assert!(graph <= 2 * 25 + 2 + 3, "{graph} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_messages_are_stored_once_and_moved() {
    let stack = Stack::start(world(600)).await;
    let held = held(&stack);
    assert_eq!(held.len(), 600);
    stack.configure(MAILBOX, FOLDER, move_to_processed()).await;

    let report = stack.run().await;
    let folder = &report.mailboxes[0].folders[0];
    assert_eq!(report.mailboxes[0].status, MailboxStatus::Ok, "{report:#?}");
    assert_eq!((folder.imported, folder.failed), (600, 0), "{folder:#?}");
    stack.assert_stored_exactly_once(MAILBOX, &held).await;
    assert!(stack.sandbox.folder_messages(MAILBOX, FOLDER).is_empty());
    assert_eq!(stack.sandbox.folder_messages(MAILBOX, PROCESSED).len(), 600);

    let requests = stack.sandbox.requests();
    let graph: Vec<_> = requests.iter().filter(|r| r.mailbox.is_some()).collect();
    assert!(
        graph.iter().all(|r| r.immutable_ids),
        "a request without Prefer: IdType=\"ImmutableId\""
    );
    assert!(
        graph.iter().all(|r| r.client_request_id.is_some()),
        "a request without client-request-id"
    );
    assert!(stack.sandbox.max_concurrency(MAILBOX) <= 4);
    assert_eq!(stack.sandbox.token_requests(), 1, "the token is cached");

    let again = stack.run().await;
    let folder = &again.mailboxes[0].folders[0];
    assert_eq!(
        (folder.imported, folder.already_stored),
        (0, 0),
        "{folder:#?}"
    );
    stack.assert_stored_exactly_once(MAILBOX, &held).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mark_read_keeps_messages_in_place_and_reads_them() {
    let stack = Stack::start(world(120)).await;
    let held = held(&stack);
    stack
        .configure(MAILBOX, FOLDER, AfterImport::MarkRead)
        .await;

    let report = stack.run().await;
    assert_eq!(report.mailboxes[0].folders[0].imported, 120, "{report:#?}");
    stack.assert_stored_exactly_once(MAILBOX, &held).await;
    let now = held_now(&stack);
    assert_eq!(now.len(), 120);
    assert!(now.iter().all(|m| m.is_read));

    // Marking read changed every message: the next delta round sees them all again and leaves
    // them alone.
    let again = stack.run().await;
    let folder = &again.mailboxes[0].folders[0];
    assert_eq!(
        (folder.imported, folder.already_stored),
        (0, 0),
        "{folder:#?}"
    );
    stack.assert_stored_exactly_once(MAILBOX, &held).await;
}

fn held_now(stack: &Stack) -> Vec<MessageInfo> {
    stack.sandbox.folder_messages(MAILBOX, FOLDER)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_moves_messages_to_deleted_items() {
    let stack = Stack::start(world(50)).await;
    let held = held(&stack);
    stack.configure(MAILBOX, FOLDER, AfterImport::Delete).await;

    let report = stack.run().await;
    assert_eq!(report.mailboxes[0].folders[0].imported, 50, "{report:#?}");
    stack.assert_stored_exactly_once(MAILBOX, &held).await;
    assert!(held_now(&stack).is_empty());
    assert_eq!(
        stack
            .sandbox
            .folder_messages(MAILBOX, "Deleted Items")
            .len(),
        50
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_leaves_the_mailbox_untouched_and_imports_only_new_mail_next_time() {
    let stack = Stack::start(world(80)).await;
    stack.configure(MAILBOX, FOLDER, AfterImport::None).await;
    let before = stack.sandbox.messages(MAILBOX);

    let report = stack.run().await;
    assert_eq!(report.mailboxes[0].folders[0].imported, 80, "{report:#?}");
    assert_eq!(
        stack.sandbox.messages(MAILBOX),
        before,
        "none must not change the mailbox"
    );
    stack
        .assert_stored_exactly_once(MAILBOX, &held_now(&stack))
        .await;

    for i in 0..5 {
        stack.sandbox.add_message(
            MAILBOX,
            FOLDER,
            NewMessage::new(&format!("Nightly backup {i}")),
        );
    }
    let again = stack.run().await;
    let folder = &again.mailboxes[0].folders[0];
    assert_eq!(
        (folder.imported, folder.already_stored, folder.unchanged),
        (5, 0, 0),
        "{folder:#?}"
    );
    stack
        .assert_stored_exactly_once(MAILBOX, &held_now(&stack))
        .await;
    assert!(
        held_now(&stack)
            .iter()
            .filter(|m| m.subject.starts_with("Nightly"))
            .all(|m| !m.is_read)
    );
}

/// Stops the run before the `nth` time `step` is reached, as if the process died there.
struct CrashAt {
    step: Step,
    nth: usize,
    seen: AtomicUsize,
}

impl ImportObserver for CrashAt {
    fn before(
        &self,
        step: Step,
        _key: &FolderKey,
        _id: Option<&MessageId>,
    ) -> Result<(), Interrupted> {
        if step == self.step && self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.nth {
            return Err(Interrupted(step));
        }
        Ok(())
    }
}

async fn crash_then_rerun(action: AfterImport, step: Step) {
    let stack = Stack::start(world(40)).await;
    let held = held(&stack);
    stack.configure(MAILBOX, FOLDER, action.clone()).await;
    let crash = Arc::new(CrashAt {
        step,
        nth: 2,
        seen: AtomicUsize::new(0),
    });
    let options = EngineOptions {
        page_size: 10,
        ..EngineOptions::default()
    };
    let crashed = stack
        .run_with(stack.engine_with(crash.clone(), options.clone()))
        .await;
    assert!(
        crash.seen.load(Ordering::SeqCst) >= 2,
        "{action:?}: the run never reached {step:?}"
    );
    let error = crashed.mailboxes[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("interrupted"),
        "{action:?} {step:?}: {crashed:#?}"
    );

    // The crashed run never released its lease: the next run waits until it expires.
    let blocked = stack
        .run_with(stack.engine_with(Arc::new(NoObserver), options.clone()))
        .await;
    assert_eq!(
        blocked.mailboxes[0].status,
        MailboxStatus::Busy,
        "{blocked:#?}"
    );
    stack
        .clock
        .advance(RUN_BUDGET * 2 + time::Duration::minutes(5));

    let rerun = stack
        .run_with(stack.engine_with(Arc::new(NoObserver), options))
        .await;
    assert_eq!(
        rerun.mailboxes[0].status,
        MailboxStatus::Ok,
        "{action:?} {step:?}: {rerun:#?}"
    );
    stack.assert_stored_exactly_once(MAILBOX, &held).await;
    match action {
        AfterImport::Move { .. } => {
            assert!(
                held_now(&stack).is_empty(),
                "{step:?}: messages left behind"
            );
            assert_eq!(
                stack.sandbox.folder_messages(MAILBOX, PROCESSED).len(),
                held.len()
            );
        }
        _ => assert_eq!(held_now(&stack).len(), held.len()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_any_two_steps_of_a_move_import_loses_and_duplicates_nothing() {
    // The event steps: tests/tests/events.rs.
    for step in Step::ALL
        .into_iter()
        .filter(|s| *s != Step::SaveCursor && !s.is_event_step())
    {
        crash_then_rerun(move_to_processed(), step).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_any_two_steps_of_a_delta_archive_loses_and_duplicates_nothing() {
    for step in Step::ALL.into_iter().filter(|s| !s.is_event_step()) {
        crash_then_rerun(AfterImport::None, step).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_marking_read_is_finished_by_the_rerun() {
    crash_then_rerun(AfterImport::MarkRead, Step::MarkDone).await;
    crash_then_rerun(AfterImport::MarkRead, Step::AfterImportAction).await;
}

/// Expires the mailbox's delta tokens (and optionally moves the clock past the deadline) when a
/// cursor is about to be saved for the `nth` time.
struct ExpireDeltaAt {
    sandbox: Sandbox,
    clock: Option<Arc<ManualClock>>,
    nth: usize,
    seen: AtomicUsize,
    added: Mutex<Vec<MessageInfo>>,
}

impl ImportObserver for ExpireDeltaAt {
    fn before(
        &self,
        step: Step,
        _key: &FolderKey,
        _id: Option<&MessageId>,
    ) -> Result<(), Interrupted> {
        if step == Step::SaveCursor && self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.nth {
            self.sandbox.expire_delta_tokens(MAILBOX);
            // Mail keeps arriving while the archive runs.
            let added =
                self.sandbox
                    .add_message(MAILBOX, FOLDER, NewMessage::new("Arrived mid-round"));
            self.added.lock().unwrap().push(added);
            if let Some(clock) = &self.clock {
                clock.advance(RUN_BUDGET * 2);
            }
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_delta_token_mid_archive_resyncs_without_duplicates_or_losses() {
    let stack = Stack::start(world(300)).await;
    stack.configure(MAILBOX, FOLDER, AfterImport::None).await;
    let expire = Arc::new(ExpireDeltaAt {
        sandbox: stack.sandbox.clone(),
        clock: None,
        nth: 2,
        seen: AtomicUsize::new(0),
        added: Mutex::new(Vec::new()),
    });
    let options = EngineOptions {
        page_size: 50,
        ..EngineOptions::default()
    };
    let report = stack
        .run_with(stack.engine_with(expire.clone(), options.clone()))
        .await;
    assert_eq!(report.mailboxes[0].status, MailboxStatus::Ok, "{report:#?}");
    assert!(
        stack.sandbox.requests().iter().any(|r| r.status == 410),
        "the sandbox never answered 410: the test did not exercise expiry"
    );
    // The round restarted from scratch: everything stored before expiry was seen again and
    // skipped, nothing stored twice.
    assert!(report.mailboxes[0].folders[0].unchanged > 0, "{report:#?}");
    let second = stack
        .run_with(stack.engine_with(Arc::new(NoObserver), options))
        .await;
    assert_eq!(second.mailboxes[0].status, MailboxStatus::Ok, "{second:#?}");
    stack
        .assert_stored_exactly_once(MAILBOX, &held_now(&stack))
        .await;
    assert_eq!(held_now(&stack).len(), 301);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_short_resumes_from_its_saved_page_even_after_the_token_expires() {
    let stack = Stack::start(world(200)).await;
    stack.configure(MAILBOX, FOLDER, AfterImport::None).await;
    let cut = Arc::new(ExpireDeltaAt {
        sandbox: stack.sandbox.clone(),
        clock: Some(stack.clock.clone()),
        nth: 2,
        seen: AtomicUsize::new(0),
        added: Mutex::new(Vec::new()),
    });
    let options = EngineOptions {
        page_size: 40,
        ..EngineOptions::default()
    };
    let first = stack
        .run_with(stack.engine_with(cut, options.clone()))
        .await;
    let folder = &first.mailboxes[0].folders[0];
    assert!(folder.stopped_at_deadline, "{folder:#?}");
    assert!(folder.imported < 200, "{folder:#?}");
    let cursor = stack
        .state
        .get_cursor(&mailroom::domain::FolderKey {
            mailbox: mailroom::domain::MailboxAddress::parse(MAILBOX).unwrap(),
            folder: FOLDER.into(),
        })
        .await
        .unwrap()
        .expect("cursor saved at the deadline");
    assert!(cursor.next_link.is_some(), "{cursor:?}");

    let rest = stack
        .run_with(stack.engine_with(Arc::new(NoObserver), options))
        .await;
    assert_eq!(rest.mailboxes[0].status, MailboxStatus::Ok, "{rest:#?}");
    stack
        .assert_stored_exactly_once(MAILBOX, &held_now(&stack))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_faults_are_survived_within_four_requests_in_flight() {
    let stack = Stack::start(world(200)).await;
    let held = held(&stack);
    stack.configure(MAILBOX, FOLDER, move_to_processed()).await;
    let sandbox = &stack.sandbox;
    sandbox.set_latency(Duration::from_millis(5));
    // Spread over the calls a run makes many of, so that no single request meets more faults
    // than the client's retry budget.
    let rule = |kind, path: &str, times| FaultRule::new(kind).path_contains(path).times(times);
    sandbox.inject(rule(FaultKind::Throttle(0.05), "/$value", 6));
    sandbox.inject(rule(FaultKind::Throttle(0.05), "/move", 6));
    sandbox.inject(rule(FaultKind::Status(503, Some(0.05)), "/$value", 3));
    sandbox.inject(rule(FaultKind::Status(503, None), "/move", 2));
    sandbox.inject(rule(FaultKind::Status(500, None), "/move", 2));
    sandbox.inject(rule(FaultKind::DropConnection, "/messages", 4));
    sandbox.inject(rule(FaultKind::TruncateBody, "/$value", 4));

    let report = stack.run().await;
    assert_eq!(report.mailboxes[0].status, MailboxStatus::Ok, "{report:#?}");
    stack.assert_stored_exactly_once(MAILBOX, &held).await;
    assert!(held_now(&stack).is_empty());

    let faults: Vec<_> = sandbox
        .requests()
        .into_iter()
        .filter_map(|r| r.fault)
        .collect();
    for kind in ["throttle", "status", "dropConnection", "truncateBody"] {
        assert!(
            faults.iter().any(|f| f == kind),
            "no {kind} fault was hit: {faults:?}"
        );
    }
    assert!(
        sandbox.max_concurrency(MAILBOX) <= 4,
        "{}",
        sandbox.max_concurrency(MAILBOX)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_the_concurrency_limit_is_throttled_by_graph_and_still_finishes() {
    let stack = Stack::start(world(100)).await;
    let held = held(&stack);
    stack.configure(MAILBOX, FOLDER, move_to_processed()).await;
    // Long enough that a fifth request is sent while four are held, even on a loaded machine
    // (at 10 ms a busy CI core could keep the client from ever having five in flight).
    stack.sandbox.set_latency(Duration::from_millis(50));
    let mut engine = stack.engine();
    let mut config = stack.graph_config();
    config.per_mailbox_concurrency = 5;
    engine.graph = mailroom::graph::GraphClient::new(config).unwrap();

    let report = stack.run_with(engine).await;
    assert_eq!(report.mailboxes[0].status, MailboxStatus::Ok, "{report:#?}");
    assert!(
        stack.sandbox.requests().iter().any(|r| r.status == 429),
        "the sandbox did not enforce its limit of 4"
    );
    stack.assert_stored_exactly_once(MAILBOX, &held).await;
}

/// A run that must fail on `cause` before writing anything.
async fn assert_fails_cleanly(stack: &Stack, expected: &[&str]) {
    let before = stack.sandbox.messages(MAILBOX);
    let report = stack.run().await;
    assert_eq!(
        report.mailboxes[0].status,
        MailboxStatus::Failed,
        "{report:#?}"
    );
    let error = folder_error(&report);
    for text in expected {
        assert!(
            error.contains(text),
            "error {error:?} does not mention {text:?}"
        );
    }
    assert!(
        !error.contains(DEFAULT_SECRET),
        "the secret leaked into an error"
    );
    assert!(stack.records(MAILBOX).await.is_empty(), "records written");
    assert!(stack.bucket_keys().await.is_empty(), "objects written");
    assert_eq!(
        stack.sandbox.messages(MAILBOX),
        before,
        "the mailbox changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_or_a_pasted_secret_id_says_the_value_is_needed() {
    let stack = Stack::start(world(5)).await;
    stack.configure(MAILBOX, FOLDER, move_to_processed()).await;
    stack.put_secret("not-the-secret").await;
    assert_fails_cleanly(&stack, &["AADSTS7000215", "Value, not its Secret ID"]).await;
    stack.put_secret(DEFAULT_SECRET_ID).await;
    assert_fails_cleanly(&stack, &["AADSTS7000215"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_secret_says_so() {
    let world = World::new().tenant(
        Tenant::new(DEFAULT_TENANT)
            .domain("contoso.com")
            .app(
                App::new(DEFAULT_CLIENT_ID)
                    .secret(
                        AppSecret::new(DEFAULT_SECRET)
                            .key_id(DEFAULT_SECRET_ID)
                            .expires_at(time::OffsetDateTime::now_utc() - time::Duration::days(1)),
                    )
                    .permissions(&["Mail.ReadWrite"]),
            )
            .mailbox(
                Mailbox::new(MAILBOX)
                    .folder(FOLDER)
                    .folder(PROCESSED)
                    .messages(FOLDER, 5),
            ),
    );
    let stack = Stack::start(world).await;
    stack.configure(MAILBOX, FOLDER, move_to_processed()).await;
    assert_fails_cleanly(&stack, &["AADSTS7000222", "expired"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_folder_names_the_folders_that_exist() {
    let stack = Stack::start(world(5)).await;
    stack
        .configure(MAILBOX, "Inbox/Backup Reprots", move_to_processed())
        .await;
    assert_fails_cleanly(
        &stack,
        &[
            "'Backup Reprots' not found",
            "'Backup Reports'",
            "'Processed'",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_processed_folder_fails_before_anything_is_imported() {
    let stack = Stack::start(world(5)).await;
    stack
        .configure(
            MAILBOX,
            FOLDER,
            AfterImport::Move {
                processed_folder: "Inbox/Done".into(),
            },
        )
        .await;
    assert_fails_cleanly(&stack, &["'Done' not found", "'Processed'"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_outside_the_app_scope_is_reported_and_others_still_import() {
    let other = "invoices@contoso.com";
    let world = world(5).mailbox(
        DEFAULT_TENANT,
        Mailbox::new(other)
            .folder("Inbox/Invoices")
            .messages("Inbox/Invoices", 7),
    );
    let stack = Stack::start(world).await;
    stack
        .sandbox
        .set_app_scope(DEFAULT_CLIENT_ID, Some(&[other]));
    stack.configure(MAILBOX, FOLDER, move_to_processed()).await;
    stack
        .configure(other, "Inbox/Invoices", AfterImport::Delete)
        .await;
    let invoices = stack.sandbox.folder_messages(other, "Inbox/Invoices");

    let before = stack.sandbox.messages(MAILBOX);
    let report = stack.run().await;
    let denied = report
        .mailboxes
        .iter()
        .find(|m| m.mailbox.as_str() == MAILBOX)
        .unwrap();
    let allowed = report
        .mailboxes
        .iter()
        .find(|m| m.mailbox.as_str() == other)
        .unwrap();
    assert_eq!(denied.status, MailboxStatus::Failed);
    let error = denied.folders[0].error.clone().unwrap_or_default();
    assert!(error.contains("outside the app's access scope"), "{error}");
    assert!(stack.records(MAILBOX).await.is_empty());
    assert_eq!(stack.sandbox.messages(MAILBOX), before);

    assert_eq!(allowed.status, MailboxStatus::Ok, "{report:#?}");
    stack.assert_stored_exactly_once(other, &invoices).await;
}
