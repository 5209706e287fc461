//! `mailroom send`: one message from a configured mailbox, exactly once per idempotency key
//! (docs/sending.md).

use anyhow::{Context as _, anyhow};
use mailroom::adapters::local::FileAttachments;
use mailroom::domain::MessageId;
use mailroom::domain::send::{Body, SendRequest};
use mailroom::engine::{NoObserver, SendOutcome};

use crate::args::SendArgs;
use crate::context::{Context, parse_address};

pub async fn run(context: &Context, args: SendArgs) -> anyhow::Result<bool> {
    let body = match (&args.body, &args.body_file) {
        (Some(text), None) => text.clone(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("reading the body from {}", file.display()))?,
        _ => unreachable!("clap requires exactly one of --body and --body-file"),
    };
    // Without a key of the caller's, each invocation is its own message; the key printed lets
    // a retry of this one (after a failure) send it at most once.
    let key = args
        .idempotency_key
        .clone()
        .unwrap_or_else(|| format!("mailroom-send-{}", uuid::Uuid::new_v4().simple()));
    let request = SendRequest {
        from: parse_address(&args.from)?,
        to: args.to.clone(),
        cc: args.cc.clone(),
        bcc: args.bcc.clone(),
        subject: args.subject.clone(),
        body: if args.html {
            Body::Html(body)
        } else {
            Body::Text(body)
        },
        attachments: args
            .attach
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        reply_to: args.reply_to.clone().map(MessageId::new),
        idempotency_key: key.clone(),
    };
    let engine = context.engine(std::sync::Arc::new(NoObserver), Default::default())?;
    let cwd = std::env::current_dir().context("reading the working directory")?;
    match engine.send(&request, &FileAttachments::new(cwd)).await {
        Ok(SendOutcome::Sent { message }) => {
            println!(
                "sent from {} (idempotency key {key}; message {message})",
                request.from
            );
            Ok(true)
        }
        Ok(SendOutcome::AlreadySent) => {
            println!(
                "already sent: a message with idempotency key {key} is in {}'s Sent Items; nothing sent now",
                request.from
            );
            Ok(true)
        }
        Err(e) => {
            // Nothing was sent; whatever an attempt left (a finished draft, waiting for a
            // permission, say) is found again by the same key.
            let retry = format!(
                ". To try again, after fixing the cause if a person must, run the same command with --idempotency-key {key}: it sends at most once"
            );
            Err(anyhow!("not sent: {e}{retry}"))
        }
    }
}

/// How long the outbound test waits for its message to arrive.
const ARRIVAL_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// `mailroom doctor --send-test`: sends a test message from `from` to `to` (default: itself) and,
/// when it goes to the mailbox itself, waits for it in the Inbox.
pub async fn outbound_test(
    context: &Context,
    from: &mailroom::domain::MailboxAddress,
    to: Option<&mailroom::domain::MailboxAddress>,
) -> mailroom::doctor::Check {
    use mailroom::doctor::{Check, CheckStatus};
    let fail = |detail: String, fix: &str| Check {
        name: "outbound test",
        status: CheckStatus::Fail,
        detail,
        fix: Some(fix.to_owned()),
    };
    let engine = match context.engine(std::sync::Arc::new(NoObserver), Default::default()) {
        Ok(engine) => engine,
        Err(e) => return fail(format!("{e:#}"), "fix the configuration above"),
    };
    let to = to.unwrap_or(from);
    let token = uuid::Uuid::new_v4().simple().to_string();
    let subject = format!("Mailroom outbound test {}", &token[..12]);
    let request = SendRequest {
        from: from.clone(),
        to: vec![to.to_string()],
        cc: vec![],
        bcc: vec![],
        subject: subject.clone(),
        body: Body::Text(
            "This message tests that Mailroom can send from this mailbox. It can be deleted."
                .into(),
        ),
        attachments: vec![],
        reply_to: None,
        idempotency_key: format!("mailroom-send-test-{token}"),
    };
    let started = std::time::Instant::now();
    let no_files = FileAttachments::new(".");
    if let Err(e) = engine.send(&request, &no_files).await {
        let fix = if e.to_string().contains("Mail.Send") {
            "grant the app the Mail.Send application permission (API permissions > Microsoft Graph > Application > Mail.Send, then Grant admin consent)"
        } else {
            "see the error; the mailbox's own checks above may say more"
        };
        return fail(format!("not sent: {e}"), fix);
    }
    if to != from {
        return Check {
            name: "outbound test",
            status: CheckStatus::Pass,
            detail: format!(
                "sent to {to} (Mail.Send is granted); that it arrived is for {to} to see"
            ),
            fix: None,
        };
    }
    let arrived = async {
        let config = engine
            .state
            .mailbox_folders(from)
            .await
            .ok()?
            .into_iter()
            .next()?;
        let graph = engine.connect(&config).await.ok()?;
        while started.elapsed() < ARRIVAL_WAIT {
            if let Ok(page) = graph.newest_messages("inbox", 25).await
                && page
                    .value
                    .iter()
                    .any(|m| m.subject.as_deref() == Some(&subject))
            {
                return Some(started.elapsed());
            }
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
        None
    };
    match arrived.await {
        Some(after) => Check {
            name: "outbound test",
            status: CheckStatus::Pass,
            detail: format!(
                "sent to itself; it arrived in the Inbox after {:.1} s",
                after.as_secs_f64()
            ),
            fix: None,
        },
        None => fail(
            format!(
                "sent to itself, but it did not arrive in the Inbox within {} s",
                ARRIVAL_WAIT.as_secs()
            ),
            "check the mailbox's mail flow (transport rules, quarantine) and look in its Junk Email folder",
        ),
    }
}
