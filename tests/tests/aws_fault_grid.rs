//! Every AWS call the import makes, under every fault the proxy injects (tests/src/awsproxy.rs):
//! once (the SDK's retry absorbs it) and on all three of the SDK's attempts (the engine sees it).
//! Each cell imports a folder with `move`, then runs again without faults; the end state must be
//! the mailbox stored exactly once, every message moved. The test prints the table that
//! tests/README.md shows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use graph_sandbox::{DEFAULT_TENANT, Mailbox, World};
use mailroom::clock::Clock;
use mailroom::domain::AfterImport;
use mailroom::engine::{EngineOptions, MailboxStatus, NoObserver, RunReport};
use mailroom::ports::StoreError;
use mailroom_tests::awsproxy::{AwsFault, AwsProxy, FaultRule};
use mailroom_tests::moto::Moto;
use mailroom_tests::stack::{RUN_BUDGET, Stack};

const MAILBOX: &str = "reports@contoso.com";
const FOLDER: &str = "Inbox/Backup Reports";
const PROCESSED: &str = "Inbox/Processed";
const MESSAGES: usize = 5;

/// The calls of one import with `move`, and the step each is.
const CALLS: &[(&str, &str, &str)] = &[
    ("secretsmanager", "GetSecretValue", "read the credential"),
    ("dynamodb", "PutItem", "lease, then each record"),
    ("dynamodb", "GetItem", "cursor, then each record's state"),
    ("dynamodb", "Query", "list mailboxes, pending records"),
    ("dynamodb", "UpdateItem", "mark done"),
    ("dynamodb", "DeleteItem", "release the lease"),
    ("s3", "PutObject", "the message's MIME"),
];

/// How long the SDK gives one attempt in the delay cells (the functions: 20 s).
const ATTEMPT: Duration = Duration::from_millis(800);
const LATE: Duration = Duration::from_millis(1300);

fn faults() -> [AwsFault; 5] {
    [
        AwsFault::Throttle,
        AwsFault::ServerError,
        AwsFault::Reset,
        AwsFault::LoseAnswer,
        AwsFault::Delay(LATE),
    ]
}

struct Cell {
    service: &'static str,
    operation: &'static str,
    step: &'static str,
    fault: AwsFault,
    /// Faults in a row: 1 (absorbed by a retry) or 3 (every attempt the SDK makes).
    times: usize,
}

struct Outcome {
    first: String,
    calls: u64,
    fired: usize,
}

async fn run_cell(cell: &Cell) -> Outcome {
    let proxy = AwsProxy::start(&Moto::shared().endpoint()).await;
    let world = World::default_test().mailbox(
        DEFAULT_TENANT,
        Mailbox::new(MAILBOX)
            .folder(FOLDER)
            .folder(PROCESSED)
            .messages(FOLDER, MESSAGES),
    );
    let attempt = match cell.fault {
        AwsFault::Delay(_) => ATTEMPT,
        _ => mailroom::adapters::aws::ATTEMPT_TIMEOUT,
    };
    let stack = Stack::start(world)
        .await
        .via_timing_out(proxy.endpoint(), attempt);
    stack
        .configure(
            MAILBOX,
            FOLDER,
            AfterImport::Move {
                processed_folder: PROCESSED.into(),
            },
        )
        .await;
    let held = stack.sandbox.folder_messages(MAILBOX, FOLDER);
    // The second call of the operation where there is one (PutItem's first is the lease), so
    // the fault lands on a message's step.
    let after = usize::from(cell.operation == "PutItem" || cell.operation == "GetItem");
    proxy.reset();
    proxy.inject(FaultRule::new(cell.service, cell.operation, cell.fault, cell.times).after(after));
    // One message at a time, so the faults in a row meet one call's attempts, not the calls of
    // four messages in flight.
    let sequential = EngineOptions {
        message_concurrency: 1,
        ..EngineOptions::default()
    };
    let first = stack
        .engine_with(Arc::new(NoObserver), sequential)
        .run(stack.clock.now() + RUN_BUDGET, None)
        .await;
    let fired = proxy
        .faults_fired()
        .get(cell.fault.name())
        .copied()
        .unwrap_or(0) as usize;
    let calls = proxy
        .calls()
        .get(&(cell.service.to_owned(), cell.operation.to_owned()))
        .copied()
        .unwrap_or(0);
    proxy.clear_faults();
    if let AwsFault::Delay(late) = cell.fault {
        // Let the late calls land before the check.
        tokio::time::sleep(late + Duration::from_millis(300)).await;
    }
    // A lease the faulted run could not release expires.
    stack
        .clock
        .advance(RUN_BUDGET * 2 + time::Duration::minutes(5));
    let second = stack.run().await;
    assert_eq!(
        second.mailboxes[0].status,
        MailboxStatus::Ok,
        "{}: the fault-free run: {second:#?}",
        name(cell)
    );
    stack
        .assert_stored_exactly_once(MAILBOX, &stack.sandbox.folder_messages(MAILBOX, PROCESSED))
        .await;
    assert_eq!(
        stack.sandbox.folder_messages(MAILBOX, PROCESSED).len(),
        held.len(),
        "{}: every message moved",
        name(cell)
    );
    Outcome {
        first: describe(&first),
        calls,
        fired,
    }
}

