//! `mailroom credentials login` through the binary against the sandbox's Entra (docs/graph.md
//! section 13), the test playing the person: it follows the printed sign-in URL as a browser
//! would (the sandbox signs in the user it is told to and redirects to the CLI's loopback
//! listener), or approves the printed device code. Then the bad input: another sign-in's state,
//! a cancelled sign-in, a scope the app does not have, an expired device code, an abandoned
//! login: each exits 1 with a clear message and leaves the stored sign-in as it was. No output
//! ever holds the refresh token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use graph_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_TENANT, InteractiveOutcome, Mailbox, Sandbox, World,
};
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
        let mut child = Command::new(env!("CARGO_BIN_EXE_mailroom"))
            .args(["credentials", "login", "alice", "--no-browser"])
            .args(args)
            .current_dir(self.dir.path())
            .env("MAILROOM_GRAPH_URL", self.sandbox.url())
            .env("MAILROOM_LOGIN_URL", self.sandbox.url())
            .env_remove("MAILROOM_CONFIG")
            .env_remove("MAILROOM_DATA_DIR")
            .env_remove("MAILROOM_BACKEND")
            .env_remove("RUST_LOG")
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

    /// Plays the browser: opens the sign-in URL, follows Entra's redirect to the CLI.
    async fn browse(&self, running: &mut Running) -> reqwest::StatusCode {
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

    /// Runs `mailroom args…` to the end, as the login does: its exit code and output.
    async fn mailroom(&self, args: &[&str]) -> (i32, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailroom"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("MAILROOM_GRAPH_URL", self.sandbox.url())
            .env("MAILROOM_LOGIN_URL", self.sandbox.url())
            .env_remove("MAILROOM_CONFIG")
            .env_remove("MAILROOM_DATA_DIR")
            .env_remove("MAILROOM_BACKEND")
            .env_remove("RUST_LOG");
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
    let url = forged.line(|l| l.trim_start().starts_with("http")).await;
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
