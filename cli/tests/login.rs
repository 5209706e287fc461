//! `mailroom credentials login` through the binary against the sandbox's Entra (docs/graph.md
//! section 13), the test playing the person: it follows the printed sign-in URL as a browser
//! would (the sandbox signs in the user it is told to and redirects to the CLI's loopback
//! listener), or approves the printed device code. Then the bad input: another sign-in's state,
//! a cancelled sign-in, a scope the app does not have, an expired device code, an abandoned
//! login: each exits 1 with a clear message and leaves the stored sign-in as it was. No output
//! ever holds the refresh token.
//!
//! The same with `--backend aws` against moto (the `on_aws_` tests): the sign-in becomes a new
//! version of the credential's Secrets Manager secret, which gets tagged `mailroom:kind =
//! delegated`; a missing secret, an app credential's, a malformed one and every failed sign-in
//! leave the secret as it was (its versions, string and tags); and `mailroom --backend aws
//! import` imports with the secret and stores the refresh token it redeemed as a new version.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_secretsmanager::types::Tag;
use graph_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_TENANT, InteractiveOutcome, Mailbox, NewMessage, Sandbox, World,
};
use mailroom::domain::{AfterImport, MailboxAddress, MailboxConfig};
use mailroom::ports::MailboxConfigs;
use mailroom_tests::stack::Stack;
use tokio::sync::mpsc;

const USER: &str = "alice@contoso.com";

struct Login {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
}

/// A running `mailroom credentials login`, its output read line by line.
struct Running {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Running {
    /// Starts `command`, its stdout and stderr read line by line.
    fn spawn(mut command: Command) -> Running {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (send, lines) = mpsc::unbounded_channel();
        for output in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let send = send.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(output).lines() {
                    let Ok(line) = line else { break };
                    if send.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next output line satisfying `wanted` (panics after 20 s).
    async fn line(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("no such line in: {:#?}", self.seen))
                .unwrap_or_else(|| panic!("the login ended; output: {:#?}", self.seen));
            self.seen.push(line.clone());
            if wanted(&line) {
                return line;
            }
        }
    }

    /// Waits for the exit; the exit code and the whole output.
    async fn finish(mut self) -> (i32, String) {
        let status = tokio::task::spawn_blocking(move || {
            let status = self.child.wait().unwrap();
            (status, self.child)
        })
        .await
        .unwrap()
        .0;
        while let Some(line) = self.lines.recv().await {
            self.seen.push(line);
        }
        (status.code().unwrap_or(-1), self.seen.join("\n"))
    }
}

impl Login {
    async fn start(scopes: &str) -> Login {
        let world = World::default_test().mailbox(DEFAULT_TENANT, Mailbox::new(USER));
        let sandbox = Sandbox::start(world).await.unwrap();
        sandbox.set_interactive_user(Some(USER));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mailroom.toml"),
            format!(
                "[credential.alice]\nkind = \"delegated\"\ntenant_id = \"{DEFAULT_TENANT}\"\nclient_id = \"{DEFAULT_CLIENT_ID}\"\nscopes = {scopes}\n"
            ),
        )
        .unwrap();
        Login { sandbox, dir }
    }

    fn stored(&self) -> PathBuf {
        self.dir.path().join("mailroom-data/credentials/alice.json")
    }

    fn spawn(&self, args: &[&str]) -> Running {
        let mut command = common::local(self.dir.path(), &self.sandbox.url());
        command
            .args(["credentials", "login", "alice", "--no-browser"])
            .args(args);
        Running::spawn(command)
    }

    async fn browse(&self, running: &mut Running) -> reqwest::StatusCode {
        browse(running).await
    }

    /// Runs `mailroom args…` to the end, as the login does: its exit code and output.
    async fn mailroom(&self, args: &[&str]) -> (i32, String) {
        let mut command = common::local(self.dir.path(), &self.sandbox.url());
        command.args(args);
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), text)
    }

    fn refresh_tokens(&self) -> usize {
        self.sandbox.refresh_tokens_issued()
    }
}

