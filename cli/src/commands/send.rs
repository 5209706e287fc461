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
            let retry = if e.retry_can_help() {
                format!(
                    ". To try again, run the same command with --idempotency-key {key}: it sends at most once"
                )
            } else {
                String::new()
            };
            Err(anyhow!("not sent: {e}{retry}"))
        }
    }
}
