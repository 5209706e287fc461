//! `mailroom doctor` end to end: the real Graph client against the Graph sandbox over HTTP. No AWS:
//! the doctor only talks to Entra ID and Graph. Every test also checks that no line of the report
//! carries the client secret, and those that touch the mailbox that it is unchanged afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use graph_sandbox::{
    App, AppSecret, DEFAULT_CLIENT_ID, DEFAULT_DOMAIN, DEFAULT_SECRET, DEFAULT_SECRET_ID,
    DEFAULT_TENANT, Mailbox, MessageInfo, NewMessage, Sandbox, Tenant, World,
};
use mailroom::credentials::AppCredential;
use mailroom::doctor::{Check, CheckStatus, DoctorOptions, check_mailbox, is_valid};
use mailroom::domain::{AfterImport, MailboxAddress, MailboxConfig};
use mailroom::graph::{GraphClient, GraphConfig, RetryPolicy};
use time::OffsetDateTime;

const MAILBOX: &str = "reports@contoso.com";
/// A second mailbox of the tenant: the scope probe, which the app must not be able to read.
const CEO: &str = "ceo@contoso.com";
const FOLDER: &str = "Inbox/Backup Reports";
const PROCESSED: &str = "Inbox/Processed";
const MESSAGES: usize = 5;

/// Every check when the token fails (the rest are skipped or need no token).
const ALL_CHECKS: [&str; 7] = [
    "token",
    "mailbox",
    "folder",
    "processed folder",
    "permission",
    "access scope",
    "secret expiry",
];

/// Every check when Entra issues a token for a client secret: also whether it could be rotated.
const ALL_CHECKS_WITH_TOKEN: [&str; 8] = [
    "token",
    "mailbox",
    "folder",
    "processed folder",
    "permission",
    "access scope",
    "secret expiry",
    "rotation",
];

fn move_to_processed() -> AfterImport {
    AfterImport::Move {
        processed_folder: PROCESSED.into(),
    }
}

/// The configured mailbox (its oldest message already read, so the permission probe has an
/// `isRead: true` to preserve) and the CEO's.
fn mailboxes(world: World, messages: usize) -> World {
    let mut mailbox = Mailbox::new(MAILBOX).folder(FOLDER).folder(PROCESSED);
    if messages > 0 {
        mailbox = mailbox
            .message(
                FOLDER,
                NewMessage::new("Backup job 'Nightly' finished (read)")
                    .received(OffsetDateTime::now_utc() - time::Duration::days(400))
                    .is_read(true),
            )
            .messages(FOLDER, messages - 1);
    }
    world
        .mailbox(DEFAULT_TENANT, mailbox)
        .mailbox(DEFAULT_TENANT, Mailbox::new(CEO).messages("Inbox", 3))
}

/// The default tenant and app whose one secret expires at `secret_expires_at`.
fn world_with_secret_expiring(secret_expires_at: OffsetDateTime) -> World {
    World::new().tenant(
        Tenant::new(DEFAULT_TENANT).domain(DEFAULT_DOMAIN).app(
            App::new(DEFAULT_CLIENT_ID).secret(
                AppSecret::new(DEFAULT_SECRET)
                    .key_id(DEFAULT_SECRET_ID)
                    .expires_at(secret_expires_at),
            ),
        ),
    )
}

struct Env {
    sandbox: Sandbox,
    graph: GraphClient,
}

impl Env {
    async fn start(world: World) -> Self {
        let sandbox = Sandbox::start(world).await.expect("sandbox");
        let url = url::Url::parse(&sandbox.url()).expect("sandbox URL");
        let mut config = GraphConfig::new(url.clone(), url);
        config.retry = RetryPolicy {
            max_retries: 3,
            base: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(2),
            ..RetryPolicy::default()
        };
        let graph = GraphClient::new(config).expect("graph client");
        Self { sandbox, graph }
    }

    async fn default(messages: usize) -> Self {
        Self::start(mailboxes(World::default_test(), messages)).await
    }

