//! A 60 MB message is stored intact without ever being held whole in memory.
//!
//! Its own test binary, so the allocator below counts only this test. The sandbox generates the
//! message while streaming it, so neither end holds it either; what the heap peaks at is the
//! import's working set (one S3 part of 8 MiB, buffers), not the message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use graph_sandbox::{DEFAULT_TENANT, Mailbox, NewMessage, World};
use mailroom::domain::AfterImport;
use mailroom::engine::MailboxStatus;
use mailroom_tests::stack::Stack;
use peak_alloc::PeakAlloc;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

const MAILBOX: &str = "backups@contoso.com";
const SIZE: u64 = 60 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sixty_megabyte_message_is_streamed_intact() {
    let world = World::default_test().mailbox(
        DEFAULT_TENANT,
        Mailbox::new(MAILBOX).folder("Inbox/Images").message(
            "Inbox/Images",
            NewMessage::generated("Full disk image 2025-11-20", SIZE),
        ),
    );
    let stack = Stack::start(world).await;
    let held = stack.sandbox.folder_messages(MAILBOX, "Inbox/Images");
    assert!(
        held[0].size >= SIZE,
        "the sandbox generated {} bytes",
        held[0].size
    );
    stack
        .configure(MAILBOX, "Inbox/Images", AfterImport::Delete)
        .await;

    let baseline = HEAP.current_usage();
    HEAP.reset_peak_usage();
    let report = stack.run().await;
    let peak = HEAP.peak_usage().saturating_sub(baseline);

    assert_eq!(report.mailboxes[0].status, MailboxStatus::Ok, "{report:#?}");
    stack.assert_stored_exactly_once(MAILBOX, &held).await;
    let record = &stack.records(MAILBOX).await[0];
    assert_eq!(stack.blob_sha256(&record.blob_key).await, held[0].sha256);
    println!(
        "60 MB import: message {} bytes, peak heap growth {:.1} MiB ({:.2} of the message)",
        held[0].size,
        peak as f64 / 1048576.0,
        peak as f64 / held[0].size as f64
    );
    assert!(
        (peak as u64) < SIZE / 2,
        "heap grew by {peak} bytes while importing a {SIZE}-byte message: it was buffered"
    );
}
