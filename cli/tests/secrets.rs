//! Secrets hygiene of the `mailroom` binary (issue 16): every command a user runs around a
//! credential, at `RUST_LOG=trace` (every log line of every target the CLI's subscriber lets
//! through), with stdout and stderr captured: `doctor`, `credentials check` (printing an alert),
//! `import` with a wrong client secret and the right one (events posted and signed), `status`,
//! `serve` with push (a subscription's `clientState`, a notification with a wrong one), and
//! `--backend aws` on moto (`import`, `credentials check`, the secret in Secrets Manager). None of
//! the known secrets may appear in any form `mailroom_tests::secrets::forms` lists: the client
//! secret, a wrong one, the event-signing secret and its signatures, every access token the
//! sandbox issued, every `clientState`. The in-process side (every scenario's log at TRACE, every
//! error, report and `Debug`) is `tests/tests/secrets.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use graph_sandbox::{
    App, AppSecret, DEFAULT_APP_OBJECT_ID, DEFAULT_CLIENT_ID, DEFAULT_DOMAIN, DEFAULT_TENANT,
    Mailbox, NewMessage, Sandbox, Tenant, World,
};
use mailroom_tests::secrets::{EventSink, distinctive_secret, forms, leaks};
use mailroom_tests::stack::Stack;

const MAILBOX: &str = "reports@contoso.com";
const FOLDER: &str = "Inbox/Backup Reports";
const PROCESSED: &str = "Inbox/Processed";
const KEY_ID: &str = "6c0e2a94-7b1d-4f3e-8a5c-9d0b1e2f3a4b";
const EVENTS_SECRET_VAR: &str = "MAILROOM_TEST_EVENTS_SECRET";

fn world(secret: &str) -> World {
    World::new().tenant(
        Tenant::new(DEFAULT_TENANT)
            .domain(DEFAULT_DOMAIN)
            .app(
                App::new(DEFAULT_CLIENT_ID)
                    .object_id(DEFAULT_APP_OBJECT_ID)
                    .secret(AppSecret::new(secret).key_id(KEY_ID))
                    .permissions(&["Mail.ReadWrite", "Application.ReadWrite.OwnedBy"]),
            )
            .mailbox(
                Mailbox::new(MAILBOX)
                    .folder(FOLDER)
                    .folder(PROCESSED)
                    .messages(FOLDER, 4),
            ),
    )
}

/// What one run of the binary printed.
struct Run {
    command: String,
    code: Option<i32>,
    output: String,
}

/// Everything the binary printed, run after run.
#[derive(Default)]
struct Transcript(Vec<Run>);