    async fn doctor(
        &self,
        credential: &AppCredential,
        config: &MailboxConfig,
        options: &DoctorOptions,
    ) -> Vec<Check> {
        let checks = check_mailbox(&self.graph, credential, config, options).await;
        print_report(&checks);
        assert_no_secret(&checks);
        checks
    }

    /// Runs the doctor and asserts the mailbox is exactly as it was (folders, read flags, ids).
    async fn doctor_leaves_mailbox_unchanged(
        &self,
        credential: &AppCredential,
        config: &MailboxConfig,
        options: &DoctorOptions,
    ) -> Vec<Check> {
        let before = self.snapshot();
        let checks = self.doctor(credential, config, options).await;
        assert_eq!(self.snapshot(), before, "the doctor changed the mailbox");
        checks
    }

    fn snapshot(&self) -> Vec<MessageInfo> {
        let mut messages = self.sandbox.messages(MAILBOX);
        messages.sort_by(|a, b| a.immutable_id.cmp(&b.immutable_id));
        messages
    }

    fn patches(&self) -> usize {
        self.sandbox
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH")
            .count()
    }
}

fn credential() -> AppCredential {
    AppCredential {
        expires_at: Some(OffsetDateTime::now_utc() + time::Duration::days(300)),
        ..AppCredential::new(
            DEFAULT_TENANT,
            DEFAULT_CLIENT_ID,
            DEFAULT_SECRET.to_owned().into(),
        )
    }
}

fn config(folder: &str, action: AfterImport) -> MailboxConfig {
    MailboxConfig {
        address: MailboxAddress::parse(MAILBOX).unwrap(),
        folder: folder.into(),
        action,
        credential: "contoso".into(),
        enabled: true,
        discovered_by: None,
    }
}

fn options(probe: Option<&str>) -> DoctorOptions {
    DoctorOptions {
        scope_probe: probe.map(|p| MailboxAddress::parse(p).unwrap()),
        ..DoctorOptions::new(OffsetDateTime::now_utc())
    }
}

fn check<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no '{name}' check in {checks:#?}"))
}

fn assert_status(checks: &[Check], name: &str, status: CheckStatus) -> String {
    let found = check(checks, name);
    assert_eq!(found.status, status, "{found}");
    found.to_string()
}

fn names(checks: &[Check]) -> Vec<&'static str> {
    checks.iter().map(|c| c.name).collect()
}

fn print_report(checks: &[Check]) {
    for c in checks {
        println!("{c}");
    }
}

fn assert_no_secret(checks: &[Check]) {
    for c in checks {
        let text = format!("{c} {c:?}");
        assert!(!text.contains(DEFAULT_SECRET), "the secret leaked: {text}");
    }
}

#[tokio::test]
async fn a_well_configured_move_mailbox_passes_every_check_and_stays_unchanged() {
    let env = Env::default(MESSAGES).await;
    env.sandbox
        .set_app_scope(DEFAULT_CLIENT_ID, Some(&[MAILBOX]));
    // Written as an operator might type it: the report shows the mailbox's own spelling.
    let config = config("inbox/backup reports", move_to_processed());

    let checks = env
        .doctor_leaves_mailbox_unchanged(&credential(), &config, &options(Some(CEO)))
        .await;

    assert_eq!(names(&checks), ALL_CHECKS_WITH_TOKEN);
    for c in &checks {
        assert_eq!(c.status, CheckStatus::Pass, "{c}");
        assert!(c.fix.is_none(), "{c}");
    }
    assert!(is_valid(&checks));
    assert_eq!(
        check(&checks, "folder").to_string(),
        format!("✓ folder: Inbox/Backup Reports ({MESSAGES} messages)")
    );
    assert!(
        check(&checks, "processed folder")
            .detail
            .starts_with("Inbox/Processed (0 messages)")
    );
    assert!(check(&checks, "access scope").detail.contains(CEO));
    assert!(check(&checks, "secret expiry").detail.contains("days"));
    // Without Application.Read.All the recorded expiry is used, and rotation is not possible.
    assert!(
        check(&checks, "secret expiry")
            .detail
            .ends_with("(as recorded with the credential)")
    );
    assert!(
        check(&checks, "rotation")
            .detail
            .starts_with("not possible")
    );
    // The permission was proven by a real write, which left the oldest (read) message read.
    assert_eq!(env.patches(), 1);
    let oldest = env
        .sandbox
        .folder_messages(MAILBOX, FOLDER)
        .into_iter()
        .min_by_key(|m| m.received)
        .unwrap();
    assert!(oldest.is_read, "{oldest:?}");
}

