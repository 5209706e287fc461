//! Runners meeting on one mailbox: a scheduled run, push jobs on three queue consumers and a
//! manual `mailroom --backend aws import` (the binary) at once, while mail arrives; and eight
//! runners racing for one mailbox's lease. Each message is stored once, none is lost, and every
//! runner finishes (no deadlock). A lease holder that dies mid-message is
//! tests/tests/import.rs (`crash_then_rerun`): the next runner waits for its lease to expire,
//! then finishes the work.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use graph_sandbox::{DEFAULT_TENANT, Mailbox, MessageInfo, NewMessage, World};
use mailroom::domain::AfterImport;
use mailroom::engine::{EngineOptions, MailboxStatus, NoObserver};
use mailroom_tests::push::PushRig;
use mailroom_tests::stack::Stack;

const MAILBOX: &str = "reports@contoso.com";
const FOLDER: &str = "Inbox/Backup Reports";
const PROCESSED: &str = "Inbox/Processed";

fn world(n: usize) -> World {
    World::default_test().mailbox(
        DEFAULT_TENANT,
        Mailbox::new(MAILBOX)
            .folder(FOLDER)
            .folder(PROCESSED)
            .messages(FOLDER, n),
    )
}

fn move_to_processed() -> AfterImport {
    AfterImport::Move {
        processed_folder: PROCESSED.into(),
    }
}

/// `mailroom --backend aws import --mailbox MAILBOX` against the stack, as an operator's "Import now".
async fn manual_import(stack: &Stack) -> std::process::Output {
    let mut command = common::deployment(stack);
    command
        .args(["import", "--mailbox", MAILBOX])
        .env("MAILROOM_EVENT_BUS", "none");
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_run_push_jobs_and_a_manual_import_at_once_store_each_message_once() {
    let stack = Stack::start(world(60)).await;
    stack.configure(MAILBOX, FOLDER, move_to_processed()).await;
    let mut rig = PushRig::start(stack).await;
    rig.add_consumers(2);
    assert_eq!(rig.maintain().await.created, 1);

    // The scheduled run and the manual import start on the 60 already there; then mail keeps
    // arriving (each message a notification, so push jobs run throughout) while the scheduled
    // run goes on running, as ticks would.
    let arriving = std::sync::atomic::AtomicBool::new(true);
    let arrivals = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut added = Vec::new();
        for i in 0..40 {
            added.push(rig.stack.sandbox.add_message(
                MAILBOX,
                FOLDER,
                NewMessage::new(&format!("Arrived during the runs {i}")),
            ));
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        arriving.store(false, std::sync::atomic::Ordering::SeqCst);
        added
    };
    let scheduled = async {
        let mut reports = Vec::new();
        while arriving.load(std::sync::atomic::Ordering::SeqCst) || reports.is_empty() {
            reports.push(rig.stack.run().await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        reports
    };
    let (added, scheduled, manual) = tokio::join!(arrivals, scheduled, manual_import(&rig.stack));
    let stdout = String::from_utf8_lossy(&manual.stdout);
    println!(
        "manual import: {}\n{stdout}{}",
        manual.status,
        String::from_utf8_lossy(&manual.stderr)
    );
    // The manual import either worked the mailbox or found it leased and said so; it never
    // fails on meeting another runner.
    assert!(
        manual.status.success() || stdout.contains("busy"),
        "manual import failed: {stdout}"
    );
    for report in &scheduled {
        assert!(
            report
                .mailboxes
                .iter()
                .all(|m| m.status != MailboxStatus::Failed),
            "{report:#?}"
        );
    }
    assert_eq!(added.len(), 40);

    // Push catches up with the last arrivals; a last scheduled run settles anything left.
    let everything: Vec<String> = rig
        .stack
        .sandbox
        .messages(MAILBOX)
        .iter()
        .filter(|m| m.folder_path == FOLDER || m.folder_path == PROCESSED)
        .map(|m| m.immutable_id.clone())
        .collect();
    assert_eq!(everything.len(), 100);
    rig.wait_for_records(MAILBOX, &everything, Duration::from_secs(60))
        .await;
    let last = rig.stack.run().await;
    println!(
        "scheduled runs imported {:?} ({:?}), push jobs {}, last run {}",
        scheduled.iter().map(|r| r.imported()).collect::<Vec<_>>(),
        scheduled
            .iter()
            .map(|r| r.mailboxes[0].status)
            .collect::<Vec<_>>(),
        rig.jobs_run.load(std::sync::atomic::Ordering::SeqCst),
        last.imported()
    );
    let held: Vec<MessageInfo> = rig.stack.sandbox.folder_messages(MAILBOX, PROCESSED);
    assert_eq!(held.len(), 100, "every message moved once");
    assert!(
        rig.stack
            .sandbox
            .folder_messages(MAILBOX, FOLDER)
            .is_empty()
    );
    rig.stack.assert_stored_exactly_once(MAILBOX, &held).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_runners_racing_for_one_lease_store_each_message_once() {
    let stack = Stack::start(world(80)).await;
    stack.configure(MAILBOX, FOLDER, move_to_processed()).await;
    let held = stack.sandbox.folder_messages(MAILBOX, FOLDER);
    // Eight processes (each its own lease owner) start on the mailbox at the same moment.
    let stack = &stack;
    let runners = (0..8).map(|_| {
        let engine = stack.engine_with(Arc::new(NoObserver), EngineOptions::default());
        async move { stack.run_with(engine).await }
    });
    let reports = futures::future::join_all(runners).await;
    let statuses: Vec<MailboxStatus> = reports.iter().map(|r| r.mailboxes[0].status).collect();
    println!("statuses: {statuses:?}");
    // One took the lease and did the work; the others left the mailbox to it.
    assert_eq!(
        statuses.iter().filter(|s| **s == MailboxStatus::Ok).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == MailboxStatus::Busy)
            .count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(
        reports.iter().map(|r| r.imported()).sum::<u64>(),
        80,
        "{reports:#?}"
    );
    stack.assert_stored_exactly_once(MAILBOX, &held).await;
    // The winner released its lease: the next runner gets the mailbox at once.
    let next = stack.run().await;
    assert_eq!(next.mailboxes[0].status, MailboxStatus::Ok, "{next:#?}");
    assert_eq!(next.imported(), 0);
}