impl Transcript {
    /// Runs `command` (with `RUST_LOG=trace`) and keeps what it printed.
    async fn run(&mut self, mut command: Command) -> &Run {
        command.env("RUST_LOG", "trace");
        let shown = shown(&command);
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        self.0.push(Run {
            command: shown,
            code: output.status.code(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
        self.0.last().unwrap()
    }

    fn text(&self) -> String {
        self.0
            .iter()
            .map(|r| format!("$ {}\n(exit {:?})\n{}\n", r.command, r.code, r.output))
            .collect()
    }
}

/// `mailroom` and its arguments (the environment the test gives it holds secrets: not part of
/// what the binary prints).
fn shown(command: &Command) -> String {
    std::iter::once("mailroom".into())
        .chain(command.get_args().map(|a| a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[track_caller]
fn expect(run: &Run, code: i32, text: &str) {
    assert_eq!(
        run.code,
        Some(code),
        "{}\n{}",
        run.command,
        tail(&run.output)
    );
    assert!(
        run.output.contains(text),
        "{text:?} not in the output of {}:\n{}",
        run.command,
        tail(&run.output)
    );
}

/// The last lines of a long trace, for a failure message.
fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn count_eml(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                count_eml(&path)
            } else {
                usize::from(path.extension().is_some_and(|x| x == "eml"))
            }
        })
        .sum()
}

/// A free loopback port (bound, then released for the binary to bind).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_known_secret_appears_in_what_the_binary_prints_even_at_trace() {
    let client_secret = distinctive_secret("Cl1");
    let wrong_secret = distinctive_secret("Wr9");
    let events_secret = format!("whsec-{}", uuid::Uuid::new_v4().simple());
    let mut secrets: BTreeMap<String, String> = [
        ("client secret".to_owned(), client_secret.clone()),
        ("wrong client secret".to_owned(), wrong_secret.clone()),
        ("event-signing secret".to_owned(), events_secret.clone()),
    ]
    .into();
    let mut transcript = Transcript::default();

    // Local mode: the secret in a file, events signed with a secret from the environment.
    let sandbox = Sandbox::start(world(&client_secret)).await.unwrap();
    sandbox.set_password_expiry(
        DEFAULT_CLIENT_ID,
        KEY_ID,
        sandbox.now() + time::Duration::days(5),
    );
    let sink = EventSink::start().await;
    let events_url = &sink.url;
    let signatures = sink.signatures.clone();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mailroom.toml"),
        format!(
            r#"[credential.contoso]
tenant_id = "{DEFAULT_TENANT}"
client_id = "{DEFAULT_CLIENT_ID}"
client_secret_file = "secret.txt"
key_id = "{KEY_ID}"

[[mailbox]]
address = "{MAILBOX}"
credential = "contoso"
folder = "{FOLDER}"
action = "move"
processed_folder = "{PROCESSED}"

[events]
url = "{events_url}"
secret_env = "{EVENTS_SECRET_VAR}"
"#
        ),
    )
    .unwrap();
    let secret_file = dir.path().join("secret.txt");
    let local = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailroom"));
        command
            .args(args)
            .current_dir(dir.path())
            .env_clear()
            .env("MAILROOM_GRAPH_URL", sandbox.url())
            .env("MAILROOM_LOGIN_URL", sandbox.url())
            .env(EVENTS_SECRET_VAR, &events_secret);
        command
    };

    std::fs::write(&secret_file, format!("{wrong_secret}\n")).unwrap();
    let run = transcript.run(local(&["doctor"])).await;
    expect(run, 1, "AADSTS7000215");
    let run = transcript.run(local(&["import"])).await;
    expect(run, 1, "AADSTS7000215");
    let run = transcript.run(local(&["credentials", "check"])).await;
    assert_ne!(run.code, Some(0), "{}", tail(&run.output));

    std::fs::write(&secret_file, format!("{client_secret}\n")).unwrap();
    let run = transcript.run(local(&["doctor"])).await;
    expect(run, 0, "✓");
    let run = transcript.run(local(&["credentials", "check"])).await;
    expect(
        run,
        1,
        "ALERT Mailroom: client secret 'contoso' expires in 5 days",
    );
    let run = transcript.run(local(&["import"])).await;
    expect(run, 0, "imported 4 messages");
    assert!(
        run.output.contains("4 event(s) published"),
        "{}",
        tail(&run.output)
    );
    let run = transcript.run(local(&["status"])).await;
    expect(run, 0, MAILBOX);

