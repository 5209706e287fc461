//! The built `mailroom-secret-expiry` binary under `cargo lambda watch` (the Lambda emulator),
//! invoked with its real event shape, an EventBridge scheduled event, against the Graph sandbox
//! and moto: it reads the credential's expiry from Graph, alerts once and says so in its report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use graph_sandbox::DEFAULT_SECRET;
use mailroom_tests::lambda::scheduled_event;
use mailroom_tests::watch::WatchedFunction;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_event_reports_the_expiry_from_graph_and_alerts_once() {
    let common::Expiring {
        stack,
        alerts: queue,
        env,
        ..
    } = common::credential_expiring_in(5).await;
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
