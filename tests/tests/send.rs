//! Sending from a mailbox (shared/src/engine/send.rs), end to end against the Graph sandbox over
//! HTTP with the credential in Secrets Manager and the configuration in DynamoDB (moto): a
//! message is sent once per idempotency key, whatever step a crash stops it at; a reply threads;
//! a large attachment goes through an upload session; bad requests send nothing and say why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use graph_sandbox::{DEFAULT_CLIENT_ID, DEFAULT_TENANT, Mailbox, MessageInfo, NewMessage, World};
use mailroom::adapters::local::FileAttachments;
use mailroom::domain::send::{Body, SendRequest};
use mailroom::domain::{AfterImport, FolderKey, MailboxAddress, MessageId};
use mailroom::engine::{EngineOptions, ImportObserver, Interrupted, SendError, SendOutcome, Step};
use mailroom::graph::DraftMark;
use mailroom_tests::stack::Stack;

const FROM: &str = "ops@contoso.com";
const TO: &str = "someone@contoso.com";

fn world() -> World {
    World::default_test()
        .mailbox(DEFAULT_TENANT, Mailbox::new(FROM).folder("Inbox/Alerts"))
        .mailbox(DEFAULT_TENANT, Mailbox::new(TO))
}

/// A stack whose app may send, with `FROM` configured, and a directory for attachments.
async fn stack() -> (Stack, tempfile::TempDir) {
    let stack = Stack::start(world()).await;
    stack
        .sandbox
        .set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.ReadWrite", "Mail.Send"]);
    stack
        .configure(FROM, "Inbox/Alerts", AfterImport::None)
        .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("report.csv"), "a,b\n1,2\n").unwrap();
    (stack, dir)
}

fn request(key: &str) -> SendRequest {
    SendRequest {
        from: MailboxAddress::parse(FROM).unwrap(),
        to: vec![TO.into()],
        cc: vec![],
        bcc: vec![],
        subject: format!("Report {key}"),
        body: Body::Text("The report is attached.".into()),
        attachments: vec!["report.csv".into()],
        reply_to: None,
        idempotency_key: key.into(),
    }
}

fn received(stack: &Stack, subject: &str) -> Vec<MessageInfo> {
    stack
        .sandbox
        .folder_messages(TO, "Inbox")
        .into_iter()
        .filter(|m| m.subject == subject)
        .collect()
}

fn drafts(stack: &Stack) -> Vec<MessageInfo> {
    stack.sandbox.folder_messages(FROM, "Drafts")
}