#[tokio::test]
async fn a_secret_id_in_place_of_the_value_fails_the_token_and_skips_the_graph_checks() {
    let env = Env::default(MESSAGES).await;
    let credential = AppCredential {
        secret: DEFAULT_SECRET_ID.to_owned().into(),
        ..credential()
    };

    let checks = env
        .doctor(
            &credential,
            &config(FOLDER, move_to_processed()),
            &options(Some(CEO)),
        )
        .await;

    assert_eq!(names(&checks), ALL_CHECKS);
    let token = assert_status(&checks, "token", CheckStatus::Fail);
    assert!(token.contains("AADSTS7000215"), "{token}");
    assert!(token.contains("Value, not its Secret ID"), "{token}");
    assert!(token.contains("fix: copy the secret's Value"), "{token}");
    for name in [
        "mailbox",
        "folder",
        "processed folder",
        "permission",
        "access scope",
    ] {
        let skipped = assert_status(&checks, name, CheckStatus::Skipped);
        assert!(skipped.contains("token"), "{skipped}");
    }
    // Independent of Graph: still reported.
    assert_status(&checks, "secret expiry", CheckStatus::Pass);
    assert!(!is_valid(&checks));
}

#[tokio::test]
async fn an_expired_secret_fails_the_token_and_the_expiry() {
    let expired = OffsetDateTime::now_utc() - time::Duration::days(3);
    let env = Env::start(mailboxes(world_with_secret_expiring(expired), MESSAGES)).await;
    let credential = AppCredential {
        expires_at: Some(expired),
        ..credential()
    };

    let checks = env
        .doctor(
            &credential,
            &config(FOLDER, AfterImport::MarkRead),
            &options(Some(CEO)),
        )
        .await;

    let token = assert_status(&checks, "token", CheckStatus::Fail);
    assert!(
        token.contains("expired") && token.contains("AADSTS7000222"),
        "{token}"
    );
    assert!(token.contains("fix: create a new client secret"), "{token}");
    let expiry = assert_status(&checks, "secret expiry", CheckStatus::Fail);
    assert!(
        expiry.contains("expired on") && expiry.contains("3 days ago"),
        "{expiry}"
    );
    assert_status(&checks, "mailbox", CheckStatus::Skipped);
    assert!(!is_valid(&checks));

    // Entra knows better than an unrecorded expiry.
    let unrecorded = AppCredential {
        expires_at: None,
        ..credential
    };
    let checks = env
        .doctor(
            &unrecorded,
            &config(FOLDER, AfterImport::MarkRead),
            &options(None),
        )
        .await;
    let expiry = assert_status(&checks, "secret expiry", CheckStatus::Fail);
    assert!(expiry.contains("AADSTS7000222"), "{expiry}");
}

#[tokio::test]
async fn an_unknown_tenant_fails_the_token() {
    let env = Env::default(MESSAGES).await;
    let credential = AppCredential {
        tenant_id: "fabrikam.onmicrosoft.com".into(),
        ..credential()
    };

    let checks = env
        .doctor(
            &credential,
            &config(FOLDER, AfterImport::None),
            &options(None),
        )
        .await;

    let token = assert_status(&checks, "token", CheckStatus::Fail);
    assert!(
        token.contains("tenant 'fabrikam.onmicrosoft.com' was not found"),
        "{token}"
    );
    assert!(token.contains("AADSTS90002"), "{token}");
    assert!(token.contains("fix: set tenant_id"), "{token}");
    assert_status(&checks, "folder", CheckStatus::Skipped);
    assert!(!is_valid(&checks));
}

