//! Discovery end to end (shared/src/engine/discover.rs): `[[discover]]` rules kept in DynamoDB
//! on moto, the directory read from the sandbox over HTTP, the mailboxes found imported by the
//! same engine, each message once. Users come and go between runs; what was stored stays.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use graph_sandbox::{DEFAULT_CLIENT_ID, DEFAULT_TENANT, Group, Mailbox, World};
use mailroom::clock::Clock;
use mailroom::discovery::{DiscoverRule, Members};
use mailroom::domain::{AfterImport, MailboxConfig};
use mailroom::engine::{Engine, RuleError};
use mailroom::graph::GraphError;
use mailroom::ports::{DiscoverRules, Leases, MailboxConfigs};
use mailroom_tests::stack::Stack;

const USERS: usize = 12;
const MESSAGES: usize = 3;
const FINANCE: &str = "22222222-0000-0000-0000-000000000001";
const DAY: Duration = Duration::from_secs(24 * 3600);
const TIME_DAY: time::Duration = time::Duration::days(1);

fn user(i: usize) -> String {
    format!("user{i:02}@contoso.com")
}

fn world() -> World {
    let mut world = World::default_test();
    for i in 0..USERS {
        world = world.mailbox(
            DEFAULT_TENANT,
            Mailbox::new(&user(i)).messages("Inbox", MESSAGES),
        );
    }
    world
        .mailbox(DEFAULT_TENANT, Mailbox::new("it-admin@contoso.com"))
        .mailbox(
            DEFAULT_TENANT,
            Mailbox::new("info@contoso.com")
                .shared()
                .messages("Inbox", 2),
        )
        .group(
            DEFAULT_TENANT,
            Group::new(FINANCE, "Finance")
                .member(&user(0))
                .member(&user(1)),
        )
}

async fn stack() -> Stack {
    let stack = Stack::start(world()).await;
    stack.sandbox.set_app_permissions(
        DEFAULT_CLIENT_ID,
        &["Mail.ReadWrite", "User.Read.All", "GroupMember.Read.All"],
    );
    stack
}

fn every_user(stack: &Stack) -> DiscoverRule {
    DiscoverRule {
        credential: stack.credential.clone(),
        members: Members::All,
        exclude: vec!["*-admin@contoso.com".into()],
        shared_mailboxes: false,
        folder: "Inbox".into(),
        action: AfterImport::None,
    }
}

async fn discovered(stack: &Stack, rule: &DiscoverRule) -> Vec<MailboxConfig> {
    stack
        .state
        .list_mailboxes()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.discovered_by.as_deref() == Some(rule.id().as_str()))
        .collect()
}

fn addresses(configs: &[MailboxConfig], enabled: bool) -> Vec<String> {
    configs
        .iter()
        .filter(|c| c.enabled == enabled)
        .map(|c| c.address.to_string())
        .collect()
}