/// Plays the browser: opens the sign-in URL, follows Entra's redirect to the CLI.
async fn browse(running: &mut Running) -> reqwest::StatusCode {
    let url = running.line(|l| l.trim_start().starts_with("http")).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = browser.get(url.trim()).send().await.unwrap();
    assert_eq!(signed_in.status(), 302, "{:?}", signed_in.text().await);
    let back = signed_in.headers()["location"].to_str().unwrap().to_owned();
    assert!(back.starts_with("http://localhost:"), "{back}");
    browser.get(&back).send().await.unwrap().status()
}

/// Answers the login's loopback listener with a code carrying another sign-in's state, as an old
/// browser tab or someone else's request would.
async fn answer_with_another_state(running: &mut Running) {
    let url = running.line(|l| l.trim_start().starts_with("http")).await;
    let url = url::Url::parse(url.trim()).unwrap();
    let redirect = url
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let answered = reqwest::get(format!("{redirect}/?code=stolen&state=someone-else"))
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);
}

fn stored_refresh_token(path: &Path) -> String {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json["refresh_token"].as_str().unwrap().to_owned()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_sign_in_stores_the_refresh_token_for_its_owner_only() {
    let login = Login::start(r#"["Mail.ReadWrite", "offline_access"]"#).await;
    let mut running = login.spawn(&[]);
    assert_eq!(login.browse(&mut running).await, 200);
    let (code, output) = running.finish().await;
    println!("{output}");
    assert_eq!(code, 0, "{output}");
    assert!(output.contains(&format!("signed in as {USER}")), "{output}");
    let stored = login.stored();
    let token = stored_refresh_token(&stored);
    assert!(!token.is_empty());
    assert!(!output.contains(&token), "the refresh token was printed");
    #[cfg(unix)]
    assert_eq!(mode(&stored), 0o600);
    assert_eq!(login.refresh_tokens(), 1);

    // Signing in again replaces it.
    let mut again = login.spawn(&[]);
    assert_eq!(login.browse(&mut again).await, 200);
    let (code, output) = again.finish().await;
    assert_eq!(code, 0, "{output}");
    assert_ne!(stored_refresh_token(&stored), token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_code_sign_in_is_approved_on_another_device() {
    let login = Login::start(r#"["Mail.ReadWrite", "offline_access"]"#).await;
    login
        .sandbox
        .set_device_code_timing(Duration::from_secs(60), Duration::from_secs(1));
    let mut running = login.spawn(&["--device-code"]);
    let line = running.line(|l| l.starts_with("code: ")).await;
    let user_code = line.trim_start_matches("code: ").trim().to_owned();
    assert!(login.sandbox.approve_device_code(&user_code, USER));
    let (code, output) = running.finish().await;
    println!("{output}");
    assert_eq!(code, 0, "{output}");
    assert!(output.contains(&format!("signed in as {USER}")), "{output}");
    let token = stored_refresh_token(&login.stored());
    assert!(!output.contains(&token));
}

/// A sign-in that fails leaves the stored one as it was.
async fn assert_fails_and_keeps(login: &Login, running: Running, expected: &str, before: &str) {
    let (code, output) = running.finish().await;
    println!("{output}");
    assert_eq!(code, 1, "{output}");
    assert!(output.contains(expected), "{expected:?} not in {output}");
    assert!(output.contains("nothing was stored"), "{output}");
    assert_eq!(
        std::fs::read_to_string(login.stored()).unwrap(),
        before,
        "the stored sign-in changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_exit_1_say_why_and_keep_the_stored_one() {
    let login = Login::start(r#"["Mail.ReadWrite", "offline_access"]"#).await;
    let mut first = login.spawn(&[]);
    assert_eq!(login.browse(&mut first).await, 200);
    assert_eq!(first.finish().await.0, 0);
    let before = std::fs::read_to_string(login.stored()).unwrap();

    // An answer carrying another sign-in's state.
    let mut forged = login.spawn(&[]);
    answer_with_another_state(&mut forged).await;
    assert_fails_and_keeps(&login, forged, "another sign-in's state", &before).await;

    // The person cancels on the sign-in page.
    login
        .sandbox
        .set_interactive_outcome(InteractiveOutcome::Cancel);
    let mut cancelled = login.spawn(&[]);
    login.browse(&mut cancelled).await;
    assert_fails_and_keeps(&login, cancelled, "cancelled", &before).await;
    login
        .sandbox
        .set_interactive_outcome(InteractiveOutcome::Approve);

    // Nobody signs in.
    let abandoned = login.spawn(&["--timeout", "1"]);
    assert_fails_and_keeps(&login, abandoned, "abandoned", &before).await;

    // A device code nobody enters expires.
    login
        .sandbox
        .set_device_code_timing(Duration::from_secs(2), Duration::from_secs(1));
    let expired = login.spawn(&["--device-code"]);
    assert_fails_and_keeps(&login, expired, "expired", &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_the_app_does_not_have_is_refused_by_name() {
    let login =
        Login::start(r#"["Mail.ReadWrite", "Sites.FullControl.All", "offline_access"]"#).await;
    let mut running = login.spawn(&[]);
    login.browse(&mut running).await;
    let (code, output) = running.finish().await;
    println!("{output}");
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("Sites.FullControl.All"), "{output}");
    assert!(output.contains("nothing was stored"), "{output}");
    assert!(!login.stored().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refuses_an_app_credential_and_an_unknown_kind() {
    let login = Login::start(r#"["Mail.ReadWrite"]"#).await;
    std::fs::write(
        login.dir.path().join("mailroom.toml"),
        format!(
            "[credential.alice]\ntenant_id = \"{DEFAULT_TENANT}\"\nclient_id = \"{DEFAULT_CLIENT_ID}\"\nclient_secret_env = \"UNSET_SECRET\"\n"
        ),
    )
    .unwrap();
    let (code, output) = login.spawn(&[]).finish().await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("kind = \"delegated\""), "{output}");

    std::fs::write(
        login.dir.path().join("mailroom.toml"),
        format!(
            "[credential.alice]\nkind = \"person\"\ntenant_id = \"{DEFAULT_TENANT}\"\nclient_id = \"{DEFAULT_CLIENT_ID}\"\n"
        ),
    )
    .unwrap();
    let (code, output) = login.spawn(&[]).finish().await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("kind must be"), "{output}");
}

// ---- On AWS (`--backend aws`): the credential is a Secrets Manager secret on moto ----------------

const FOLDER: &str = "Inbox/Reports";
const PROCESSED: &str = "Inbox/Processed";

/// The stack (the sandbox's Entra and Graph, moto) and what a test makes of it.
struct OnAws {
    stack: Stack,
    /// Where the binary runs: no mailroom.toml, and nothing may be written here.
    dir: tempfile::TempDir,
}

/// What a secret is now: every version and its stages, the current string, the tags.
#[derive(Debug, PartialEq)]
struct SecretNow {
    versions: Vec<(String, Vec<String>)>,
    current: String,
    tags: Vec<(String, String)>,
}

impl SecretNow {
    fn current_version(&self) -> &str {
        &self
            .versions
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
            .unwrap()
            .0
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.current).unwrap()
    }

    fn refresh_token(&self) -> String {
        self.json()["sign_in"]["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn tagged_delegated(&self) -> bool {
        self.tags
            .contains(&("mailroom:kind".to_owned(), "delegated".to_owned()))
    }
}

impl OnAws {
    /// Alice's mailbox with mail to import; she is who signs in at the sandbox's sign-in page.
    async fn start() -> OnAws {
        let world = World::default_test().mailbox(
            DEFAULT_TENANT,
            Mailbox::new(USER)
                .folder(FOLDER)
                .folder(PROCESSED)
                .messages(FOLDER, 3),
        );
        let stack = Stack::start(world).await;
        stack.sandbox.set_interactive_user(Some(USER));
        OnAws {
            stack,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A fresh secret name (tests share moto).
    fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.stack.credential)
    }

    /// Creates the delegated credential's secret `name` (a public client), tagged or not.
    async fn create_delegated(&self, name: &str, tagged: bool) {
        let json =
            mailroom_tests::delegated::public_client_json(&["Mail.ReadWrite", "offline_access"]);
        let tags = tagged.then(|| {
            vec![
                Tag::builder()
                    .key("mailroom:kind")
                    .value("delegated")
                    .build(),
            ]
        });
        self.stack
            .secrets
            .create_secret()
            .name(name)
            .secret_string(json)
            .set_tags(tags)
            .send()
            .await
            .unwrap();
    }

    async fn secret(&self, name: &str) -> SecretNow {
        let secrets = &self.stack.secrets;
        let listed = secrets
            .list_secret_version_ids()
            .secret_id(name)
            .include_deprecated(true)
            .send()
            .await
            .unwrap();
        let mut versions: Vec<(String, Vec<String>)> = listed
            .versions()
            .iter()
            .map(|v| {
                let mut stages = v.version_stages().to_vec();
                stages.sort();
                (v.version_id().unwrap().to_owned(), stages)
            })
            .collect();
        versions.sort();
        let current = secrets
            .get_secret_value()
            .secret_id(name)
            .send()
            .await
            .unwrap()
            .secret_string()
            .unwrap()
            .to_owned();
        let described = secrets
            .describe_secret()
            .secret_id(name)
            .send()
            .await
            .unwrap();
        let mut tags: Vec<(String, String)> = described
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_owned(),
                    t.value().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        tags.sort();
        SecretNow {
            versions,
            current,
            tags,
        }
    }

    /// `mailroom --backend aws ARGS` as an operator runs it against the deployment: AWS
    /// credentials and region from the environment, nothing else of theirs.
    fn mailroom(&self, args: &[&str]) -> Command {
        let mut command = common::aws(&self.stack);
        command.args(args).current_dir(self.dir.path());
        command
    }

    /// `mailroom --backend aws credentials login NAME --no-browser ARGS`: no table or bucket is
    /// named, as signing in needs neither.
    fn login(&self, name: &str, args: &[&str]) -> Running {
        let mut command = self.mailroom(&["credentials", "login", name, "--no-browser"]);
        command.args(args);
        Running::spawn(command)
    }

    /// `mailroom --backend aws import` against the stack's table and bucket.
    async fn import(&self) -> (i32, String) {
        let mut command = self.mailroom(&["import"]);
        command
            .env("MAILROOM_TABLE", self.stack.state.table())
            .env("MAILROOM_BUCKET", &self.stack.bucket)
            .env("MAILROOM_S3_PATH_STYLE", "true")
            .env("MAILROOM_EVENT_BUS", "none");
        Running::spawn(command).finish().await
    }

    /// Nothing was written under the working directory (no local sign-in, no data dir).
    fn wrote_nothing_locally(&self) -> bool {
        std::fs::read_dir(self.dir.path()).unwrap().next().is_none()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_aws_a_browser_sign_in_is_a_new_version_of_the_secret_which_gets_tagged() {
    let aws = OnAws::start().await;
    let name = aws.name("alice");
    aws.create_delegated(&name, false).await;
    let before = aws.secret(&name).await;
    assert!(!before.tagged_delegated());

    let mut running = aws.login(&name, &[]);
    assert_eq!(browse(&mut running).await, 200);
    let (code, output) = running.finish().await;
    println!("{output}");
    assert_eq!(code, 0, "{output}");
    assert!(output.contains(&format!("signed in as {USER}")), "{output}");
    assert!(output.contains("tagged secret"), "{output}");
    assert!(output.contains("Secrets Manager secret"), "{output}");

    // One new version, now current, holding the credential as it was plus the sign-in.
    let after = aws.secret(&name).await;
    assert_eq!(
        after.versions.len(),
        before.versions.len() + 1,
        "{after:#?}"
    );
    assert_ne!(after.current_version(), before.current_version());
    let json = after.json();
    let mut credential = json.clone();
    credential.as_object_mut().unwrap().remove("sign_in");
    assert_eq!(credential, before.json());
    assert_eq!(json["sign_in"]["user"], USER);
    let token = after.refresh_token();
    assert!(!token.is_empty());
    assert!(!output.contains(&token), "the refresh token was printed");
    assert!(after.tagged_delegated(), "{after:#?}");
    assert!(aws.wrote_nothing_locally());

    // Signing in again: another version, another refresh token; already tagged.
    let mut again = aws.login(&name, &[]);
    assert_eq!(browse(&mut again).await, 200);
    let (code, output) = again.finish().await;
    assert_eq!(code, 0, "{output}");
    assert!(!output.contains("tagged secret"), "{output}");
    let third = aws.secret(&name).await;
    assert_eq!(third.versions.len(), after.versions.len() + 1);
    assert_ne!(third.refresh_token(), token);
    assert!(!output.contains(&third.refresh_token()));
    assert_eq!(third.tags, after.tags);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_aws_a_device_code_sign_in_is_stored_in_the_secret() {
    let aws = OnAws::start().await;
    aws.stack
        .sandbox
        .set_device_code_timing(Duration::from_secs(60), Duration::from_secs(1));
    let name = aws.name("alice");
    aws.create_delegated(&name, true).await;
    let before = aws.secret(&name).await;

    let mut running = aws.login(&name, &["--device-code"]);
    let line = running.line(|l| l.starts_with("code: ")).await;
    let user_code = line.trim_start_matches("code: ").trim().to_owned();
    assert!(aws.stack.sandbox.approve_device_code(&user_code, USER));
    let (code, output) = running.finish().await;
    println!("{output}");
    assert_eq!(code, 0, "{output}");
    assert!(output.contains(&format!("signed in as {USER}")), "{output}");
    // Tagged when created: nothing to tag.
    assert!(!output.contains("tagged secret"), "{output}");

    let after = aws.secret(&name).await;
    assert_eq!(after.versions.len(), before.versions.len() + 1);
    assert_ne!(after.current_version(), before.current_version());
    let token = after.refresh_token();
    assert!(!output.contains(&token), "the refresh token was printed");
    assert_eq!(after.tags, before.tags);
    assert!(aws.wrote_nothing_locally());
}

/// A login that fails exits 1, says why, and leaves the secret as it was: no new version, the
/// same string, the same tags.
async fn assert_fails_and_keeps_secret(
    aws: &OnAws,
    running: Running,
    name: &str,
    expected: &str,
    before: &SecretNow,
) -> String {
    let (code, output) = running.finish().await;
    println!("{output}");
    assert_eq!(code, 1, "{output}");
    assert!(output.contains(expected), "{expected:?} not in {output}");
    assert_eq!(&aws.secret(name).await, before, "the secret changed");
    if let Some(token) = before.json()["sign_in"]["refresh_token"].as_str() {
        assert!(!output.contains(token), "the refresh token was printed");
    }
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_aws_failed_logins_exit_1_say_why_and_leave_the_secret_as_it_was() {
    let aws = OnAws::start().await;

    // No such secret: the command that creates it, tagged, ready to run.
    let missing = aws.name("missing");
    let (code, output) = aws.login(&missing, &[]).finish().await;
    println!("{output}");
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains(&format!(
            "aws secretsmanager create-secret --name {missing} --tags Key=mailroom:kind,Value=delegated --secret-string '{{\"kind\":\"delegated\","
        )),
        "{output}"
    );
    let described = aws
        .stack
        .secrets
        .describe_secret()
        .secret_id(&missing)
        .send()
        .await;
    assert!(described.is_err(), "the login created {missing}");

    // An app credential's secret (the stack's): refused before any sign-in, and left untagged.
    let app = aws.stack.credential.clone();
    let before = aws.secret(&app).await;
    let running = aws.login(&app, &[]);
    let output =
        assert_fails_and_keeps_secret(&aws, running, &app, "holds an app credential", &before)
            .await;
    assert!(!output.contains("http"), "a sign-in was started: {output}");
    assert!(!before.tagged_delegated());

    // A delegated secret that is malformed.
    let malformed = aws.name("malformed");
    aws.stack
        .store_secret(
            &malformed,
            &serde_json::json!({"kind": "delegated", "tenant_id": DEFAULT_TENANT}).to_string(),
        )
        .await;
    let before = aws.secret(&malformed).await;
    let running = aws.login(&malformed, &[]);
    assert_fails_and_keeps_secret(&aws, running, &malformed, "'client_id' is missing", &before)
        .await;

    // A delegated secret nobody signed in for yet, untagged: a cancelled sign-in neither stores
    // nor tags.
    let fresh = aws.name("fresh");
    aws.create_delegated(&fresh, false).await;
    let before = aws.secret(&fresh).await;
    aws.stack
        .sandbox
        .set_interactive_outcome(InteractiveOutcome::Cancel);
    let mut cancelled = aws.login(&fresh, &[]);
    browse(&mut cancelled).await;
    assert_fails_and_keeps_secret(&aws, cancelled, &fresh, "cancelled", &before).await;
    aws.stack
        .sandbox
        .set_interactive_outcome(InteractiveOutcome::Approve);

    // A secret with a sign-in: each failure keeps it.
    let name = aws.name("alice");
    aws.create_delegated(&name, false).await;
    let mut first = aws.login(&name, &[]);
    assert_eq!(browse(&mut first).await, 200);
    assert_eq!(first.finish().await.0, 0);
    let before = aws.secret(&name).await;
    assert!(before.tagged_delegated());

    let mut forged = aws.login(&name, &[]);
    answer_with_another_state(&mut forged).await;
    let output =
        assert_fails_and_keeps_secret(&aws, forged, &name, "another sign-in's state", &before)
            .await;
    assert!(output.contains("nothing was stored"), "{output}");

    aws.stack
        .sandbox
        .set_interactive_outcome(InteractiveOutcome::Cancel);
    let mut cancelled = aws.login(&name, &[]);
    browse(&mut cancelled).await;
    let output = assert_fails_and_keeps_secret(&aws, cancelled, &name, "cancelled", &before).await;
    assert!(output.contains("nothing was stored"), "{output}");
    aws.stack
        .sandbox
        .set_interactive_outcome(InteractiveOutcome::Approve);

    let abandoned = aws.login(&name, &["--timeout", "1"]);
    assert_fails_and_keeps_secret(&aws, abandoned, &name, "abandoned", &before).await;
    assert!(aws.wrote_nothing_locally());
}

/// End to end: an operator signs Alice in with `--backend aws`, and `mailroom --backend aws
/// import` imports her mailbox with that secret. A refresh within 10 minutes of the stored one
/// is not stored again (Secrets Manager's version quota); once the stored refresh is older, the
/// import stores the new refresh token as a new version of the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_aws_the_signed_in_secret_imports_and_the_import_rotates_its_refresh_token() {
    let aws = OnAws::start().await;
    let name = aws.name("alice");
    aws.create_delegated(&name, false).await;
    let mut login = aws.login(&name, &[]);
    assert_eq!(browse(&mut login).await, 200);
    let (code, output) = login.finish().await;
    assert_eq!(code, 0, "{output}");
    let signed_in = aws.secret(&name).await;
    let login_token = signed_in.refresh_token();

    let config = MailboxConfig {
        address: MailboxAddress::parse(USER).unwrap(),
        folder: FOLDER.to_owned(),
        action: AfterImport::Move {
            processed_folder: PROCESSED.to_owned(),
        },
        credential: name.clone(),
        enabled: true,
        discovered_by: None,
    };
    aws.stack.state.put_mailbox(&config).await.unwrap();
    let first_three = aws.stack.sandbox.folder_messages(USER, FOLDER);
    assert_eq!(first_three.len(), 3);

    // Minutes after the login: imported with Alice's token; the refresh is not stored again.
    let redeemed = aws.stack.sandbox.refresh_redemptions();
    let (code, output) = aws.import().await;
    println!("{output}");
    assert_eq!(code, 0, "{output}");
    assert!(aws.stack.sandbox.refresh_redemptions() > redeemed);
    aws.stack
        .assert_stored_exactly_once(USER, &first_three)
        .await;
    assert_eq!(
        aws.secret(&name).await,
        signed_in,
        "stored again within 10 minutes"
    );
    assert!(!output.contains(&login_token));

    // The stored refresh is 20 minutes old (as if Alice had signed in then): the next import
    // stores the new refresh token, a new version written by the import itself.
    let mut aged = signed_in.json();
    let twenty_minutes_ago = (time::OffsetDateTime::now_utc() - time::Duration::minutes(20))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    aged["sign_in"]["signed_in_at"] = twenty_minutes_ago.clone().into();
    aged["sign_in"]["refreshed_at"] = twenty_minutes_ago.clone().into();
    aws.stack.store_secret(&name, &aged.to_string()).await;
    let before_import = aws.secret(&name).await;
    let added = aws
        .stack
        .sandbox
        .add_message(USER, FOLDER, NewMessage::new("After the sign-in"));
    let (code, output) = aws.import().await;
    println!("{output}");
    assert_eq!(code, 0, "{output}");
    let mut all = first_three.clone();
    all.push(added);
    aws.stack.assert_stored_exactly_once(USER, &all).await;

    let rotated = aws.secret(&name).await;
    assert_eq!(rotated.versions.len(), before_import.versions.len() + 1);
    assert_ne!(rotated.current_version(), before_import.current_version());
    let new_token = rotated.refresh_token();
    assert_ne!(new_token, login_token, "the refresh token was not rotated");
    let sign_in = &rotated.json()["sign_in"];
    assert_eq!(sign_in["signed_in_at"], twenty_minutes_ago.as_str());
    assert_ne!(sign_in["refreshed_at"], twenty_minutes_ago.as_str());
    assert_eq!(sign_in["user"], USER);
    assert_eq!(rotated.tags, before_import.tags);
    assert!(!output.contains(&new_token) && !output.contains(&login_token));

    // The stored token works: another import redeems it.
    let (code, output) = aws.import().await;
    assert_eq!(code, 0, "{output}");
}

/// `mailroom credentials check` for a delegated credential in local mode, after a sign-in through
/// the binary: the line says who signed in, the scopes, the days since the last refresh and the
/// mailbox's access; a sign-in unused for 70 days is refreshed and alerted once; a revoked one
/// fails the check (exit 1) with the login command and alerts once. No output holds a refresh
/// token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_check_reports_a_delegated_sign_in_and_alerts_once_when_it_dies() {
    let login = Login::start(r#"["Mail.ReadWrite", "offline_access"]"#).await;
    let config = login.dir.path().join("mailroom.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str(&format!(
        "\n[[mailbox]]\naddress = \"{USER}\"\ncredential = \"alice\"\nfolder = \"Inbox\"\naction = \"none\"\n"
    ));
    std::fs::write(&config, toml).unwrap();
    let mut running = login.spawn(&[]);
    assert_eq!(login.browse(&mut running).await, 200);
    assert_eq!(running.finish().await.0, 0);
    let mut tokens = vec![stored_refresh_token(&login.stored())];
    let mut outputs = Vec::new();

    let (code, output) = login.mailroom(&["credentials", "check"]).await;
    println!("{output}");
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains(&format!(
            "✓ alice: delegated, signed in as {USER}; scopes granted: Mail.ReadWrite"
        )) && output
            .contains("last refresh 0 days before this check (90 of 90 days left), refreshed now")
            && output.contains(&format!("mailboxes: {USER} readable"))
            && output.contains("public client: no secret to expire; findings: none"),
        "{output}"
    );
    assert!(!output.contains("ALERT"), "{output}");
    tokens.push(stored_refresh_token(&login.stored()));
    assert_ne!(tokens[0], tokens[1], "the check did not redeem the sign-in");
    outputs.push(output);

    // Nothing refreshed it for 70 days: the check refreshes it and says how close it came, once.
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(login.stored()).unwrap()).unwrap();
    let mut old = stored.clone();
    let seventy = time::OffsetDateTime::now_utc() - time::Duration::days(70);
    old["refreshed_at"] = seventy
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
        .into();
    std::fs::write(login.stored(), old.to_string()).unwrap();
    let (code, output) = login.mailroom(&["credentials", "check"]).await;
    println!("{output}");
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("! alice: delegated")
            && output.contains(
                "last refresh 70 days before this check (20 of 90 days left), refreshed now"
            )
            && output.contains(
                "ALERT Mailroom: sign-in 'alice' went 70 days without a refresh (refreshed now)"
            ),
        "{output}"
    );
    tokens.push(stored_refresh_token(&login.stored()));
    outputs.push(output);

    // Revoked: exit 1, the reason and the command, one alert across two runs.
    assert!(login.sandbox.revoke_refresh_tokens(USER));
    let (code, first) = login.mailroom(&["credentials", "check"]).await;
    println!("{first}");
    assert_eq!(code, 1, "{first}");
    assert!(
        first.contains("✗ alice: delegated")
            && first.contains("needs a new sign-in")
            && first.contains("AADSTS50173")
            && first.contains("mailroom credentials login alice")
            && first.contains("ALERT Mailroom: credential 'alice' needs its user to sign in again"),
        "{first}"
    );
    assert_eq!(first.matches("ALERT").count(), 1, "{first}");
    let (code, again) = login.mailroom(&["credentials", "check"]).await;
    assert_eq!(code, 1, "{again}");
    assert!(
        again.contains("mailroom credentials login alice"),
        "{again}"
    );
    assert!(!again.contains("ALERT"), "{again}");
    outputs.extend([first, again]);
    for output in &outputs {
        for token in &tokens {
            assert!(
                !output.contains(token.as_str()),
                "a refresh token in: {output}"
            );
        }
    }
}
