//! The `mailroom` binary as the tests run it: against the Graph sandbox, in an environment that
//! holds nothing of the machine's own Mailroom settings. Each test file that runs the binary has
//! `mod common;`, and not every file uses every function.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use mailroom_tests::stack::Stack;

/// `mailroom` in `dir`, local mode, Graph and Entra at `sandbox_url`: the configuration, data
/// dir, backend and log level are the binary's defaults, whatever the caller's environment says.
pub fn local(dir: &Path, sandbox_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mailroom"));
    command
        .current_dir(dir)
        .env("MAILROOM_GRAPH_URL", sandbox_url)
        .env("MAILROOM_LOGIN_URL", sandbox_url)
        .env_remove("MAILROOM_CONFIG")
        .env_remove("MAILROOM_DATA_DIR")
        .env_remove("MAILROOM_BACKEND")
        .env_remove("RUST_LOG");
    command
}

/// `mailroom --backend aws` as an operator runs it: an environment holding only AWS credentials
/// and a region (moto's), and the sandbox as Graph and Entra. No table or bucket:
/// [`deployment`] adds them.
pub fn aws(stack: &Stack) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mailroom"));
    command
        .args(["--backend", "aws"])
        .env_clear()
        .env("MAILROOM_GRAPH_URL", stack.sandbox.url())
        .env("MAILROOM_LOGIN_URL", stack.sandbox.url())
        .env("AWS_ENDPOINT_URL", stack.moto.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing");
    command
}

/// [`aws`] pointed at the stack's deployment: its table and bucket (path-style, as moto serves
/// it).
pub fn deployment(stack: &Stack) -> Command {
    let mut command = aws(stack);
    command
        .env("MAILROOM_TABLE", stack.state.table())
        .env("MAILROOM_BUCKET", &stack.bucket)
        .env("MAILROOM_S3_PATH_STYLE", "true");
    command
}
