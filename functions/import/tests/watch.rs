//! The built `mailroom-import` binary under `cargo lambda watch` (the Lambda emulator), invoked
//! with its two real event shapes, against the Graph sandbox and moto: an EventBridge scheduled
//! event, and a batch from the SQS FIFO queue of sync jobs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use graph_sandbox::{DEFAULT_SECRET, DEFAULT_TENANT, Mailbox, World};
use mailroom::domain::job::{JobKind, SyncJob};
use mailroom::domain::{AfterImport, MailboxAddress};
use mailroom_tests::lambda::{scheduled_event, sqs_event, sqs_record};
use mailroom_tests::stack::Stack;
use mailroom_tests::watch::WatchedFunction;
use serde_json::json;

const MAILBOX: &str = "reports@contoso.com";
const FOLDER: &str = "Inbox/Backup Reports";

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mailroom-import"))
}

fn function_env(stack: &Stack) -> Vec<(&'static str, String)> {
    vec![
        ("MAILROOM_TABLE", stack.state.table().to_owned()),
        ("MAILROOM_BUCKET", stack.bucket.clone()),
        ("MAILROOM_S3_PATH_STYLE", "true".into()),
        ("MAILROOM_GRAPH_URL", stack.sandbox.url()),
        ("MAILROOM_LOGIN_URL", stack.sandbox.url()),
        ("MAILROOM_STOP_MARGIN_SECONDS", "10".into()),
        ("AWS_ENDPOINT_URL", stack.moto.endpoint()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("RUST_LOG", "info".into()),
    ]
}

/// A stack whose mailbox holds `messages` in the configured folder (moved to
/// `Inbox/Processed` once stored).
async fn stack_with(messages: usize) -> Stack {
    let world = World::default_test().mailbox(
        DEFAULT_TENANT,
        Mailbox::new(MAILBOX)
            .folder(FOLDER)
            .folder("Inbox/Processed")
            .messages(FOLDER, messages),
    );
    let stack = Stack::start(world).await;
    stack
        .configure(
            MAILBOX,
            FOLDER,
            AfterImport::Move {
                processed_folder: "Inbox/Processed".into(),
            },
        )
        .await;
    stack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_event_imports_the_configured_mailbox() {
    let stack = stack_with(30).await;
    let held = stack.sandbox.folder_messages(MAILBOX, FOLDER);
    let function = WatchedFunction::start("mailroom-import", binary(), &function_env(&stack)).await;

    let report = function
        .invoke(&scheduled_event())
        .await
        .unwrap_or_else(|e| panic!("the function failed: {e}\n{}", function.logs()));

    assert_eq!(
        report["mailboxes"][0]["status"],
        "ok",
        "{report:#}\n{}",
        function.logs()
    );
    assert_eq!(
        report["mailboxes"][0]["folders"][0]["imported"],
        30,
        "{report:#}\n{}",
        function.logs()
    );
    stack.assert_stored_exactly_once(MAILBOX, &held).await;
    assert!(
        !function.logs().contains(DEFAULT_SECRET),
        "the client secret appears in the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_batch_reports_exactly_the_malformed_message_as_failed() {
    let stack = stack_with(12).await;
    let held = stack.sandbox.folder_messages(MAILBOX, FOLDER);
    let function = WatchedFunction::start("mailroom-import", binary(), &function_env(&stack)).await;

    // Two sync jobs for the configured folder, as the webhook enqueues them (one FIFO group per
    // mailbox), and a body that is no job at all, in a group of its own.
    let job = serde_json::to_string(&SyncJob {
        mailbox: MailboxAddress::parse(MAILBOX).unwrap(),
        folder: FOLDER.to_owned(),
        kind: JobKind::Sync,
        slice: 0,
    })
    .unwrap();
    assert!(job.contains(r#""kind":"sync""#), "{job}");
    let malformed = "4d8e2f1a-6b3c-4e5d-9f70-a1b2c3d4e5f6";
    let event = sqs_event(vec![
        sqs_record("0b7c9a52-1e34-4f6d-8a90-6c5d4e3f2a10", MAILBOX, &job),
        sqs_record("7e2d4c6b-8a1f-4b3e-9d5c-0f1e2d3c4b5a", MAILBOX, &job),
        sqs_record(
            malformed,
            "ops@contoso.com",
            r#"{"mailbox":"ops@contoso.com""#,
        ),
    ]);

    let answer = function
        .invoke(&event)
        .await
        .unwrap_or_else(|e| panic!("the function failed: {e}\n{}", function.logs()));

    assert_eq!(
        answer,
        json!({ "batchItemFailures": [{ "itemIdentifier": malformed }] }),
        "{}",
        function.logs()
    );
    // The first job imported the folder; the second found nothing new.
    stack.assert_stored_exactly_once(MAILBOX, &held).await;
}