fn name(cell: &Cell) -> String {
    format!(
        "{} {} ×{} on {} {}",
        cell.fault.name(),
        if cell.times == 1 { "once" } else { "in a row" },
        cell.times,
        cell.service,
        cell.operation
    )
}

/// What the faulted run reported, in a table cell.
fn describe(report: &Result<RunReport, StoreError>) -> String {
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            let short: String = e.to_string().split(':').take(1).collect();
            return format!("the run failed ({short})");
        }
    };
    let mailbox = &report.mailboxes[0];
    let (imported, already, failed) = mailbox
        .folders
        .first()
        .map_or((0, 0, 0), |f| (f.imported, f.already_stored, f.failed));
    let error = mailbox
        .error
        .clone()
        .or_else(|| mailbox.folders.first().and_then(|f| f.error.clone()));
    let mut text = format!("{:?}: {imported} imported", mailbox.status);
    if already > 0 {
        text.push_str(&format!(", {already} already stored"));
    }
    if failed > 0 {
        text.push_str(&format!(", {failed} failed"));
    }
    if let Some(error) = error {
        // The error's first words (which call failed, and how), without the names in quotes.
        let short: String = error.split(':').take(2).collect::<Vec<_>>().join(":");
        let unquoted: String = short
            .split('\'')
            .enumerate()
            .map(|(i, part)| if i % 2 == 1 { "…" } else { part })
            .collect();
        text.push_str(&format!(" ({})", unquoted.trim()));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_aws_call_of_an_import_under_every_fault_ends_with_each_message_stored_once() {
    let mut cells = Vec::new();
    for (service, operation, step) in CALLS {
        for fault in faults() {
            for times in [1, 3] {
                cells.push(Cell {
                    service,
                    operation,
                    step,
                    fault,
                    times,
                });
            }
        }
    }
    // Four cells at a time, each with its own sandbox, table, bucket and proxy.
    let mut rows = Vec::new();
    for chunk in cells.chunks(4) {
        let outcomes = futures::future::join_all(chunk.iter().map(run_cell)).await;
        for (cell, outcome) in chunk.iter().zip(outcomes) {
            // The fault fired as often as asked (the SDK made at least that many attempts), and
            // a single fault never reached the engine.
            assert_eq!(outcome.fired, cell.times, "{}: faults fired", name(cell));
            if cell.times == 1 {
                assert!(
                    outcome.first.starts_with("Ok") && !outcome.first.contains("failed"),
                    "{}: one fault reached the engine: {}",
                    name(cell),
                    outcome.first
                );
            }
            rows.push((cell, outcome));
        }
    }
    println!("\n| call (step) | fault | faulted run | calls of it | fault-free rerun |");
    println!("|---|---|---|---|---|");
    for (cell, outcome) in &rows {
        println!(
            "| {} `{}` ({}) | {} ×{} | {} | {} | each message once, all moved |",
            cell.service,
            cell.operation,
            cell.step,
            cell.fault.name(),
            cell.times,
            outcome.first,
            outcome.calls
        );
    }
    println!("{} cells", rows.len());
}
