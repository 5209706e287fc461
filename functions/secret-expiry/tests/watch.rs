//! The built `mailroom-secret-expiry` binary under `cargo lambda watch` (the Lambda emulator),
//! invoked with its real event shape, an EventBridge scheduled event, against the Graph sandbox
//! and moto: it reads the credential's expiry from Graph, alerts once and says so in its report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use graph_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_SECRET, DEFAULT_SECRET_ID, DEFAULT_TENANT, Mailbox, World,
};
use mailroom::domain::AfterImport;
use mailroom_tests::lambda::scheduled_event;
use mailroom_tests::stack::Stack;
use mailroom_tests::watch::WatchedFunction;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_event_reports_the_expiry_from_graph_and_alerts_once() {
    let mailbox = "reports@contoso.com";
    let world =
        World::default_test().mailbox(DEFAULT_TENANT, Mailbox::new(mailbox).messages("Inbox", 1));
    let stack = Stack::start(world).await;
    stack.configure(mailbox, "Inbox", AfterImport::None).await;
    stack.sandbox.set_app_permissions(
        DEFAULT_CLIENT_ID,
        &["Mail.ReadWrite", "Application.Read.All"],
    );
    let expires_at = (time::OffsetDateTime::now_utc() + time::Duration::days(5))
        .replace_nanosecond(0)
        .unwrap();
    stack
        .sandbox
        .set_password_expiry(DEFAULT_CLIENT_ID, DEFAULT_SECRET_ID, expires_at);
    let json = serde_json::json!({
        "tenant_id": DEFAULT_TENANT,
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_SECRET,
        "key_id": DEFAULT_SECRET_ID,
    })
    .to_string();
    stack.store_secret(&stack.credential, &json).await;
    let (topic, queue) = stack.moto.fresh_topic().await;
    let env = vec![
        ("MAILROOM_TABLE", stack.state.table().to_owned()),
        ("MAILROOM_ALERT_TOPIC_ARN", topic),
        ("MAILROOM_GRAPH_URL", stack.sandbox.url()),
        ("MAILROOM_LOGIN_URL", stack.sandbox.url()),
        ("AWS_ENDPOINT_URL", stack.moto.endpoint()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("RUST_LOG", "info".into()),
    ];
    let function = WatchedFunction::start(
        "mailroom-secret-expiry",
        Path::new(env!("CARGO_BIN_EXE_mailroom-secret-expiry")),
        &env,
    )
    .await;

    let report = function
        .invoke(&scheduled_event())
        .await
        .unwrap_or_else(|e| panic!("the function failed: {e}\n{}", function.logs()));
    let credential = &report["credentials"][0];
    assert_eq!(credential["source"], "graph", "{report:#}");
    assert_eq!(credential["days_left"], 5, "{report:#}");
    // Thresholds 30, 14 and 7 are crossed at once: all claimed, one alert (the most urgent) sent.
    assert_eq!(
        credential["alerted"],
        serde_json::json!(["30", "14", "7"]),
        "{report:#}"
    );
    assert!(!function.logs().contains(DEFAULT_SECRET));

    // The same day again: nothing new to say.
    let again = function.invoke(&scheduled_event()).await.unwrap();
    assert_eq!(again["credentials"][0]["alerted"], serde_json::json!([]));
    let published = stack.moto.drain_json(&queue).await;
    assert_eq!(published.len(), 1, "{published:#?}");
}
