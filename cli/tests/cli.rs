//! The `mailroom` binary, run as a user runs it, against the Graph sandbox over HTTP (local mode:
//! SQLite and files in a temporary directory).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use graph_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_SECRET, DEFAULT_SECRET_ID, DEFAULT_TENANT, Mailbox, Sandbox, World,
};
use mailroom::graph::DraftMark;

const MAILBOX: &str = "reports@contoso.com";
const FOLDER: &str = "Inbox/Backup Reports";

struct Setup {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
}

fn world(n: usize) -> World {
    World::default_test().mailbox(
        DEFAULT_TENANT,
        Mailbox::new(MAILBOX)
            .folder(FOLDER)
            .folder("Inbox/Processed")
            .folder("Inbox/Backup Reports/Archive 2025")
            .messages(FOLDER, n),
    )
}

fn config(mailboxes: &str) -> String {
    format!(
        r#"[credential.contoso]
tenant_id = "{DEFAULT_TENANT}"
client_id = "{DEFAULT_CLIENT_ID}"
client_secret_file = "secret.txt"
expires_at = "2099-01-01T00:00:00Z"

{mailboxes}"#
    )
}

const MOVE_MAILBOX: &str = r#"[[mailbox]]
address = "reports@contoso.com"
credential = "contoso"
folder = "Inbox/Backup Reports"
action = "move"
processed_folder = "Inbox/Processed"
"#;