#[tokio::test]
async fn a_folder_typo_fails_and_lists_the_folders_that_exist() {
    let env = Env::default(MESSAGES).await;

    let checks = env
        .doctor_leaves_mailbox_unchanged(
            &credential(),
            &config("Inbox/Backup Reprots", move_to_processed()),
            &options(None),
        )
        .await;

    assert_status(&checks, "mailbox", CheckStatus::Pass);
    let folder = assert_status(&checks, "folder", CheckStatus::Fail);
    assert!(folder.contains("'Backup Reprots' not found"), "{folder}");
    assert!(folder.contains("'Backup Reports'"), "{folder}");
    assert!(folder.contains("'Processed'"), "{folder}");
    assert!(
        folder.contains("fix: set folder to one of the folders listed"),
        "{folder}"
    );
    assert_status(&checks, "processed folder", CheckStatus::Pass);
    let permission = assert_status(&checks, "permission", CheckStatus::Skipped);
    assert!(permission.contains("folder"), "{permission}");
    assert_eq!(env.patches(), 0);
    assert!(!is_valid(&checks));
}

#[tokio::test]
async fn a_processed_folder_that_is_missing_or_the_source_itself_fails() {
    let env = Env::default(MESSAGES).await;
    let action = |processed: &str| AfterImport::Move {
        processed_folder: processed.into(),
    };

    let checks = env
        .doctor(
            &credential(),
            &config(FOLDER, action("Inbox/Done")),
            &options(None),
        )
        .await;
    let processed = assert_status(&checks, "processed folder", CheckStatus::Fail);
    assert!(processed.contains("'Done' not found"), "{processed}");
    assert!(
        processed.contains("fix: set processed_folder"),
        "{processed}"
    );

    let checks = env
        .doctor(
            &credential(),
            &config(FOLDER, action("inbox/BACKUP REPORTS")),
            &options(None),
        )
        .await;
    let processed = assert_status(&checks, "processed folder", CheckStatus::Fail);
    assert!(
        processed.contains("is the folder being imported"),
        "{processed}"
    );
    assert!(!is_valid(&checks));
}

#[tokio::test]
async fn mail_read_only_fails_a_writing_action_naming_mail_readwrite_and_changes_nothing() {
    let env = Env::default(MESSAGES).await;
    env.sandbox
        .set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.Read"]);

    let checks = env
        .doctor_leaves_mailbox_unchanged(
            &credential(),
            &config(FOLDER, move_to_processed()),
            &options(None),
        )
        .await;

    assert_status(&checks, "mailbox", CheckStatus::Pass);
    assert_status(&checks, "folder", CheckStatus::Pass);
    let permission = assert_status(&checks, "permission", CheckStatus::Fail);
    assert!(
        permission.contains("the action `move` needs Mail.ReadWrite"),
        "{permission}"
    );
    assert!(permission.contains("403"), "{permission}");
    assert!(
        permission.contains("fix: grant the app the application permission Mail.ReadWrite")
            && permission.contains("admin consent"),
        "{permission}"
    );
    assert!(!is_valid(&checks));

    // A read-only archive needs nothing more, and the doctor does not write to prove it.
    let patches = env.patches();
    let checks = env
        .doctor_leaves_mailbox_unchanged(
            &credential(),
            &config(FOLDER, AfterImport::None),
            &options(None),
        )
        .await;
    let permission = assert_status(&checks, "permission", CheckStatus::Pass);
    assert!(permission.contains("Mail.Read is enough"), "{permission}");
    assert_eq!(env.patches(), patches);
    assert!(is_valid(&checks));
}

#[tokio::test]
async fn an_empty_folder_cannot_prove_the_write_permission() {
    let env = Env::default(0).await;

    let checks = env
        .doctor(
            &credential(),
            &config(FOLDER, AfterImport::Delete),
            &options(None),
        )
        .await;

    assert_status(&checks, "folder", CheckStatus::Pass);
    assert!(check(&checks, "folder").detail.contains("(0 messages)"));
    let permission = assert_status(&checks, "permission", CheckStatus::Warn);
    assert!(
        permission.contains("cannot prove Mail.ReadWrite"),
        "{permission}"
    );
    assert!(permission.contains("must hold a message"), "{permission}");
    assert!(is_valid(&checks), "a warning does not invalidate");
}

