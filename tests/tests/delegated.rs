//! Importing with a delegated credential (docs/delegated.md): the real engine and Graph client
//! against the sandbox's Entra and delegated Graph, the credential and its sign-in in a Secrets
//! Manager secret on moto. The person's sign-in is played through the real sign-in client.
//!
//! What is proved: every action on the user's own mailbox and on a mailbox shared with them; a
//! mailbox not shared with them named as such; each way a sign-in dies says "sign in again" and
//! marks only that mailbox; two runners refreshing at once; a crash between receiving a new
//! refresh token and storing it; no refresh token in any report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use graph_sandbox::{DEFAULT_TENANT, Interaction, Mailbox, MessageInfo, World};
use mailroom::clock::Clock;
use mailroom::credentials::SignedIn;
use mailroom::domain::{AfterImport, MailboxAddress, MailboxConfig};
use mailroom::engine::{EngineOptions, MailboxStatus, NoObserver, RunReport};
use mailroom::ports::{MailboxConfigs, RunLog, SecretError, SignInStore, Subscriptions};
use mailroom_tests::delegated::sign_in;
use mailroom_tests::stack::Stack;
use secrecy::ExposeSecret;

const ALICE: &str = "alice@contoso.com";
const SHARED: &str = "reports@contoso.com";
const BOB: &str = "bob@contoso.com";
const SCOPES: [&str; 3] = ["Mail.ReadWrite", "Mail.ReadWrite.Shared", "offline_access"];

/// Alice's mailbox with one folder per action, a mailbox shared with her, and Bob's, which is
/// not.
fn world() -> World {
    let with_actions = |mailbox: Mailbox| {
        mailbox
            .folder("Inbox/Move")
            .folder("Inbox/Processed")
            .folder("Inbox/MarkRead")
            .folder("Inbox/Delete")
            .folder("Inbox/Archive")
            .messages("Inbox/Move", 6)
            .messages("Inbox/MarkRead", 5)
            .messages("Inbox/Delete", 4)
            .messages("Inbox/Archive", 3)
    };
    World::default_test()
        .mailbox(DEFAULT_TENANT, with_actions(Mailbox::new(ALICE)))
        .mailbox(
            DEFAULT_TENANT,
            with_actions(Mailbox::new(SHARED)).shared_with(ALICE),
        )
        .mailbox(
            DEFAULT_TENANT,
            Mailbox::new(BOB)
                .folder("Inbox/Move")
                .messages("Inbox/Move", 2),
        )
}

fn actions() -> [(&'static str, AfterImport); 4] {
    [
        (
            "Inbox/Move",
            AfterImport::Move {
                processed_folder: "Inbox/Processed".into(),
            },
        ),
        ("Inbox/MarkRead", AfterImport::MarkRead),
        ("Inbox/Delete", AfterImport::Delete),
        ("Inbox/Archive", AfterImport::None),
    ]
}

async fn configure(
    stack: &Stack,
    address: &str,
    folder: &str,
    action: AfterImport,
    credential: &str,
) {
    let config = MailboxConfig {
        address: MailboxAddress::parse(address).unwrap(),
        folder: folder.to_owned(),
        action,
        credential: credential.to_owned(),
        enabled: true,
        discovered_by: None,
    };
    stack.state.put_mailbox(&config).await.unwrap();
}

/// Each folder of [`actions`] in `address`, with its action.
async fn configure_actions(stack: &Stack, address: &str, credential: &str) {
    for (folder, action) in actions() {
        configure(stack, address, folder, action, credential).await;
    }
}

/// The delegated credential's secret: one per stack, as tests share moto.
fn credential_of(stack: &Stack) -> String {
    format!("{}-alice", stack.credential)
}

/// The stack with Alice signed in for the delegated credential.
async fn signed_in_stack() -> (Stack, SignedIn, String) {
    let stack = Stack::start(world()).await;
    let signed_in = sign_in(&stack.sandbox, ALICE, &SCOPES).await;
    let credential = credential_of(&stack);
    stack.put_delegated(&credential, &SCOPES, &signed_in).await;
    (stack, signed_in, credential)
}

fn messages_of(stack: &Stack, mailbox: &str) -> Vec<MessageInfo> {
    actions()
        .iter()
        .flat_map(|(folder, _)| stack.sandbox.folder_messages(mailbox, folder))
        .collect()
}

fn mailbox<'a>(report: &'a RunReport, address: &str) -> &'a mailroom::engine::MailboxReport {
    report
        .mailboxes
        .iter()
        .find(|m| m.mailbox.as_str() == address)
        .unwrap_or_else(|| panic!("no {address} in {report:#?}"))
}