/// The messages Graph sent for idempotency key `key` (the sandbox's log of sent drafts).
fn sends(stack: &Stack, key: &str) -> Vec<graph_sandbox::SentMail> {
    stack
        .sandbox
        .sent_mail_with_property(&DraftMark::Key.property_id(), key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_sent_once_and_a_retry_with_its_key_sends_nothing() {
    let (stack, dir) = stack().await;
    let engine = stack.engine();
    let files = FileAttachments::new(dir.path());
    let outcome = engine.send(&request("k-1"), &files).await.unwrap();
    assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
    let got = received(&stack, "Report k-1");
    assert_eq!(got.len(), 1);
    assert_eq!(sends(&stack, "k-1").len(), 1);
    assert_eq!(sends(&stack, "k-1")[0].attachments.len(), 1);
    assert_eq!(stack.sandbox.folder_messages(FROM, "Sent Items").len(), 1);
    assert!(drafts(&stack).is_empty());

    // The same key again, from a fresh process: found in Sent Items, nothing sent.
    let again = stack.engine().send(&request("k-1"), &files).await.unwrap();
    assert_eq!(again, SendOutcome::AlreadySent);
    assert_eq!(received(&stack, "Report k-1").len(), 1);
    assert_eq!(sends(&stack, "k-1").len(), 1);

    // Another key is another message.
    stack.engine().send(&request("k-2"), &files).await.unwrap();
    assert_eq!(received(&stack, "Report k-2").len(), 1);
}

/// Stops the send before `step` once, as a crash would.
struct CrashOnceAt {
    step: Step,
    done: AtomicBool,
}

impl ImportObserver for CrashOnceAt {
    fn before(&self, step: Step, _: &FolderKey, _: Option<&MessageId>) -> Result<(), Interrupted> {
        if step == self.step && !self.done.swap(true, Ordering::SeqCst) {
            return Err(Interrupted(step));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_retried_after_a_crash_at_any_step_sends_one_message() {
    let (stack, dir) = stack().await;
    let files = FileAttachments::new(dir.path());
    for step in Step::SEND {
        let key = format!("crash-{step:?}");
        let crash = Arc::new(CrashOnceAt {
            step,
            done: AtomicBool::new(false),
        });
        let crashed = stack
            .engine_with(crash, EngineOptions::default())
            .send(&request(&key), &files)
            .await;
        assert!(
            matches!(&crashed, Err(e) if e.to_string().contains("interrupted")),
            "{step:?}: {crashed:?}"
        );
        let retried = stack.engine().send(&request(&key), &files).await.unwrap();
        assert!(
            matches!(retried, SendOutcome::Sent { .. }),
            "{step:?}: {retried:?}"
        );
        let got = received(&stack, &format!("Report {key}"));
        assert_eq!(got.len(), 1, "{step:?}: delivered {} times", got.len());
        assert_eq!(sends(&stack, &key).len(), 1, "{step:?}");
        assert!(
            drafts(&stack).is_empty(),
            "{step:?}: drafts left: {:?}",
            drafts(&stack)
        );
        // And once more: already sent.
        let third = stack.engine().send(&request(&key), &files).await.unwrap();
        assert_eq!(third, SendOutcome::AlreadySent, "{step:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_threads_with_the_stored_original() {
    let (stack, dir) = stack().await;
    let original = stack.sandbox.add_message(
        FROM,
        "Inbox/Alerts",
        NewMessage::new("Disk almost full").from("Someone", TO),
    );
    let mut reply = request("reply-1");
    reply.to.clear(); // the original's sender
    reply.attachments.clear();
    reply.reply_to = Some(MessageId::new(original.immutable_id.clone()));
    let outcome = stack
        .engine()
        .send(&reply, &FileAttachments::new(dir.path()))
        .await
        .unwrap();
    assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
    let got: Vec<MessageInfo> = stack
        .sandbox
        .folder_messages(TO, "Inbox")
        .into_iter()
        .filter(|m| {
            m.subject
                .to_ascii_lowercase()
                .starts_with("re: disk almost full")
        })
        .collect();
    assert_eq!(
        got.len(),
        1,
        "{:?}",
        stack.sandbox.folder_messages(TO, "Inbox")
    );
    assert_eq!(got[0].conversation_id, original.conversation_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mb_attachment_goes_through_an_upload_session() {
    let (stack, dir) = stack().await;
    let big: Vec<u8> = (0..10 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("big.bin"), &big).unwrap();
    let mut request = request("big-1");
    request.attachments = vec!["big.bin".into()];
    stack.sandbox.clear_requests();
    let outcome = stack
        .engine()
        .send(&request, &FileAttachments::new(dir.path()))
        .await
        .unwrap();
    assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
    let requests = stack.sandbox.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.path.contains("createUploadSession")),
        "no upload session: {:?}",
        requests.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert_eq!(received(&stack, "Report big-1").len(), 1);
    let sent = sends(&stack, "big-1");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].attachments.len(), 1, "{:?}", sent[0].attachments);
    assert_eq!(sent[0].attachments[0].name, "big.bin");
    assert_eq!(sent[0].attachments[0].size, big.len() as u64);
    use sha2::Digest;
    assert_eq!(
        sent[0].attachments[0].sha256.as_deref(),
        Some(hex::encode(sha2::Sha256::digest(&big)).as_str()),
        "the upload's bytes are the file's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_send_nothing_and_say_why() {
    let (stack, dir) = stack().await;
    let files = FileAttachments::new(dir.path());
    let fails = |request: SendRequest| {
        let engine = stack.engine();
        let files = files.clone();
        async move { engine.send(&request, &files).await.unwrap_err() }
    };

    let mut r = request("bad-1");
    r.to.clear();
    let e = fails(r).await;
    assert!(
        matches!(e, SendError::Invalid(_)) && e.to_string().contains("at least one address"),
        "{e}"
    );

    let mut r = request("bad-2");
    r.from = MailboxAddress::parse("nobody@contoso.com").unwrap();
    let e = fails(r).await;
    assert!(e.to_string().contains("configured: ops@contoso.com"), "{e}");

    let mut r = request("bad-3");
    r.attachments = vec!["missing.pdf".into()];
    let e = fails(r).await;
    assert!(
        e.to_string().contains("missing.pdf") && !e.retry_can_help(),
        "{e}"
    );

    let mut r = request("bad-4");
    r.body = Body::Html("<p>x</p>".repeat(500_000));
    let e = fails(r).await;
    assert!(e.to_string().contains("at most 3 MB"), "{e}");

    assert!(drafts(&stack).is_empty());
    assert!(stack.sandbox.folder_messages(FROM, "Sent Items").is_empty());
    assert!(stack.sandbox.folder_messages(TO, "Inbox").is_empty());

    // Mail.Send not granted: Graph refuses the send; the error names the permission, and the
    // finished draft waits for a retry after the grant, which sends it once.
    stack
        .sandbox
        .set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.ReadWrite"]);
    let e = fails(request("bad-5")).await;
    assert!(e.to_string().contains("Mail.Send"), "{e}");
    assert!(received(&stack, "Report bad-5").is_empty());
    stack
        .sandbox
        .set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.ReadWrite", "Mail.Send"]);
    let outcome = stack
        .engine()
        .send(&request("bad-5"), &files)
        .await
        .unwrap();
    assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
    assert_eq!(received(&stack, "Report bad-5").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_while_the_message_waits_in_the_outbox_sends_nothing_more() {
    let (stack, dir) = stack().await;
    let files = FileAttachments::new(dir.path());
    // Graph has taken the draft (202) but not yet sent it: it waits in the Outbox.
    stack.sandbox.hold_outbox(true);
    let first = stack
        .engine()
        .send(&request("held-1"), &files)
        .await
        .unwrap();
    assert!(matches!(first, SendOutcome::Sent { .. }), "{first:?}");
    assert!(drafts(&stack).is_empty());
    let retry = stack
        .engine()
        .send(&request("held-1"), &files)
        .await
        .unwrap();
    assert_eq!(retry, SendOutcome::AlreadySent, "found in the Outbox");
    assert_eq!(stack.sandbox.release_outbox(), 1);
    stack.sandbox.hold_outbox(false);
    assert_eq!(sends(&stack, "held-1").len(), 1);
    assert_eq!(received(&stack, "Report held-1").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_that_bounces_is_reported_by_a_non_delivery_report_not_an_error() {
    let (stack, dir) = stack().await;
    stack.sandbox.set_bouncing("gone@contoso.com");
    let mut r = request("bounce-1");
    r.to = vec!["gone@contoso.com".into()];
    let outcome = stack
        .engine()
        .send(&r, &FileAttachments::new(dir.path()))
        .await
        .unwrap();
    assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
    let reports: Vec<MessageInfo> = stack
        .sandbox
        .folder_messages(FROM, "Inbox")
        .into_iter()
        .filter(|m| m.subject.starts_with("Undeliverable"))
        .collect();
    assert_eq!(reports.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_mailboxs_size_limit_is_refused_for_good_and_sent_never() {
    let (stack, dir) = stack().await;
    std::fs::write(dir.path().join("big.bin"), vec![7u8; 400 * 1024]).unwrap();
    stack.sandbox.set_max_message_size(200 * 1024);
    let mut r = request("large-1");
    r.attachments = vec!["big.bin".into()];
    let e = stack
        .engine()
        .send(&r, &FileAttachments::new(dir.path()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("ErrorMessageSizeExceeded"), "{e}");
    assert!(
        !e.retry_can_help(),
        "the same message is refused again: {e}"
    );
    assert!(sends(&stack, "large-1").is_empty());
    assert!(received(&stack, "Report large-1").is_empty());
}