#[tokio::test]
async fn an_unscoped_app_is_a_loud_access_scope_warning() {
    let env = Env::default(MESSAGES).await;
    let config = config(FOLDER, move_to_processed());

    let checks = env
        .doctor(&credential(), &config, &options(Some(CEO)))
        .await;
    let scope = assert_status(&checks, "access scope", CheckStatus::Warn);
    assert!(
        scope.contains(&format!(
            "the app can read {CEO}, a mailbox it was not configured for"
        )),
        "{scope}"
    );
    assert!(
        scope.contains("cover every mailbox unless restricted"),
        "{scope}"
    );
    for cmdlet in [
        "New-ManagementScope",
        "New-ManagementRoleAssignment",
        "\"Application Mail.ReadWrite\"",
        "New-ApplicationAccessPolicy",
    ] {
        assert!(scope.contains(cmdlet), "{cmdlet} missing: {scope}");
    }
    assert!(is_valid(&checks));

    let checks = env.doctor(&credential(), &config, &options(None)).await;
    let scope = assert_status(&checks, "access scope", CheckStatus::Warn);
    assert!(scope.contains("not verified: set scope_probe"), "{scope}");
    assert!(scope.contains("New-ManagementRoleAssignment"), "{scope}");
}

#[tokio::test]
async fn a_configured_mailbox_outside_the_app_scope_fails_the_mailbox() {
    let env = Env::default(MESSAGES).await;
    env.sandbox.set_app_scope(DEFAULT_CLIENT_ID, Some(&[CEO]));

    let checks = env
        .doctor(
            &credential(),
            &config(FOLDER, move_to_processed()),
            &options(None),
        )
        .await;

    let mailbox = assert_status(&checks, "mailbox", CheckStatus::Fail);
    assert!(
        mailbox.contains("outside the app's access scope"),
        "{mailbox}"
    );
    assert!(
        mailbox.contains(&format!("fix: add {MAILBOX} to the app's access scope")),
        "{mailbox}"
    );
    for name in ["folder", "processed folder", "permission"] {
        assert_status(&checks, name, CheckStatus::Skipped);
    }
    assert!(!is_valid(&checks));
}

#[tokio::test]
async fn a_mailbox_that_does_not_exist_fails_the_mailbox() {
    let env = Env::default(MESSAGES).await;
    let config = MailboxConfig {
        address: MailboxAddress::parse("reprots@contoso.com").unwrap(),
        ..config(FOLDER, AfterImport::None)
    };

    let checks = env.doctor(&credential(), &config, &options(None)).await;

    let mailbox = assert_status(&checks, "mailbox", CheckStatus::Fail);
    assert!(
        mailbox.contains("reprots@contoso.com was not found"),
        "{mailbox}"
    );
    assert!(mailbox.contains("fix: check the address"), "{mailbox}");
}

#[tokio::test]
async fn a_recorded_expiry_warns_within_the_window_and_fails_once_past() {
    let env = Env::default(MESSAGES).await;
    let now = OffsetDateTime::now_utc();
    let options = DoctorOptions {
        now,
        ..options(None)
    };
    let config = config(FOLDER, AfterImport::None);
    let expiring = |days: i64| AppCredential {
        expires_at: Some(now + time::Duration::days(days)),
        ..credential()
    };

    let checks = env.doctor(&expiring(10), &config, &options).await;
    let expiry = assert_status(&checks, "secret expiry", CheckStatus::Warn);
    assert!(
        expiry.contains("in 10 days") && expiry.contains("fix: rotate it"),
        "{expiry}"
    );
    assert!(is_valid(&checks));

    // The sandbox's secret is still valid: only the recorded date says otherwise.
    let checks = env.doctor(&expiring(-2), &config, &options).await;
    assert_status(&checks, "token", CheckStatus::Pass);
    let expiry = assert_status(&checks, "secret expiry", CheckStatus::Fail);
    assert!(expiry.contains("2 days ago"), "{expiry}");
    assert!(!is_valid(&checks));

    let unknown = AppCredential {
        expires_at: None,
        ..credential()
    };
    let checks = env.doctor(&unknown, &config, &options).await;
    let expiry = assert_status(&checks, "secret expiry", CheckStatus::Warn);
    assert!(expiry.contains("expiry unknown"), "{expiry}");
    assert!(expiry.contains("Certificates & secrets"), "{expiry}");
}