async fn discover(engine: &Engine) -> mailroom::engine::DiscoveryReport {
    engine.discover(false).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_discovered_imported_once_and_disabled_when_gone_keeping_their_mail() {
    let stack = stack().await;
    let rule = every_user(&stack);
    stack.state.put_discover_rule(&rule).await.unwrap();
    let engine = stack.engine();

    // A dry run says what would change and changes nothing.
    let dry = engine.discover(true).await.unwrap();
    let changes = dry.rules[0].outcome.as_ref().unwrap();
    assert_eq!(changes.plan.add.len(), USERS);
    assert_eq!(
        changes.selection.skipped.len(),
        2,
        "the admin and the shared mailbox"
    );
    assert!(discovered(&stack, &rule).await.is_empty());
    assert_eq!(
        stack.state.last_discovery_run(&rule.id()).await.unwrap(),
        None
    );

    let report = discover(&engine).await;
    assert_eq!(report.failed(), 0);
    let expected: Vec<String> = (0..USERS).map(user).collect();
    assert_eq!(addresses(&discovered(&stack, &rule).await, true), expected);
    let run = stack
        .state
        .last_discovery_run(&rule.id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((run.archived, run.added, run.skipped), (USERS, USERS, 2));

    let imported = stack.run().await;
    assert_eq!(imported.imported(), (USERS * MESSAGES) as u64);
    let held = |stack: &Stack| -> Vec<(String, Vec<graph_sandbox::MessageInfo>)> {
        (0..USERS)
            .map(user)
            .chain(["newcomer@contoso.com".to_owned()])
            .map(|u| {
                let messages = stack.sandbox.folder_messages(&u, "Inbox");
                (u, messages)
            })
            .collect()
    };
    let check = async |stack: &Stack| {
        let held = held(stack);
        let held: Vec<(&str, Vec<_>)> = held.iter().map(|(u, m)| (u.as_str(), m.clone())).collect();
        stack.assert_each_stored_exactly_once(&held).await;
    };
    check(&stack).await;

    // Between runs one user leaves and one joins.
    assert!(stack.sandbox.delete_user(&user(3)));
    stack.sandbox.add_folder("newcomer@contoso.com", "Inbox");
    let newcomer = stack.sandbox.add_message(
        "newcomer@contoso.com",
        "Inbox",
        graph_sandbox::NewMessage::new("Welcome"),
    );
    let report = discover(&engine).await;
    let plan = &report.rules[0].outcome.as_ref().unwrap().plan;
    assert_eq!(addresses(&plan.add, true), ["newcomer@contoso.com"]);
    assert_eq!(addresses(&plan.disable, false), [user(3)]);
    assert_eq!(plan.unchanged, USERS - 1);

    let second = stack.run().await;
    assert_eq!(second.imported(), 1, "only the newcomer's message");
    assert_eq!(
        stack.records("newcomer@contoso.com").await[0]
            .message_id
            .as_str(),
        newcomer.immutable_id
    );
    // Everyone's mail once, the user who left included: what was stored stays.
    check(&stack).await;

    // Applying the same directory again changes nothing.
    let again = discover(&engine).await;
    assert!(again.rules[0].outcome.as_ref().unwrap().plan.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_runs_again_only_when_due_and_a_gone_rule_disables_its_mailboxes() {
    let stack = stack().await;
    let all = every_user(&stack);
    let finance = DiscoverRule {
        members: Members::Group("Finance".into()),
        ..every_user(&stack)
    };
    stack.state.put_discover_rule(&all).await.unwrap();
    stack.state.put_discover_rule(&finance).await.unwrap();
    let engine = stack.engine();

    let first = engine.discover_due(DAY).await.unwrap();
    assert_eq!(first.rules.len(), 2, "neither rule ran before");
    // Both rules cover user00 and user01 with the same folder: the first rule (by id) owns them.
    let finance_report = first
        .rules
        .iter()
        .find(|r| r.rule == finance)
        .unwrap()
        .outcome
        .as_ref()
        .unwrap();
    assert_eq!(finance_report.configured_otherwise.len(), 2);
    assert_eq!(
        stack.state.list_mailboxes().await.unwrap().len(),
        USERS,
        "each mailbox folder once"
    );

    let soon = engine.discover_due(DAY).await.unwrap();
    assert!(soon.rules.is_empty(), "not due within a day");
    stack.clock.advance(TIME_DAY);
    let next_day = engine.discover_due(DAY).await.unwrap();
    assert_eq!(next_day.rules.len(), 2, "due again a day later");

    // The rule is removed: its mailboxes are disabled, their configuration and mail kept.
    stack.state.remove_discover_rule(&all.id()).await.unwrap();
    let report = engine.discover_due(DAY).await.unwrap();
    assert_eq!(report.orphaned.len(), USERS);
    let kept = discovered(&stack, &all).await;
    assert_eq!(addresses(&kept, false).len(), USERS);
    assert!(addresses(&kept, true).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_that_cannot_be_applied_changes_nothing_and_says_what_to_grant() {
    let stack = stack().await;
    stack
        .sandbox
        .set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.ReadWrite"]);
    let rule = every_user(&stack);
    let missing_group = DiscoverRule {
        members: Members::Group("No Such Group".into()),
        ..every_user(&stack)
    };
    stack.state.put_discover_rule(&rule).await.unwrap();
    stack.state.put_discover_rule(&missing_group).await.unwrap();
    let engine = stack.engine();

    let report = discover(&engine).await;
    assert_eq!(report.failed(), 2, "each rule fails on its own");
    let error = report.rules.iter().find(|r| r.rule == rule).unwrap();
    let Err(RuleError::Graph(e)) = &error.outcome else {
        panic!("expected a Graph error, got {:?}", error.outcome);
    };
    assert!(e.to_string().contains("User.Read.All"), "{e}");
    let run = stack
        .state
        .last_discovery_run(&rule.id())
        .await
        .unwrap()
        .unwrap();
    assert!(run.error.unwrap().contains("User.Read.All"));
    assert!(stack.state.list_mailboxes().await.unwrap().is_empty());

    stack.sandbox.set_app_permissions(
        DEFAULT_CLIENT_ID,
        &["Mail.ReadWrite", "User.Read.All", "GroupMember.Read.All"],
    );
    let report = discover(&engine).await;
    let group = report
        .rules
        .iter()
        .find(|r| r.rule == missing_group)
        .unwrap();
    let Err(RuleError::Graph(mailroom::engine::ImportError::Graph(GraphError::GroupNotFound {
        ..
    }))) = &group.outcome
    else {
        panic!("expected GroupNotFound, got {:?}", group.outcome);
    };
    assert_eq!(report.failed(), 1, "the other rule now applies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_runner_discovers_at_a_time() {
    let stack = stack().await;
    stack
        .state
        .put_discover_rule(&every_user(&stack))
        .await
        .unwrap();
    let now = stack.clock.now();
    stack
        .state
        .acquire_lease(
            "discovery",
            "another-runner",
            now,
            now + time::Duration::minutes(5),
        )
        .await
        .unwrap();
    let report = discover(&stack.engine()).await;
    assert!(report.busy.as_deref().unwrap().contains("another-runner"));
    assert!(report.rules.is_empty());
    assert!(stack.state.list_mailboxes().await.unwrap().is_empty());
    stack.clock.advance(time::Duration::minutes(6));
    assert_eq!(
        discover(&stack.engine()).await.failed(),
        0,
        "the lease expired"
    );
    assert_eq!(stack.state.list_mailboxes().await.unwrap().len(), USERS);
}

// ---- folder = "*" -------------------------------------------------------------------------------

const ARCHIVIST: &str = "archivist@contoso.com";

/// Stops the run before the nth `step`, as a crash would.
struct CrashAt {
    step: mailroom::engine::Step,
    nth: usize,
    seen: std::sync::atomic::AtomicUsize,
}

impl mailroom::engine::ImportObserver for CrashAt {
    fn before(
        &self,
        step: mailroom::engine::Step,
        _key: &mailroom::domain::FolderKey,
        _id: Option<&mailroom::domain::MessageId>,
    ) -> Result<(), mailroom::engine::Interrupted> {
        use std::sync::atomic::Ordering;
        if step == self.step && self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.nth {
            return Err(mailroom::engine::Interrupted(step));
        }
        Ok(())
    }
}

fn archive_world() -> World {
    World::default_test().mailbox(
        DEFAULT_TENANT,
        Mailbox::new(ARCHIVIST)
            .messages("Inbox", 3)
            .messages("Inbox/Projects", 2)
            .messages("Archive 2025", 2)
            .messages("Deleted Items", 2)
            .messages("Junk Email", 1),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_folder_is_archived_and_followed_through_renames_moves_and_crashes() {
    let stack = Stack::start(archive_world()).await;
    stack
        .sandbox
        .add_search_folder(ARCHIVIST, "Inbox", "Unread mail");
    stack
        .sandbox
        .set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.Read", "User.Read.All"]);
    let rule = DiscoverRule {
        folder: "*".into(),
        exclude: Vec::new(),
        ..every_user(&stack)
    };
    stack.state.put_discover_rule(&rule).await.unwrap();
    discover(&stack.engine()).await;

    let first = stack.run().await;
    let folders: Vec<&str> = first.mailboxes[0]
        .folders
        .iter()
        .map(|f| f.folder.as_str())
        .collect();
    assert_eq!(
        folders,
        [
            "Archive",
            "Archive 2025",
            "Conversation History",
            "Drafts",
            "Inbox",
            "Inbox/Projects",
            "Outbox",
            "Sent Items"
        ],
        "every folder but Deleted Items, Junk Email and the search folder"
    );
    assert_eq!(first.imported(), 7);
    stack
        .assert_stored_exactly_once(ARCHIVIST, &stack.every_folder_messages(ARCHIVIST))
        .await;

    // Renamed and moved: the folder keeps its cursor (only the new message is read), and a new
    // folder is picked up.
    assert!(stack.sandbox.rename_folder(
        ARCHIVIST,
        "Inbox/Projects",
        "Projects 2026",
        Some("Archive 2025")
    ));
    stack.sandbox.add_message(
        ARCHIVIST,
        "Archive 2025/Projects 2026",
        graph_sandbox::NewMessage::new("Kick-off notes"),
    );
    stack.sandbox.add_message(
        ARCHIVIST,
        "Clients",
        graph_sandbox::NewMessage::new("Contract"),
    );
    let second = stack.run().await;
    let moved = second.mailboxes[0]
        .folders
        .iter()
        .find(|f| f.folder == "Archive 2025/Projects 2026")
        .unwrap_or_else(|| panic!("{second:#?}"));
    assert_eq!((moved.imported, moved.already_stored), (1, 0), "{moved:#?}");
    assert_eq!(second.imported(), 2);

    // A crash between storing and finishing, then the folder renamed: the next run finishes the
    // record all the same.
    stack.sandbox.add_message(
        ARCHIVIST,
        "Clients",
        graph_sandbox::NewMessage::new("Invoice"),
    );
    let crash = std::sync::Arc::new(CrashAt {
        step: mailroom::engine::Step::MarkDone,
        nth: 1,
        seen: Default::default(),
    });
    stack
        .run_with(stack.engine_with(crash, mailroom::engine::EngineOptions::default()))
        .await;
    stack.clock.advance(time::Duration::hours(1));
    assert!(
        stack
            .sandbox
            .rename_folder(ARCHIVIST, "Clients", "Customers", None)
    );
    stack.run().await;
    stack
        .assert_stored_exactly_once(ARCHIVIST, &stack.every_folder_messages(ARCHIVIST))
        .await;
}