impl Setup {
    async fn start(world: World, mailboxes: &str) -> Setup {
        let sandbox = Sandbox::start(world).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret.txt"), format!("{DEFAULT_SECRET}\n")).unwrap();
        std::fs::write(dir.path().join("mailroom.toml"), config(mailboxes)).unwrap();
        Setup { sandbox, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `mailroom args…` in the set-up's directory, pointed at the sandbox.
    async fn mailroom(&self, args: &[&str]) -> Run {
        let mut command = common::local(self.dir.path(), &self.sandbox.url());
        command.args(args);
        run(command).await
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    #[track_caller]
    fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "exit code; output:\n{}", self.all());
        assert!(
            !self.all().contains(DEFAULT_SECRET),
            "the secret appears in the output"
        );
        self
    }

    #[track_caller]
    fn expect_text(&self, text: &str) -> &Self {
        assert!(
            self.all().contains(text),
            "{text:?} not in:\n{}",
            self.all()
        );
        self
    }
}

async fn run(mut command: std::process::Command) -> Run {
    let output: Output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                count_files(&path)
            } else {
                usize::from(path.extension().is_some_and(|x| x == "eml"))
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_is_there_for_every_command_and_usage_errors_exit_2() {
    let setup = Setup::start(world(0), "").await;
    for args in [
        vec!["--help"],
        vec!["init", "--help"],
        vec!["doctor", "--help"],
        vec!["folders", "--help"],
        vec!["mailbox", "add", "--help"],
        vec!["mailbox", "list", "--help"],
        vec!["mailbox", "remove", "--help"],
        vec!["import", "--help"],
        vec!["status", "--help"],
        vec!["serve", "--help"],
        vec!["demo", "--help"],
        vec!["credentials", "check", "--help"],
    ] {
        setup
            .mailroom(&args)
            .await
            .expect_code(0)
            .expect_text("Usage:");
    }
    setup
        .mailroom(&["imprt"])
        .await
        .expect_code(2)
        .expect_text("import");
    setup
        .mailroom(&[
            "mailbox",
            "add",
            MAILBOX,
            "--folder",
            "Inbox",
            "--action",
            "archive",
            "--credential",
            "contoso",
        ])
        .await
        .expect_code(2)
        .expect_text("move, mark_read, delete, none");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_check_prints_one_line_each_and_alerts_once_per_threshold() {
    let setup = Setup::start(world(1), MOVE_MAILBOX).await;
    // Far from expiry, and the app may not read its registration: the stored expiry is used.
    setup
        .mailroom(&["credentials", "check"])
        .await
        .expect_code(0)
        .expect_text("✓ contoso: ")
        .expect_text("expires 2099-01-01T00:00:00Z (source: stored)")
        .expect_text("grant Application.Read.All or Application.ReadWrite.OwnedBy")
        .expect_text("rotation is not possible: app")
        .expect_text("; rotation: not possible");

    // Five days left, read from Graph: within the first threshold, one alert printed.
    setup.sandbox.set_app_permissions(
        DEFAULT_CLIENT_ID,
        &["Mail.ReadWrite", "Application.ReadWrite.OwnedBy"],
    );
    let expires_at = time::OffsetDateTime::now_utc() + time::Duration::days(5);
    setup
        .sandbox
        .set_password_expiry(DEFAULT_CLIENT_ID, DEFAULT_SECRET_ID, expires_at);
    let config = std::fs::read_to_string(setup.path("mailroom.toml")).unwrap();
    std::fs::write(
        setup.path("mailroom.toml"),
        config.replace(
            "expires_at = \"2099-01-01T00:00:00Z\"",
            &format!("key_id = \"{DEFAULT_SECRET_ID}\""),
        ),
    )
    .unwrap();
    let first = setup.mailroom(&["credentials", "check"]).await;
    first
        .expect_code(1)
        .expect_text("! contoso: 5 days left")
        .expect_text("(source: graph); findings: none; rotation: not refused")
        .expect_text("ALERT Mailroom: client secret 'contoso' expires in 5 days");
    assert_eq!(first.stdout.matches("ALERT").count(), 1, "{}", first.all());
    let again = setup.mailroom(&["credentials", "check"]).await;
    again.expect_code(1).expect_text("! contoso: 5 days left");
    assert!(!again.all().contains("ALERT"), "{}", again.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_writes_an_example_that_parses_and_never_overwrites() {
    let setup = Setup::start(world(0), "").await;
    std::fs::remove_file(setup.path("mailroom.toml")).unwrap();
    setup
        .mailroom(&["init"])
        .await
        .expect_code(0)
        .expect_text("wrote mailroom.toml");
    let written = std::fs::read_to_string(setup.path("mailroom.toml")).unwrap();
    assert!(written.contains("client_secret_env"));
    setup
        .mailroom(&["init"])
        .await
        .expect_code(1)
        .expect_text("--force");
    // The example's secret variable is unset here: listing works, and a check names the variable.
    setup
        .mailroom(&["mailbox", "list"])
        .await
        .expect_code(0)
        .expect_text(MAILBOX);
    setup
        .mailroom(&["doctor"])
        .await
        .expect_code(1)
        .expect_text("MAILROOM_CONTOSO_SECRET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_gets_one_clear_message_and_exit_1() {
    let setup = Setup::start(world(0), "").await;
    setup
        .mailroom(&["--config", "missing.toml", "status"])
        .await
        .expect_code(1)
        .expect_text("mailroom init");
    std::fs::write(
        setup.path("typo.toml"),
        config(&MOVE_MAILBOX.replace("action", "acton")),
    )
    .unwrap();
    setup
        .mailroom(&["--config", "typo.toml", "status"])
        .await
        .expect_code(1)
        .expect_text("acton")
        .expect_text("line");
    setup
        .mailroom(&["import", "--mailbox", "nobody@contoso.com"])
        .await
        .expect_code(1)
        .expect_text("nobody@contoso.com is not configured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_shows_the_tree_with_full_paths_and_counts() {
    let setup = Setup::start(world(12), MOVE_MAILBOX).await;
    // A search folder under Inbox, which the top-level listing also returns.
    setup
        .sandbox
        .add_search_folder(MAILBOX, "Inbox", "Unread reports");
    let run = setup.mailroom(&["folders", MAILBOX]).await;
    let search: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("Unread reports"))
        .collect();
    assert_eq!(search.len(), 1, "{}", run.stdout);
    assert!(
        search[0].starts_with("Inbox/Unread reports "),
        "{}",
        run.stdout
    );
    run.expect_code(0)
        .expect_text("Inbox/Backup Reports/Archive 2025")
        .expect_text("Inbox/Processed");
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("Inbox/Backup Reports "))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(line.split_whitespace().any(|w| w == "12"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_add_validates_before_saving_and_remove_takes_it_out() {
    let setup = Setup::start(world(3), "").await;
    let before = std::fs::read_to_string(setup.path("mailroom.toml")).unwrap();
    setup
        .mailroom(&[
            "mailbox",
            "add",
            MAILBOX,
            "--folder",
            "Inbox/Backup Reprots",
            "--action",
            "move",
            "--processed-folder",
            "Inbox/Processed",
            "--credential",
            "contoso",
        ])
        .await
        .expect_code(1)
        .expect_text("'Backup Reprots' not found")
        .expect_text("'Backup Reports'")
        .expect_text("not saved");
    assert_eq!(
        std::fs::read_to_string(setup.path("mailroom.toml")).unwrap(),
        before
    );

    setup
        .mailroom(&[
            "mailbox",
            "add",
            MAILBOX,
            "--folder",
            FOLDER,
            "--action",
            "move",
            "--processed-folder",
            "Inbox/Processed",
            "--credential",
            "contoso",
        ])
        .await
        .expect_code(0)
        .expect_text("added reports@contoso.com");
    setup
        .mailroom(&["mailbox", "list"])
        .await
        .expect_code(0)
        .expect_text("move to 'Inbox/Processed'");
    setup
        .mailroom(&["mailbox", "remove", MAILBOX])
        .await
        .expect_code(0)
        .expect_text("removed");
    setup
        .mailroom(&["mailbox", "list"])
        .await
        .expect_code(0)
        .expect_text("no mailboxes configured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_good_setup_and_explains_a_pasted_secret_id() {
    let setup = Setup::start(world(3), MOVE_MAILBOX).await;
    setup
        .mailroom(&["doctor"])
        .await
        .expect_code(0)
        .expect_text("✓");

    std::fs::write(setup.path("secret.txt"), DEFAULT_SECRET_ID).unwrap();
    setup
        .mailroom(&["doctor"])
        .await
        .expect_code(1)
        .expect_text("AADSTS7000215")
        .expect_text("Value, not its Secret ID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_stores_each_message_once_and_status_reports_it() {
    let setup = Setup::start(world(40), MOVE_MAILBOX).await;
    setup
        .mailroom(&["import"])
        .await
        .expect_code(0)
        .expect_text("imported 40 messages");
    assert_eq!(count_files(&setup.path("mailroom-data/messages")), 40);
    assert_eq!(
        setup
            .sandbox
            .folder_messages(MAILBOX, "Inbox/Processed")
            .len(),
        40
    );

    setup
        .mailroom(&["import"])
        .await
        .expect_code(0)
        .expect_text("imported 0 messages");
    assert_eq!(count_files(&setup.path("mailroom-data/messages")), 40);

    let status = setup.mailroom(&["status"]).await;
    status.expect_code(0);
    let line = status
        .stdout
        .lines()
        .find(|l| l.starts_with(MAILBOX))
        .unwrap();
    assert!(line.split_whitespace().any(|w| w == "40"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_push_needs_both_the_listener_and_the_public_url() {
    let dir = tempfile::tempdir().unwrap();
    for (args, expected) in [
        (vec!["serve", "--listen", "127.0.0.1:0"], "--public-url"),
        (
            vec!["serve", "--public-url", "https://mailroom.example.com"],
            "--listen",
        ),
    ] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mailroom"));
        command.args(&args).current_dir(dir.path());
        run(command).await.expect_code(2).expect_text(expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_end_to_end_without_a_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mailroom"));
    command
        .args(["demo", "--dir"])
        .arg(dir.path())
        .env_remove("MAILROOM_GRAPH_URL")
        .env_remove("MAILROOM_LOGIN_URL");
    let run = run(command).await;
    run.expect_code(0)
        .expect_text("mailroom doctor")
        .expect_text("what was stored")
        .expect_text("invoices@contoso.com: 100 messages")
        .expect_text("imported 0 messages")
        .expect_text("push: subscriptions created 2")
        .expect_text("a new invoice was stored");
    assert!(count_files(&dir.path().join("data/messages")) >= 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_aws_configures_and_imports_the_serverless_deployment() {
    use mailroom_tests::stack::Stack;
    let stack = Stack::start(world(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let aws = |args: &[&str]| {
        let mut command = common::deployment(&stack);
        command.args(args).current_dir(dir.path());
        run(command)
    };
    aws(&[
        "mailbox",
        "add",
        MAILBOX,
        "--folder",
        FOLDER,
        "--action",
        "move",
        "--processed-folder",
        "Inbox/Processed",
        "--credential",
        &stack.credential,
    ])
    .await
    .expect_code(0)
    .expect_text("DynamoDB table");
    aws(&["mailbox", "list"])
        .await
        .expect_code(0)
        .expect_text(&stack.credential);
    aws(&["import"])
        .await
        .expect_code(0)
        .expect_text("imported 20 messages")
        // To the account's default bus, as the import function does.
        .expect_text("20 event(s) published");
    let status = aws(&["status"]).await;
    status
        .expect_code(0)
        .expect_text("ok (20 imported, 0 failed)");
    let held = stack.sandbox.folder_messages(MAILBOX, "Inbox/Processed");
    stack.assert_stored_exactly_once(MAILBOX, &held).await;

    // Discovery rules live in the table too.
    stack
        .sandbox
        .set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.ReadWrite", "User.Read.All"]);
    aws(&[
        "discover",
        "add",
        "--credential",
        &stack.credential,
        "--all-users",
        "--folder",
        "Archive",
        "--action",
        "none",
    ])
    .await
    .expect_code(0)
    .expect_text("added rule");
    aws(&["discover", "list"])
        .await
        .expect_code(0)
        .expect_text("last run: never");
    aws(&["discover"])
        .await
        .expect_code(0)
        .expect_text(&format!("add 1: {MAILBOX}"));
    aws(&["mailbox", "list"])
        .await
        .expect_code(0)
        .expect_text(&format!("discovered ({}/all/Archive)", stack.credential));
    aws(&["discover", "list"])
        .await
        .expect_code(0)
        .expect_text("1 archived, 0 skipped, added 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_imports_on_schedule_and_stops_cleanly_on_sigterm() {
    let setup = Setup::start(world(25), MOVE_MAILBOX).await;
    // Two requests wait in the outbox directory: one to send, one that cannot be sent.
    setup
        .sandbox
        .set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.ReadWrite", "Mail.Send"]);
    let outbox = setup.path("mailroom-data/outbox");
    std::fs::create_dir_all(&outbox).unwrap();
    std::fs::write(outbox.join("note.txt"), "see attached").unwrap();
    std::fs::write(
        outbox.join("001-weekly.json"),
        format!(
            r#"{{"from":"{MAILBOX}","to":["{MAILBOX}"],"subject":"Weekly note","body":{{"contentType":"text","content":"Hello"}},"attachments":["note.txt"],"idempotencyKey":"weekly-1"}}"#
        ),
    )
    .unwrap();
    std::fs::write(
        outbox.join("002-nobody.json"),
        format!(
            r#"{{"from":"{MAILBOX}","to":[],"subject":"x","body":{{"contentType":"text","content":"x"}},"idempotencyKey":"k"}}"#
        ),
    )
    .unwrap();
    let log = setup.path("serve.log");
    let mut child = common::local(setup.dir.path(), &setup.sandbox.url())
        .args(["serve", "--every", "1"])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(setup.path("serve.err")).unwrap())
        .spawn()
        .unwrap();
    let messages = setup.path("mailroom-data/messages");
    let started = std::time::Instant::now();
    while count_files(&messages) < 25 || !outbox.join("sent/001-weekly.json").exists() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "serve imported nothing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let stderr = std::fs::read_to_string(setup.path("serve.err")).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopping"), "{stderr}");
    // The tick queued the mailbox's job; a worker ran it (and finished it before exiting).
    assert!(stderr.contains("queued 1 mailbox job(s)"), "{stderr}");
    assert!(stderr.contains("job: reports@contoso.com: "), "{stderr}");
    assert_eq!(
        setup
            .sandbox
            .folder_messages(MAILBOX, "Inbox/Processed")
            .len(),
        25
    );
    // The outbox: sent once, and the bad request set aside with why.
    assert_eq!(
        setup
            .sandbox
            .sent_mail_with_property(&DraftMark::Key.property_id(), "weekly-1")
            .len(),
        1
    );
    let why = std::fs::read_to_string(outbox.join("failed/002-nobody.json.error.txt")).unwrap();
    assert!(why.contains("at least one address"), "{why}");
    assert!(stderr.contains("outbox: 001-weekly.json: sent"), "{stderr}");
    // The credential check ran at start (it runs daily): one line for the credential in use.
    let stdout = std::fs::read_to_string(&log).unwrap();
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("days") && l.contains("source:")),
        "{stdout}"
    );
}

/// Four users (one an admin, excluded) and a shared mailbox, each with mail in the Inbox, and the
/// hand-configured reports mailbox.
fn tenant() -> World {
    let mut world = world(5);
    for user in ["alice", "bob", "carol", "it-admin"] {
        world = world.mailbox(
            DEFAULT_TENANT,
            Mailbox::new(&format!("{user}@contoso.com")).messages("Inbox", 2),
        );
    }
    world.mailbox(
        DEFAULT_TENANT,
        Mailbox::new("info@contoso.com")
            .shared()
            .messages("Inbox", 2),
    )
}

const DISCOVER_ALL: &str = r#"[[discover]]
credential = "contoso"
users = "all"
exclude = ["*-admin@contoso.com"]
folder = "Inbox"
action = "none"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_finds_the_users_imports_them_and_disables_those_who_leave() {
    let setup = Setup::start(tenant(), &format!("{MOVE_MAILBOX}\n{DISCOVER_ALL}")).await;
    // Without the directory permission the doctor and the rule say what to grant.
    setup
        .mailroom(&["doctor"])
        .await
        .expect_code(1)
        .expect_text("discovery rule contoso/all/Inbox")
        .expect_text("✗ discovery")
        .expect_text("application permission User.Read.All")
        .expect_text("Grant admin consent");
    setup
        .mailroom(&["discover"])
        .await
        .expect_code(1)
        .expect_text("User.Read.All")
        .expect_text("nothing changed for this rule");
    setup
        .sandbox
        .set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.ReadWrite", "User.Read.All"]);

    setup
        .mailroom(&["doctor"])
        .await
        .expect_code(0)
        .expect_text("✓ discovery: the app can list the tenant's users");
    let dry = setup.mailroom(&["discover", "--dry-run"]).await;
    dry.expect_code(0)
        .expect_text("rule contoso/all/Inbox")
        .expect_text("would add 4: alice@contoso.com, bob@contoso.com, carol@contoso.com, reports@contoso.com")
        .expect_text("dry run: nothing changed");
    assert!(
        !dry.all().contains("it-admin@contoso.com: "),
        "{}",
        dry.all()
    );
    setup.mailroom(&["mailbox", "list"]).await.expect_code(0);
    assert!(
        !setup
            .mailroom(&["mailbox", "list"])
            .await
            .stdout
            .contains("discovered"),
        "a dry run changes nothing"
    );

    setup
        .mailroom(&["-v", "discover"])
        .await
        .expect_code(0)
        .expect_text("add 4: alice@contoso.com")
        .expect_text("skipped info@contoso.com: a shared mailbox")
        .expect_text("skipped it-admin@contoso.com: excluded by '*-admin@contoso.com'");
    setup
        .mailroom(&["mailbox", "list"])
        .await
        .expect_code(0)
        .expect_text("discovered (contoso/all/Inbox)")
        .expect_text("configured");
    setup
        .mailroom(&["import"])
        .await
        .expect_code(0)
        .expect_text("imported 11 messages");
    assert_eq!(count_files(&setup.path("mailroom-data/messages")), 11);

    assert!(setup.sandbox.delete_user("bob@contoso.com"));
    setup.sandbox.add_folder("dave@contoso.com", "Inbox");
    setup
        .mailroom(&["discover"])
        .await
        .expect_code(0)
        .expect_text("add 1: dave@contoso.com")
        .expect_text(
            "disable (gone from the directory or excluded; stored mail stays) 1: bob@contoso.com",
        );
    setup
        .mailroom(&["status"])
        .await
        .expect_code(0)
        .expect_text("bob@contoso.com (disabled)")
        .expect_text("dave@contoso.com (discovered)")
        .expect_text("discovery contoso/all/Inbox:");
    setup
        .mailroom(&["mailbox", "remove", "alice@contoso.com"])
        .await
        .expect_code(1)
        .expect_text("discovered by rule contoso/all/Inbox");

    // The rule goes from the configuration: its mailboxes are disabled, their mail kept.
    setup
        .mailroom(&["discover", "remove", "contoso/all/Inbox"])
        .await
        .expect_code(0);
    setup
        .mailroom(&["discover"])
        .await
        .expect_code(0)
        .expect_text("disable (their rule is gone; stored mail stays) 4:");
    setup
        .mailroom(&["import"])
        .await
        .expect_code(0)
        .expect_text("imported 0 messages");
    assert_eq!(count_files(&setup.path("mailroom-data/messages")), 11);
}

/// An HTTP endpoint for `[events]`: checks each delivery's signature with `secret` and keeps the
/// events it accepts; answers 503 while `down`.
struct EventSink {
    url: String,
    accepted: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl EventSink {
    async fn start(secret: &'static str) -> EventSink {
        use axum::http::{HeaderMap, StatusCode};
        use mailroom::domain::signature::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
        use std::sync::atomic::Ordering;
        let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (a, r, d) = (accepted.clone(), refused.clone(), down.clone());
        let receive = move |headers: HeaderMap, body: axum::body::Bytes| {
            let (a, r, d) = (a.clone(), r.clone(), d.clone());
            async move {
                if d.load(Ordering::SeqCst) {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                match signature::verify(
                    secret.as_bytes(),
                    header(TIMESTAMP_HEADER),
                    header(SIGNATURE_HEADER),
                    &body,
                    now,
                    signature::DEFAULT_TOLERANCE_SECONDS,
                ) {
                    Ok(()) => {
                        a.lock()
                            .unwrap()
                            .push(serde_json::from_slice(&body).unwrap());
                        StatusCode::NO_CONTENT
                    }
                    Err(_) => {
                        r.fetch_add(1, Ordering::SeqCst);
                        StatusCode::UNAUTHORIZED
                    }
                }
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mailroom", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/mailroom", axum::routing::post(receive));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        EventSink {
            url,
            accepted,
            refused,
            down,
        }
    }

    fn ids(&self) -> std::collections::BTreeSet<String> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_events_are_posted_signed_and_wait_while_the_endpoint_is_down() {
    use std::sync::atomic::Ordering;
    const SECRET: &str = "whsec-local-test";
    let sink = EventSink::start(SECRET).await;
    let events = format!(
        "{MOVE_MAILBOX}\n[events]\nurl = \"{}\"\nsecret_env = \"MAILROOM_TEST_EVENTS_SECRET\"\n",
        sink.url
    );
    let setup = Setup::start(world(3), &events).await;
    let import = |setup: &Setup| {
        let mut command = common::local(setup.dir.path(), &setup.sandbox.url());
        command
            .arg("import")
            .env("MAILROOM_TEST_EVENTS_SECRET", SECRET);
        run(command)
    };

    // Without the secret, the import says which variable to set, and stores nothing.
    setup
        .mailroom(&["import"])
        .await
        .expect_code(1)
        .expect_text("MAILROOM_TEST_EVENTS_SECRET is not set");
    assert_eq!(count_files(&setup.path("mailroom-data/messages")), 0);

    // The endpoint is down: the mail is stored, the events wait, and status says so.
    sink.down.store(true, Ordering::SeqCst);
    let first = import(&setup).await;
    first
        .expect_code(0)
        .expect_text("imported 3 messages")
        .expect_text("0 event(s) published, 3 not yet");
    assert!(!first.all().contains(SECRET));
    setup
        .mailroom(&["status"])
        .await
        .expect_code(0)
        .expect_text("3 waiting to be published");

    // Back up: the next run publishes the three, each signed, each once.
    sink.down.store(false, Ordering::SeqCst);
    import(&setup)
        .await
        .expect_code(0)
        .expect_text("imported 0 messages")
        .expect_text("3 event(s) published");
    assert_eq!(sink.ids().len(), 3);
    assert_eq!(sink.accepted.lock().unwrap().len(), 3);
    assert_eq!(sink.refused.load(Ordering::SeqCst), 0);
    let held = setup.sandbox.folder_messages(MAILBOX, "Inbox/Processed");
    let subjects: std::collections::BTreeSet<String> = sink
        .accepted
        .lock()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(subjects, held.iter().map(|m| m.subject.clone()).collect());
    let raw = sink.accepted.lock().unwrap()[0]["raw"]["file"].clone();
    assert!(
        std::path::Path::new(raw.as_str().unwrap()).is_file(),
        "{raw}"
    );
    let status = setup.mailroom(&["status"]).await;
    assert!(!status.all().contains("waiting to be published"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_sends_once_per_key_and_the_doctor_proves_the_outbound_path() {
    let setup = Setup::start(world(1), MOVE_MAILBOX).await;
    std::fs::write(setup.path("report.csv"), "a,b\n1,2\n").unwrap();
    let setup = &setup;
    let send = |key: &'static str| async move {
        setup
            .mailroom(&[
                "send",
                "--from",
                MAILBOX,
                "--to",
                MAILBOX,
                "--subject",
                "Quarterly report",
                "--body",
                "Attached.",
                "--attach",
                "report.csv",
                "--idempotency-key",
                key,
            ])
            .await
    };
    let sent = |key: &str| {
        setup
            .sandbox
            .sent_mail_with_property(&DraftMark::Key.property_id(), key)
            .len()
    };

    // Without Mail.Send: the error says which permission, and the doctor fails on it.
    send("q-1")
        .await
        .expect_code(1)
        .expect_text("Mail.Send")
        .expect_text("--idempotency-key q-1");
    assert_eq!(sent("q-1"), 0);
    setup
        .mailroom(&["doctor", "--send-test"])
        .await
        .expect_code(1)
        .expect_text("outbound test")
        .expect_text("grant the app the Mail.Send application permission");

    // Granted: the same key sends the finished draft once; again, nothing more.
    setup
        .sandbox
        .set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.ReadWrite", "Mail.Send"]);
    send("q-1")
        .await
        .expect_code(0)
        .expect_text("sent from reports@contoso.com (idempotency key q-1");
    send("q-1").await.expect_code(0).expect_text("already sent");
    assert_eq!(sent("q-1"), 1);
    let attachments = &setup
        .sandbox
        .sent_mail_with_property(&DraftMark::Key.property_id(), "q-1")[0]
        .attachments;
    assert_eq!(attachments[0].name, "report.csv");

    // Bad input: a usage error (exit 2), a missing file (exit 1, named), nothing sent.
    setup
        .mailroom(&["send", "--from", MAILBOX, "--subject", "x", "--body", "x"])
        .await
        .expect_code(2);
    setup
        .mailroom(&[
            "send",
            "--from",
            MAILBOX,
            "--to",
            MAILBOX,
            "--subject",
            "x",
            "--body",
            "x",
            "--attach",
            "missing.pdf",
        ])
        .await
        .expect_code(1)
        .expect_text("missing.pdf");
    assert_eq!(setup.sandbox.sent_mail().len(), 1);

    // The outbound test: sent to itself, and seen arriving.
    setup
        .mailroom(&["doctor", "--send-test"])
        .await
        .expect_code(0)
        .expect_text("arrived in the Inbox after");
}

/// A delegated credential in local mode: Alice's sign-in (as `mailroom credentials login` leaves
/// it under the data dir), `import` with her token, the refresh token replaced on disk and never
/// printed; then her sign-in revoked: `import` exits 1 saying to sign in again, `status` says
/// "needs sign-in", and the app credential's mailbox is imported all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegated_credential_imports_and_status_says_when_it_needs_sign_in() {
    use mailroom::adapters::local::LocalSignIns;
    use secrecy::ExposeSecret;
    const ALICE: &str = "alice@contoso.com";
    let world = world(5).mailbox(
        DEFAULT_TENANT,
        Mailbox::new(ALICE)
            .folder("Inbox/Orders")
            .messages("Inbox/Orders", 7),
    );
    let mailboxes = format!(
        r#"[credential.alice]
kind = "delegated"
tenant_id = "{DEFAULT_TENANT}"
client_id = "{DEFAULT_CLIENT_ID}"

[[mailbox]]
address = "{ALICE}"
credential = "alice"
folder = "Inbox/Orders"
action = "mark_read"

[[mailbox]]
address = "{MAILBOX}"
credential = "contoso"
folder = "{FOLDER}"
action = "none"
"#
    );
    let setup = Setup::start(world, &mailboxes).await;
    let signed_in = mailroom_tests::delegated::sign_in(
        &setup.sandbox,
        ALICE,
        &["Mail.ReadWrite", "offline_access"],
    )
    .await;
    let sign_ins = LocalSignIns::new(&setup.path("mailroom-data"));
    sign_ins.save("alice", &signed_in).unwrap();

    let first = setup.mailroom(&["import"]).await;
    first.expect_code(0).expect_text("imported 12 messages");
    let orders = setup.sandbox.folder_messages(ALICE, "Inbox/Orders");
    assert!(orders.iter().all(|m| m.is_read), "{orders:?}");
    let rotated = sign_ins.load("alice").unwrap().unwrap();
    assert_ne!(
        rotated.refresh_token.expose_secret(),
        signed_in.refresh_token.expose_secret()
    );
    for token in [&signed_in.refresh_token, &rotated.refresh_token] {
        assert!(!first.all().contains(token.expose_secret()));
    }

    assert!(setup.sandbox.revoke_refresh_tokens(ALICE));
    setup.sandbox.add_message(
        ALICE,
        "Inbox/Orders",
        graph_sandbox::NewMessage::new("After the revocation"),
    );
    setup.sandbox.add_message(
        MAILBOX,
        FOLDER,
        graph_sandbox::NewMessage::new("Backup done"),
    );
    let second = setup.mailroom(&["import"]).await;
    second
        .expect_code(1)
        .expect_text("needs its user to sign in again")
        .expect_text("AADSTS50173")
        .expect_text("run: mailroom credentials login alice");
    assert_eq!(count_files(&setup.path("mailroom-data/messages")), 13);

    let status = setup.mailroom(&["status"]).await;
    status.expect_code(0);
    let line = status
        .stdout
        .lines()
        .find(|l| l.starts_with(ALICE))
        .unwrap();
    assert!(line.contains("needs sign-in"), "{line}");
    assert!(line.contains("mailroom credentials login alice"), "{line}");
    assert!(!status.all().contains(rotated.refresh_token.expose_secret()));
}