    // `serve` with push: a subscription with its clientState, a notification with it (from the
    // sandbox) and one with a wrong one, then SIGTERM.
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let out = dir.path().join("serve.out");
    let mut serve = local(&[
        "serve",
        "--every",
        "60",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--public-url",
        &public,
    ]);
    serve
        .env("RUST_LOG", "trace")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(out.with_extension("err")).unwrap());
    let shown = shown(&serve);
    let mut child = serve.spawn().unwrap();
    let started = Instant::now();
    while sandbox.subscriptions().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve made no subscription: {}",
            std::fs::read_to_string(out.with_extension("err")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let messages = dir.path().join("mailroom-data/messages");
    let before = count_eml(&messages);
    sandbox.add_message(MAILBOX, FOLDER, NewMessage::new("Pushed"));
    while count_eml(&messages) == before {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the pushed message was not stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let subscription = &sandbox.subscriptions()[0];
    let wrong = serde_json::json!({"value": [{
        "subscriptionId": subscription.id,
        "clientState": format!("wrong-{}", uuid::Uuid::new_v4().simple()),
        "changeType": "created",
        "resource": format!("Users/{MAILBOX}/Messages/x"),
    }]});
    let answer = reqwest::Client::new()
        .post(format!("{public}/notifications"))
        .json(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let output = format!(
        "{}{}",
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(out.with_extension("err")).unwrap()
    );
    assert_eq!(status.code(), Some(0), "{}", tail(&output));
    assert!(
        output.contains("notification with a wrong clientState dropped"),
        "{}",
        tail(&output)
    );
    transcript.0.push(Run {
        command: shown,
        code: status.code(),
        output,
    });
    for subscription in sandbox.subscriptions() {
        if let Some(state) = subscription.client_state {
            secrets.insert(format!("clientState of {}", subscription.id), state);
        }
    }

    // `--backend aws` on moto: the secret in Secrets Manager, the mailbox in DynamoDB.
    let stack = Stack::start(world(&client_secret)).await;
    stack
        .store_secret(
            &stack.credential,
            &serde_json::json!({
                "tenant_id": DEFAULT_TENANT,
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": client_secret,
                "key_id": KEY_ID,
            })
            .to_string(),
        )
        .await;
    stack.sandbox.set_password_expiry(
        DEFAULT_CLIENT_ID,
        KEY_ID,
        stack.sandbox.now() + time::Duration::days(5),
    );
    let aws_dir = tempfile::tempdir().unwrap();
    let aws = |args: &[&str]| {
        let mut command = common::deployment(&stack);
        command.args(args).current_dir(aws_dir.path());
        command
    };
    let run = transcript
        .run(aws(&[
            "mailbox",
            "add",
            MAILBOX,
            "--folder",
            FOLDER,
            "--action",
            "move",
            "--processed-folder",
            PROCESSED,
            "--credential",
            &stack.credential,
        ]))
        .await;
    expect(run, 0, "DynamoDB table");
    let run = transcript.run(aws(&["import"])).await;
    expect(run, 0, "imported 4 messages");
    // The SDK logged at DEBUG, but its TRACE response bodies were held back
    // (mailroom::redact::TRACE_NEVER_LOGGED).
    assert!(
        run.output.contains("entering 'transmit' phase"),
        "{}",
        tail(&run.output)
    );
    assert!(
        !run.output.contains("read HTTP response body"),
        "the SDK's response bodies reached the output: the CLI's log filter lacks mailroom::redact::may_log"
    );
    let run = transcript.run(aws(&["credentials", "check"])).await;
    expect(run, 1, "5 days left");

    for (n, token) in sandbox
        .issued_tokens()
        .into_iter()
        .chain(stack.sandbox.issued_tokens())
        .enumerate()
    {
        secrets.insert(format!("access token {n}"), token);
    }
    for (n, signature) in signatures.lock().unwrap().iter().enumerate() {
        secrets.insert(
            format!("event signature {n}"),
            signature.trim_start_matches("v1=").to_owned(),
        );
    }
    assert!(
        secrets.keys().any(|k| k.starts_with("clientState")),
        "no clientState"
    );
    assert!(
        secrets.keys().any(|k| k.starts_with("event signature")),
        "no event was signed"
    );

    let text = transcript.text();
    eprintln!(
        "captured: {} runs of the binary, {} lines ({} bytes); {} secrets searched, the client secret in {} forms",
        transcript.0.len(),
        text.lines().count(),
        text.len(),
        secrets.len(),
        forms(&client_secret).len()
    );
    if let Some(path) = std::env::var_os("MAILROOM_SECRETS_CAPTURE") {
        std::fs::write(Path::new(&path).with_extension("cli"), &text).unwrap();
    }
    // The capture works: the binary logged at TRACE, and what is not secret is there.
    for marker in [
        "TRACE",
        DEFAULT_CLIENT_ID,
        MAILBOX,
        "webhook batch accepted",
    ] {
        assert!(text.contains(marker), "the transcript lacks {marker:?}");
    }
    let found = leaks(&secrets, &text);
    assert!(
        found.is_empty(),
        "{} secret(s) found:\n{}",
        found.len(),
        found.join("\n")
    );
}