#[tokio::test]
async fn a_secret_pasted_into_another_field_never_reaches_the_report() {
    let env = Env::default(MESSAGES).await;
    // The classic slip: the secret's value in client_id, which every token error echoes.
    let credential = AppCredential {
        client_id: DEFAULT_SECRET.into(),
        ..credential()
    };

    // `doctor` asserts the report holds no secret, Debug included.
    let checks = env
        .doctor(
            &credential,
            &config(FOLDER, move_to_processed()),
            &options(Some(CEO)),
        )
        .await;

    let token = assert_status(&checks, "token", CheckStatus::Fail);
    assert!(token.contains("[REDACTED]"), "{token}");
    assert!(!is_valid(&checks));
}

#[tokio::test]
async fn with_application_permissions_the_expiry_comes_from_the_app_registration_and_rotation_is_possible()
 {
    let env = Env::default(MESSAGES).await;
    env.sandbox.set_app_permissions(
        DEFAULT_CLIENT_ID,
        &["Mail.ReadWrite", "Application.ReadWrite.OwnedBy"],
    );
    let registered = (OffsetDateTime::now_utc() + time::Duration::days(12))
        .replace_nanosecond(0)
        .unwrap();
    env.sandbox
        .set_password_expiry(DEFAULT_CLIENT_ID, DEFAULT_SECRET_ID, registered);
    // The credential records a stale expiry (300 days) and its key id.
    let credential = AppCredential {
        key_id: Some(DEFAULT_SECRET_ID.to_owned()),
        ..credential()
    };

    let checks = env
        .doctor(
            &credential,
            &config(FOLDER, move_to_processed()),
            &options(None),
        )
        .await;
    print_report(&checks);
    let expiry = check(&checks, "secret expiry");
    assert_eq!(expiry.status, CheckStatus::Warn, "{expiry}");
    assert!(expiry.detail.contains("in 12 days"), "{expiry}");
    assert!(
        expiry.detail.ends_with("(from the app registration)"),
        "{expiry}"
    );
    let rotation = check(&checks, "rotation");
    assert_eq!(rotation.status, CheckStatus::Pass);
    assert!(rotation.detail.starts_with("not refused"), "{rotation}");
    assert!(rotation.detail.contains("rotate-secret"), "{rotation}");
    assert_no_secret(&checks);
}

