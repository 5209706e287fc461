//! The built `mailroom-import` binary, run as Lambda runs it (a Runtime API on loopback), against
//! the Graph sandbox and moto: proves the binary itself, not just its handler.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use graph_sandbox::{DEFAULT_SECRET, DEFAULT_TENANT, Mailbox, World};
use mailroom::domain::AfterImport;
use mailroom_tests::lambda::{Outcome, RuntimeApi, scheduled_event};
use mailroom_tests::stack::Stack;

const MAILBOX: &str = "reports@contoso.com";
const FOLDER: &str = "Inbox/Backup Reports";

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mailroom-import"))
}

fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mailroom-import-{name}-{}.log", std::process::id()))
}

fn function_env(stack: &Stack, table: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MAILROOM_TABLE", table.to_owned()),
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

/// One scheduled invocation of the binary against the stack: its response and its log.
async fn scheduled_run(stack: &Stack, name: &str) -> (serde_json::Value, String) {
    scheduled_run_with(&function_env(stack, stack.state.table()), name).await
}

/// [`scheduled_run`] with the function's environment `env`.
async fn scheduled_run_with(
    env: &[(&'static str, String)],
    name: &str,
) -> (serde_json::Value, String) {
    let runtime = RuntimeApi::start().await;
    let log = log_path(name);
    let mut function = runtime.spawn(binary(), env, &log);
    let id = runtime.invoke(scheduled_event(), Duration::from_secs(120));
    let outcome = runtime.outcome(&id, Duration::from_secs(60)).await;
    function.kill().ok();
    function.wait().ok();
    let logs = std::fs::read_to_string(&log).unwrap();
    let Outcome::Response(report) = outcome else {
        panic!("the function failed: {outcome:?}\n{logs}");
    };
    (report, logs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_event_imports_every_configured_mailbox() {
    let world = World::default_test().mailbox(
        DEFAULT_TENANT,
        Mailbox::new(MAILBOX)
            .folder(FOLDER)
            .folder("Inbox/Processed")
            .messages(FOLDER, 30),
    );
    let stack = Stack::start(world).await;
    let held = stack.sandbox.folder_messages(MAILBOX, FOLDER);
    stack
        .configure(
            MAILBOX,
            FOLDER,
            AfterImport::Move {
                processed_folder: "Inbox/Processed".into(),
            },
        )
        .await;

    let (report, logs) = scheduled_run(&stack, "scheduled").await;
    assert_eq!(report["mailboxes"][0]["status"], "ok", "{report:#}");
    assert_eq!(
        report["mailboxes"][0]["folders"][0]["imported"], 30,
        "{report:#}"
    );
    stack.assert_stored_exactly_once(MAILBOX, &held).await;

    // Structured JSON summary lines per folder and per mailbox, and no secret anywhere.
    let summary = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["fields"]["message"] == "folder import finished")
        .unwrap_or_else(|| panic!("no summary line in:\n{logs}"));
    assert_eq!(summary["fields"]["imported"], 30, "{summary}");
    let mailbox_line = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["fields"]["message"] == "mailbox import finished")
        .unwrap_or_else(|| panic!("no per-mailbox line in:\n{logs}"));
    assert_eq!(mailbox_line["fields"]["imported"], 30, "{mailbox_line}");
    assert!(
        !logs.contains(DEFAULT_SECRET),
        "the client secret appears in the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_event_discovers_new_users_and_imports_them_in_the_same_run() {
    use mailroom::discovery::{DiscoverRule, Members};
    use mailroom::ports::DiscoverRules;
    let world = World::default_test()
        .mailbox(
            DEFAULT_TENANT,
            Mailbox::new("alice@contoso.com").messages("Inbox", 4),
        )
        .mailbox(
            DEFAULT_TENANT,
            Mailbox::new("bob@contoso.com").messages("Inbox", 3),
        );
    let stack = Stack::start(world).await;
    stack.sandbox.set_app_permissions(
        graph_sandbox::DEFAULT_CLIENT_ID,
        &["Mail.Read", "User.Read.All"],
    );
    let rule = DiscoverRule {
        credential: stack.credential.clone(),
        members: Members::All,
        exclude: Vec::new(),
        shared_mailboxes: false,
        folder: "Inbox".into(),
        action: AfterImport::None,
    };
    stack.state.put_discover_rule(&rule).await.unwrap();

    let (report, _) = scheduled_run(&stack, "discovery").await;
    assert_eq!(report["discovery"]["rules"], 1, "{report:#}");
    assert_eq!(report["discovery"]["added"], 2, "{report:#}");
    assert_eq!(report["discovery"]["failed_rules"], 0, "{report:#}");
    for (mailbox, count) in [("alice@contoso.com", 4), ("bob@contoso.com", 3)] {
        assert_eq!(stack.records(mailbox).await.len(), count, "{report:#}");
    }
    let run = stack.state.last_discovery_run(&rule.id()).await.unwrap();
    assert_eq!(run.map(|r| r.added), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_queue_a_scheduled_event_queues_one_job_per_mailbox_and_imports_nothing() {
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    let world = World::default_test()
        .mailbox(
            DEFAULT_TENANT,
            Mailbox::new("alice@contoso.com").messages("Inbox", 2),
        )
        .mailbox(
            DEFAULT_TENANT,
            Mailbox::new("bob@contoso.com")
                .messages("Inbox", 2)
                .messages("Archive", 1),
        );
    let stack = Stack::start(world).await;
    stack
        .configure("alice@contoso.com", "Inbox", AfterImport::None)
        .await;
    for folder in ["Inbox", "Archive"] {
        stack
            .configure("bob@contoso.com", folder, AfterImport::None)
            .await;
    }
    let (_, queue_url) = stack.moto.fresh_fifo_queue().await;
    let mut env = function_env(&stack, stack.state.table());
    env.push(("MAILROOM_QUEUE_URL", queue_url.clone()));

    let (report, _) = scheduled_run_with(&env, "fan-out").await;
    assert_eq!(report["fan_out"]["queued"], 2, "{report:#}");
    assert!(report.get("mailboxes").is_none(), "{report:#}");
    assert!(
        stack.records("bob@contoso.com").await.is_empty(),
        "the consumers import"
    );

    let received = stack
        .clients()
        .sqs
        .receive_message()
        .queue_url(&queue_url)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
        .send()
        .await
        .unwrap();
    let mut groups: Vec<String> = received
        .messages()
        .iter()
        .map(|m| m.attributes().unwrap()[&MessageSystemAttributeName::MessageGroupId].clone())
        .collect();
    groups.sort();
    assert_eq!(groups, ["alice@contoso.com", "bob@contoso.com"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_configuration_stops_the_function_naming_every_variable() {
    let runtime = RuntimeApi::start().await;
    let log = log_path("unconfigured");
    let mut function = runtime.spawn(binary(), &[("AWS_REGION", "us-east-1".into())], &log);
    let status = tokio::task::spawn_blocking(move || function.wait().unwrap())
        .await
        .unwrap();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success());
    assert!(logs.contains("MAILROOM_TABLE is not set"), "{logs}");
    assert!(logs.contains("MAILROOM_BUCKET is not set"), "{logs}");
}