fn errors(report: &RunReport, address: &str) -> String {
    let mailbox = mailbox(report, address);
    mailbox
        .folders
        .iter()
        .filter_map(|f| f.error.clone())
        .chain(mailbox.error.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

/// After a run: each action done on the folder, and each message stored once.
fn assert_actions_done(stack: &Stack, mailbox: &str) {
    let left = |folder: &str| stack.sandbox.folder_messages(mailbox, folder);
    assert!(left("Inbox/Move").is_empty());
    assert_eq!(left("Inbox/Processed").len(), 6);
    assert!(left("Inbox/MarkRead").iter().all(|m| m.is_read));
    assert_eq!(left("Inbox/MarkRead").len(), 5);
    assert!(left("Inbox/Delete").is_empty());
    assert_eq!(left("Inbox/Archive").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegated_credential_imports_the_users_own_and_a_shared_mailbox_in_each_action() {
    let (stack, signed_in, credential) = signed_in_stack().await;
    let own = messages_of(&stack, ALICE);
    let shared = messages_of(&stack, SHARED);
    for address in [ALICE, SHARED] {
        configure_actions(&stack, address, &credential).await;
    }
    let report = stack.run().await;
    for address in [ALICE, SHARED] {
        assert_eq!(
            mailbox(&report, address).status,
            MailboxStatus::Ok,
            "{report:#?}"
        );
        assert_eq!(mailbox(&report, address).imported(), 18, "{report:#?}");
        assert_actions_done(&stack, address);
    }
    stack
        .assert_each_stored_exactly_once(&[(ALICE, own.clone()), (SHARED, shared.clone())])
        .await;

    // Every request to Graph carried Alice's delegated token: the sandbox would have refused an
    // app token for a public client, and answered 403 for a mailbox not shared with her.
    let redeemed = stack.sandbox.refresh_redemptions();
    assert!(redeemed >= 1, "the stored refresh token was never redeemed");
    // The new refresh token was stored; the one from the sign-in was replaced.
    let now = stack.stored_sign_in(&credential).await;
    assert_ne!(
        now.refresh_token.expose_secret(),
        signed_in.refresh_token.expose_secret()
    );
    assert!(now.refreshed_at >= signed_in.refreshed_at);
    assert_eq!(now.user.as_deref(), Some(ALICE));
    // No token in the report.
    let shown = format!("{report:?}");
    assert!(!shown.contains(now.refresh_token.expose_secret()));
    assert!(!shown.contains(signed_in.refresh_token.expose_secret()));

    // Runs again: nothing new, nothing twice.
    let again = stack.run().await;
    assert_eq!(again.imported(), 0, "{again:#?}");
    stack
        .assert_each_stored_exactly_once(&[(ALICE, own), (SHARED, shared)])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_not_shared_with_the_user_is_named_and_the_others_go_on() {
    let (stack, _, credential) = signed_in_stack().await;
    let own = messages_of(&stack, ALICE);
    configure_actions(&stack, ALICE, &credential).await;
    configure(
        &stack,
        BOB,
        "Inbox/Move",
        AfterImport::Move {
            processed_folder: "Inbox".into(),
        },
        &credential,
    )
    .await;
    let report = stack.run().await;
    assert_eq!(
        mailbox(&report, ALICE).status,
        MailboxStatus::Ok,
        "{report:#?}"
    );
    let bob = mailbox(&report, BOB);
    assert_eq!(bob.status, MailboxStatus::Failed, "{report:#?}");
    let error = errors(&report, BOB);
    assert!(
        error.contains(&format!(
            "the user signed in for credential '{credential}' may not"
        )) && error.contains(BOB)
            && error.contains("Full Access")
            && error.contains(&format!("mailroom credentials login {credential}")),
        "{error}"
    );
    stack.assert_stored_exactly_once(ALICE, &own).await;
    assert_eq!(stack.sandbox.folder_messages(BOB, "Inbox/Move").len(), 2);
}

/// Each way a sign-in stops working, and what the run must say about it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_lost_sign_in_says_sign_in_again_and_stops_only_its_mailboxes() {
    type Break = fn(&Stack);
    let cases: [(&str, Break, &str); 7] = [
        (
            "revoked by an administrator",
            |s| assert!(s.sandbox.revoke_refresh_tokens(ALICE)),
            "AADSTS50173",
        ),
        (
            "password changed",
            |s| assert!(s.sandbox.change_password(ALICE)),
            "AADSTS50173",
        ),
        (
            "consent withdrawn",
            |s| {
                assert!(
                    s.sandbox
                        .withdraw_consent(graph_sandbox::DEFAULT_CLIENT_ID, ALICE)
                )
            },
            "AADSTS65001",
        ),
        (
            "multi-factor authentication required",
            |s| assert!(s.sandbox.require_interaction(ALICE, Some(Interaction::Mfa))),
            "AADSTS50076",
        ),
        (
            "sign-in frequency elapsed",
            |s| {
                assert!(
                    s.sandbox
                        .require_interaction(ALICE, Some(Interaction::SignInFrequency))
                )
            },
            "AADSTS70043",
        ),
        (
            "blocked by Conditional Access",
            |s| {
                assert!(
                    s.sandbox
                        .require_interaction(ALICE, Some(Interaction::Blocked))
                )
            },
            "AADSTS53003",
        ),
        (
            "unused past the inactivity window",
            |s| {
                s.sandbox
                    .set_refresh_token_inactivity(Duration::from_secs(3600));
                s.sandbox.advance_clock(Duration::from_secs(2 * 3600));
            },
            "AADSTS700082",
        ),
    ];
    for (case, break_it, code) in cases {
        let (stack, signed_in, credential) = signed_in_stack().await;
        let held = messages_of(&stack, ALICE);
        configure_actions(&stack, ALICE, &credential).await;
        // A mailbox of the app credential, which must not notice.
        configure(
            &stack,
            BOB,
            "Inbox/Move",
            AfterImport::None,
            &stack.credential.clone(),
        )
        .await;
        break_it(&stack);
        let report = stack.run().await;
        let alice = mailbox(&report, ALICE);
        assert_eq!(
            alice.status,
            MailboxStatus::NeedsSignIn,
            "{case}: {report:#?}"
        );
        let error = errors(&report, ALICE);
        assert!(
            error.contains(&format!(
                "credential '{credential}' needs its user to sign in again"
            )) && error.contains(code)
                && error.contains(&format!("run: mailroom credentials login {credential}")),
            "{case}: {error}"
        );
        assert!(!error.contains(signed_in.refresh_token.expose_secret()));
        assert_eq!(mailbox(&report, BOB).status, MailboxStatus::Ok, "{case}");
        assert_eq!(mailbox(&report, BOB).imported(), 2, "{case}");
        // Nothing of Alice's was touched or stored, and the stored sign-in is as it was.
        assert!(stack.records(ALICE).await.is_empty(), "{case}");
        assert_eq!(messages_of(&stack, ALICE).len(), held.len(), "{case}");
        let stored = stack.stored_sign_in(&credential).await;
        assert_eq!(
            stored.refresh_token.expose_secret(),
            signed_in.refresh_token.expose_secret(),
            "{case}"
        );
        let summary = stack
            .state
            .last_run(&MailboxAddress::parse(ALICE).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(summary.status, "needs sign-in", "{case}");

        // Signing in again brings it back (once an administrator lifts a block).
        stack.sandbox.require_interaction(ALICE, None);
        let again = sign_in(&stack.sandbox, ALICE, &SCOPES).await;
        stack.put_delegated(&credential, &SCOPES, &again).await;
        let report = stack.run().await;
        assert_eq!(
            mailbox(&report, ALICE).status,
            MailboxStatus::Ok,
            "{case}: {report:#?}"
        );
        assert_actions_done(&stack, ALICE);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_signed_in_yet_says_how_to_sign_in() {
    let stack = Stack::start(world()).await;
    let credential = credential_of(&stack);
    let json = serde_json::json!({
        "kind": "delegated",
        "tenant_id": DEFAULT_TENANT,
        "client_id": graph_sandbox::DEFAULT_CLIENT_ID,
    })
    .to_string();
    stack.store_secret(&credential, &json).await;
    configure(
        &stack,
        ALICE,
        "Inbox/Archive",
        AfterImport::None,
        &credential,
    )
    .await;
    let report = stack.run().await;
    assert_eq!(report.mailboxes[0].status, MailboxStatus::NeedsSignIn);
    let error = errors(&report, ALICE);
    assert!(
        error.contains("nobody has signed in for it yet")
            && error.contains(&format!("mailroom credentials login {credential}")),
        "{error}"
    );
}

/// Two processes (their own token caches) refresh the same stored sign-in at once: as Entra
/// documents, the older refresh token stays valid, so both succeed and neither locks the
/// credential out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_refreshing_at_once_both_succeed() {
    let (stack, _, credential) = signed_in_stack().await;
    let own = messages_of(&stack, ALICE);
    let shared = messages_of(&stack, SHARED);
    for address in [ALICE, SHARED] {
        configure_actions(&stack, address, &credential).await;
    }
    let budget = stack.clock.now() + mailroom_tests::stack::RUN_BUDGET;
    let (one, two) = (stack.engine(), stack.engine());
    let alice = MailboxAddress::parse(ALICE).unwrap();
    let shared_box = MailboxAddress::parse(SHARED).unwrap();
    let (a, b) = tokio::join!(
        one.run(budget, Some(&alice)),
        two.run(budget, Some(&shared_box))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.mailboxes[0].status, MailboxStatus::Ok, "{a:#?}");
    assert_eq!(b.mailboxes[0].status, MailboxStatus::Ok, "{b:#?}");
    let stats = stack.sandbox.delegated_stats();
    assert_eq!(stats.refresh_redemptions, 2, "{stats:?}");
    stack
        .assert_each_stored_exactly_once(&[(ALICE, own), (SHARED, shared)])
        .await;
    // The stored token is one of the two issued, and works.
    let report = stack.run().await;
    assert!(
        report
            .mailboxes
            .iter()
            .all(|m| m.status == MailboxStatus::Ok)
    );
}

/// A store that hands out the sign-in as it was before another runner refreshed it, once: the
/// interleaving where a runner reads the stored token, another redeems and stores its successor,
/// and the first then redeems the old one.
struct StaleOnce {
    inner: Arc<dyn SignInStore>,
    stale: SignedIn,
    handed: AtomicBool,
}

#[async_trait]
impl SignInStore for StaleOnce {
    async fn load(&self, name: &str) -> Result<Option<SignedIn>, SecretError> {
        if !self.handed.swap(true, Ordering::SeqCst) {
            return Ok(Some(self.stale.clone()));
        }
        self.inner.load(name).await
    }
    async fn save(&self, name: &str, signed_in: &SignedIn) -> Result<(), SecretError> {
        self.inner.save(name, signed_in).await
    }
}

/// Stricter than Entra documents: a redeemed refresh token is refused. The runner that redeemed
/// the older token finds its successor in the store and redeems that instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_refused_an_already_redeemed_token_uses_the_one_stored_meanwhile() {
    let (stack, signed_in, credential) = signed_in_stack().await;
    stack.sandbox.set_refresh_token_reuse(false);
    configure(
        &stack,
        ALICE,
        "Inbox/Archive",
        AfterImport::None,
        &credential,
    )
    .await;
    // Another runner refreshes first and stores its new token.
    assert_eq!(stack.run().await.mailboxes[0].status, MailboxStatus::Ok);
    let stored = stack.stored_sign_in(&credential).await;
    assert_ne!(
        stored.refresh_token.expose_secret(),
        signed_in.refresh_token.expose_secret()
    );
    // This runner read the store before that, and redeems the old token.
    let app = stack
        .engine()
        .credentials
        .refresh(&credential)
        .await
        .unwrap();
    let mut delegation = app.delegated.clone().unwrap();
    delegation.sign_ins = Arc::new(StaleOnce {
        inner: stack.sign_ins(),
        stale: signed_in.clone(),
        handed: AtomicBool::new(false),
    });
    let app = mailroom::credentials::AppCredential {
        delegated: Some(delegation),
        ..app
    };
    let graph = mailroom::graph::GraphClient::new(stack.graph_config()).unwrap();
    graph
        .check_credential(&app)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stack.sandbox.delegated_stats().refresh_token_reuses, 1);
    let after = stack.stored_sign_in(&credential).await;
    assert_ne!(
        after.refresh_token.expose_secret(),
        stored.refresh_token.expose_secret()
    );
}

/// A store whose writes die: the process crashing after Entra answered and before the new
/// refresh token reached the secret.
struct DiesOnSave {
    inner: Arc<dyn SignInStore>,
    saves: AtomicUsize,
}

#[async_trait]
impl SignInStore for DiesOnSave {
    async fn load(&self, name: &str) -> Result<Option<SignedIn>, SecretError> {
        self.inner.load(name).await
    }
    async fn save(&self, name: &str, _: &SignedIn) -> Result<(), SecretError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        Err(SecretError::Unavailable {
            name: name.to_owned(),
            detail: "the process died here".into(),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_receiving_and_storing_a_refresh_token_loses_nothing() {
    let (stack, signed_in, credential) = signed_in_stack().await;
    let held = messages_of(&stack, ALICE);
    configure_actions(&stack, ALICE, &credential).await;
    let dies = Arc::new(DiesOnSave {
        inner: stack.sign_ins(),
        saves: AtomicUsize::new(0),
    });
    let app = stack
        .engine()
        .credentials
        .refresh(&credential)
        .await
        .unwrap();
    let mut delegation = app.delegated.clone().unwrap();
    delegation.sign_ins = dies.clone();
    let dying = mailroom::credentials::AppCredential {
        delegated: Some(delegation),
        ..app
    };
    let graph = mailroom::graph::GraphClient::new(stack.graph_config()).unwrap();
    let before = stack.sandbox.requests().len();
    let error = graph
        .check_credential(&dying)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(dies.saves.load(Ordering::SeqCst), 1);
    assert!(error.contains("could not be stored"), "{error}");
    // Entra answered with new tokens, but the access token was never used.
    assert_eq!(stack.sandbox.delegated_stats().refresh_redemptions, 1);
    assert!(
        stack.sandbox.requests()[before..]
            .iter()
            .all(|r| r.mailbox.is_none()),
        "Graph was called with an access token whose refresh token was not stored"
    );
    // The stored sign-in is the one from before, and it still works: the next run imports all.
    let stored = stack.stored_sign_in(&credential).await;
    assert_eq!(
        stored.refresh_token.expose_secret(),
        signed_in.refresh_token.expose_secret()
    );
    let report = stack
        .run_with(stack.engine_with(Arc::new(NoObserver), EngineOptions::default()))
        .await;
    assert_eq!(report.mailboxes[0].status, MailboxStatus::Ok, "{report:#?}");
    stack.assert_stored_exactly_once(ALICE, &held).await;
    assert_actions_done(&stack, ALICE);
}

/// Push with a delegated credential: the subscription is created with Alice's token (the app
/// is a public client here, so no other token exists), a new message arrives through the
/// webhook and the queue, and `reauthorizationRequired` hours later, when the first access
/// token has lapsed, is answered with a fresh one from the stored sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_subscribes_and_reauthorizes_with_the_delegated_token() {
    let (stack, _, credential) = signed_in_stack().await;
    configure(
        &stack,
        ALICE,
        "Inbox/Move",
        AfterImport::Move {
            processed_folder: "Inbox/Processed".into(),
        },
        &credential,
    )
    .await;
    let rig = mailroom_tests::push::PushRig::start(stack).await;
    let report = rig.maintain().await;
    assert_eq!(report.created, 1, "{report:?}");
    assert!(report.errors.is_empty(), "{report:?}");
    let subscriptions = rig.stack.sandbox.subscriptions();
    assert_eq!(subscriptions.len(), 1);
    assert_eq!(subscriptions[0].mailbox, ALICE);

    let new = rig.stack.sandbox.add_message(
        ALICE,
        "Inbox/Move",
        graph_sandbox::NewMessage::new("Signed contract"),
    );
    let wait = Duration::from_secs(15);
    rig.wait_for_records(ALICE, std::slice::from_ref(&new.immutable_id), wait)
        .await;

    // Three hours on: the access token from the first redemption has expired.
    let redeemed = rig.stack.sandbox.refresh_redemptions();
    let before = rig.stack.state.list_subscriptions().await.unwrap()[0].clone();
    rig.stack.clock.advance(time::Duration::hours(3));
    rig.stack
        .sandbox
        .advance_clock(Duration::from_secs(3 * 3600));
    assert!(rig.stack.sandbox.lifecycle(
        &before.id,
        graph_sandbox::LifecycleEvent::ReauthorizationRequired
    ));
    rig.wait_for_renewal(&before, wait).await;
    assert!(
        rig.stack.sandbox.refresh_redemptions() > redeemed,
        "the renewal did not use a fresh delegated token"
    );
    assert!(
        !rig.stack.sandbox.subscriptions()[0].reauthorization_required,
        "the sandbox still waits for reauthorization"
    );
}
