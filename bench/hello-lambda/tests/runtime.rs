//! The baseline is a working function: it starts, polls the Runtime API and answers.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use mailroom_tests::lambda::{Outcome, RuntimeApi};
use serde_json::json;

#[tokio::test]
async fn it_answers_an_invocation() {
    let runtime = RuntimeApi::start().await;
    let log = tempfile_path();
    let mut function = runtime.spawn(Path::new(env!("CARGO_BIN_EXE_hello-lambda")), &[], &log);
    assert!(runtime.first_poll(Duration::from_secs(30)).await.is_some());
    let id = runtime.invoke(json!("world"), Duration::from_secs(10));
    let outcome = runtime.outcome(&id, Duration::from_secs(30)).await;
    function.kill().unwrap();
    function.wait().unwrap();
    assert_eq!(outcome, Outcome::Response(json!({"hello": "world"})));
}

fn tempfile_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("hello-lambda-{}.log", std::process::id()))
}