/// A delegated credential (a person signed in, docs/delegated.md): the token check redeems the
/// sign-in and names who signed in, the mailbox checks read with that person's token, a sign-in
/// check tells the last refresh against the inactivity window, and the checks meant for
/// application permissions (the access scope, a public client's secret expiry, rotation) do not
/// pretend to apply. The sign-in is kept where local mode keeps it (`LocalSignIns`).
#[tokio::test]
async fn a_delegated_credential_names_who_signed_in_and_drops_the_app_only_checks() {
    use std::sync::Arc;

    use mailroom::adapters::local::LocalSignIns;
    use mailroom::ports::SignInStore;
    use secrecy::ExposeSecret;

    let env = Env::default(MESSAGES).await;
    let dir = tempfile::tempdir().unwrap();
    let sign_ins = Arc::new(LocalSignIns::new(dir.path()));
    let scopes = ["Mail.ReadWrite", "offline_access"];
    let mut signed_in = mailroom_tests::delegated::sign_in(&env.sandbox, MAILBOX, &scopes).await;
    signed_in.refreshed_at = OffsetDateTime::now_utc() - time::Duration::days(10);
    SignInStore::save(&*sign_ins, "alice", &signed_in)
        .await
        .unwrap();
    let json = mailroom_tests::delegated::public_client_json(&scopes);
    let credential = AppCredential::from_stored("alice", &json, sign_ins.clone()).unwrap();
    let config = MailboxConfig {
        credential: "alice".into(),
        ..config(FOLDER, move_to_processed())
    };
    let assert_no_token = |checks: &[Check], stored: &str| {
        for c in checks {
            let text = format!("{c} {c:?}");
            assert!(
                !text.contains(signed_in.refresh_token.expose_secret()) && !text.contains(stored),
                "a refresh token in: {text}"
            );
        }
    };

    let checks = env
        .doctor_leaves_mailbox_unchanged(&credential, &config, &options(Some(CEO)))
        .await;
    assert_eq!(
        names(&checks),
        [
            "token",
            "mailbox",
            "folder",
            "processed folder",
            "permission",
            "access scope",
            "sign-in"
        ]
    );
    assert!(is_valid(&checks), "{checks:#?}");
    let token = assert_status(&checks, "token", CheckStatus::Pass);
    assert!(
        token.contains(&format!(
            "signed in as {MAILBOX}: Entra ID issued a delegated token"
        )) && token.contains("scopes granted: Mail.ReadWrite"),
        "{token}"
    );
    assert_status(&checks, "permission", CheckStatus::Pass);
    let scope = assert_status(&checks, "access scope", CheckStatus::Pass);
    assert!(scope.contains("not applicable"), "{scope}");
    let sign_in = assert_status(&checks, "sign-in", CheckStatus::Pass);
    assert!(
        sign_in.contains("last refreshed 10 days before this check")
            && sign_in.contains("lapses after 90 days without a refresh"),
        "{sign_in}"
    );
    let stored = SignInStore::load(&*sign_ins, "alice")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        stored.refresh_token.expose_secret(),
        signed_in.refresh_token.expose_secret(),
        "the doctor did not redeem the sign-in"
    );
    let stored = stored.refresh_token.expose_secret().to_owned();
    assert_no_token(&checks, &stored);

    // A mailbox not shared with the user.
    let ceo = MailboxConfig {
        address: MailboxAddress::parse(CEO).unwrap(),
        folder: "Inbox".into(),
        action: AfterImport::None,
        ..config.clone()
    };
    let checks = env.doctor(&credential, &ceo, &options(None)).await;
    let mailbox = check(&checks, "mailbox");
    assert_eq!(mailbox.status, CheckStatus::Fail, "{mailbox}");
    assert!(
        mailbox.detail.contains(CEO)
            && mailbox
                .detail
                .contains("the user signed in for credential 'alice' may not"),
        "{mailbox}"
    );
    let fix = mailbox.fix.clone().unwrap_or_default();
    assert!(
        fix.contains("Full Access") && fix.contains("mailroom credentials login alice"),
        "{fix}"
    );

    // The sign-in revoked: the token check fails with the reason, who and what to run.
    assert!(env.sandbox.revoke_refresh_tokens(MAILBOX));
    let checks = env.doctor(&credential, &config, &options(None)).await;
    assert!(!is_valid(&checks));
    let token = check(&checks, "token");
    assert_eq!(token.status, CheckStatus::Fail, "{token}");
    assert!(
        token.detail.contains("AADSTS50173")
            && token.detail.contains("mailroom credentials login alice")
            && token
                .detail
                .contains(&format!("(signed in as {MAILBOX} on ")),
        "{token}"
    );
    assert!(
        token
            .fix
            .as_deref()
            .is_some_and(|f| f.starts_with("sign in again: mailroom credentials login alice")),
        "{token}"
    );
    assert_status(&checks, "mailbox", CheckStatus::Skipped);
    assert_status(&checks, "sign-in", CheckStatus::Skipped);
    assert!(!names(&checks).contains(&"secret expiry"), "{checks:#?}");
    assert_no_token(&checks, &stored);
}
