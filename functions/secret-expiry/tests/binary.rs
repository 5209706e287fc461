//! The built `mailroom-secret-expiry` binary, run as Lambda runs it (a Runtime API on loopback),
//! against the Graph sandbox and moto: proves the binary itself, not just the check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use graph_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_SECRET, DEFAULT_SECRET_ID, DEFAULT_TENANT, Mailbox, World,
};
use mailroom_tests::lambda::{Outcome, RuntimeApi, scheduled_event};
use mailroom_tests::stack::Stack;

const MAILBOX: &str = "reports@contoso.com";
const FOLDER: &str = "Inbox";

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mailroom-secret-expiry"))
}

fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "mailroom-secret-expiry-{name}-{}.log",
        std::process::id()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_event_checks_alerts_and_publishes_the_metric() {
    let common::Expiring {
        stack,
        expires_at,
        alerts: queue,
        env,
    } = common::credential_expiring_in(10).await;
    let runtime = RuntimeApi::start().await;
    let log = log_path("scheduled");
    let mut function = runtime.spawn(binary(), &env, &log);
    let first = runtime.invoke(scheduled_event(), Duration::from_secs(60));
    let first = runtime.outcome(&first, Duration::from_secs(60)).await;
    let again = runtime.invoke(scheduled_event(), Duration::from_secs(60));
    let again = runtime.outcome(&again, Duration::from_secs(60)).await;
    let bad = runtime.invoke(
        serde_json::json!({"hello": "world"}),
        Duration::from_secs(60),
    );
    let bad = runtime.outcome(&bad, Duration::from_secs(60)).await;
    function.kill().ok();
    function.wait().ok();
    let logs = std::fs::read_to_string(&log).unwrap();

    let Outcome::Response(report) = first else {
        panic!("the function failed: {first:?}\n{logs}");
    };
    let entry = &report["credentials"][0];
    assert_eq!(entry["name"], stack.credential.as_str(), "{report:#}");
    assert_eq!(entry["client_id"], DEFAULT_CLIENT_ID);
    assert_eq!(entry["source"], "graph", "{report:#}");
    assert_eq!(entry["days_left"], 10, "{report:#}");
    assert_eq!(
        entry["expires_at"],
        expires_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );
    assert_eq!(entry["alerted"], serde_json::json!(["30", "14"]));
    let Outcome::Response(again) = again else {
        panic!("the second run failed: {again:?}\n{logs}");
    };
    assert_eq!(again["credentials"][0]["alerted"], serde_json::json!([]));
    let Outcome::Error(error) = bad else {
        panic!("a foreign event was accepted: {bad:?}");
    };
    assert_eq!(error["errorType"], "InvalidEvent", "{error}");

    // One alert on the topic, whatever the number of runs.
    let messages = stack.moto.drain_json(&queue).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");

    // One metric line per credential and run, in the embedded metric format.
    let metrics: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l.get("_aws").is_some())
        .collect();
    assert_eq!(metrics.len(), 2, "{logs}");
    assert_eq!(metrics[0]["SecretDaysLeft"], 10);
    assert_eq!(metrics[0]["Credential"], stack.credential.as_str());
    assert_eq!(
        metrics[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "Mailroom"
    );
    assert!(
        !logs.contains(DEFAULT_SECRET),
        "the client secret appears in the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_configuration_stops_the_function_naming_every_variable() {
    let runtime = RuntimeApi::start().await;
    let log = log_path("unconfigured");
    let mut function = runtime.spawn(
        binary(),
        &[
            ("AWS_REGION", "us-east-1".into()),
            ("MAILROOM_EXPIRY_THRESHOLDS", "30,soon".into()),
        ],
        &log,
    );
    let status = tokio::task::spawn_blocking(move || function.wait().unwrap())
        .await
        .unwrap();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success());
    assert!(logs.contains("MAILROOM_TABLE is not set"), "{logs}");
    assert!(logs.contains("MAILROOM_EXPIRY_THRESHOLDS"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_events_run_the_four_steps_of_the_secrets_manager_protocol() {
    let world =
        World::default_test().mailbox(DEFAULT_TENANT, Mailbox::new(MAILBOX).messages(FOLDER, 1));
    let stack = Stack::start(world).await;
    stack.sandbox.set_app_permissions(
        DEFAULT_CLIENT_ID,
        &["Mail.ReadWrite", "Application.ReadWrite.OwnedBy"],
    );
    let json = serde_json::json!({
        "tenant_id": DEFAULT_TENANT,
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_SECRET,
        "key_id": DEFAULT_SECRET_ID,
    })
    .to_string();
    stack.store_secret(&stack.credential, &json).await;

    let env = vec![
        ("MAILROOM_TABLE", stack.state.table().to_owned()),
        ("MAILROOM_ROTATION_SECRET_DAYS", "90".to_owned()),
        ("MAILROOM_GRAPH_URL", stack.sandbox.url()),
        ("MAILROOM_LOGIN_URL", stack.sandbox.url()),
        ("AWS_ENDPOINT_URL", stack.moto.endpoint()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        // The most an operator can ask for: neither secret may reach the log even so.
        ("AWS_LAMBDA_LOG_LEVEL", "TRACE".into()),
    ];
    let runtime = RuntimeApi::start().await;
    let log = log_path("rotation");
    let mut function = runtime.spawn(binary(), &env, &log);
    let token = "4b5d2c1e-0000-4000-8000-000000000001";
    let mut replies = Vec::new();
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        let id = runtime.invoke(
            serde_json::json!({
                "SecretId": stack.credential,
                "ClientRequestToken": token,
                "Step": step,
            }),
            Duration::from_secs(120),
        );
        replies.push(runtime.outcome(&id, Duration::from_secs(120)).await);
    }
    let broken = runtime.invoke(
        serde_json::json!({"SecretId": stack.credential, "ClientRequestToken": token, "Step": "dance"}),
        Duration::from_secs(60),
    );
    let broken = runtime.outcome(&broken, Duration::from_secs(60)).await;
    function.kill().ok();
    function.wait().ok();
    let logs = std::fs::read_to_string(&log).unwrap();
    for reply in &replies {
        assert!(matches!(reply, Outcome::Response(_)), "{reply:?}\n{logs}");
    }
    let Outcome::Response(finish) = &replies[3] else {
        unreachable!()
    };
    assert_eq!(finish["step"], "finishSecret");
    assert_eq!(finish["removed"], serde_json::json!([DEFAULT_SECRET_ID]));
    let Outcome::Error(error) = broken else {
        panic!("an unknown step was accepted: {broken:?}");
    };
    assert_eq!(error["errorType"], "InvalidEvent", "{error}");

    let passwords = stack.sandbox.application_passwords(DEFAULT_CLIENT_ID);
    assert_eq!(passwords.len(), 1);
    assert_eq!(
        Some(passwords[0].key_id.as_str()),
        finish["key_id"].as_str()
    );
    assert!(
        logs.contains(r#""level":"TRACE""#),
        "the function did not log at TRACE"
    );
    assert!(
        !logs.contains(DEFAULT_SECRET),
        "the old secret appears in the logs"
    );
    let current = stack
        .secrets
        .get_secret_value()
        .secret_id(&stack.credential)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(current.secret_string().unwrap()).unwrap();
    let new_secret = value["client_secret"].as_str().unwrap();
    assert!(
        !logs.contains(new_secret),
        "the new secret appears in the logs"
    );
    assert!(
        !format!("{replies:?}").contains(new_secret),
        "the new secret appears in a reply"
    );
}
