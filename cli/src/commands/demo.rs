//! `mailroom demo`: the whole flow against a Graph sandbox started in this process, seeded with
//! realistic mail — no tenant, no AWS account, no network.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use graph_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_SECRET, DEFAULT_TENANT, NewMessage, Sandbox, World,
};
use mailroom::graph::GraphConfig;
use time::OffsetDateTime;

use crate::config::LocalConfig;
use crate::context::Context;

const REPORTS: &str = "reports@contoso.com";
const INVOICES: &str = "invoices@contoso.com";
/// A mailbox the demo app is not allowed to read: the doctor proves the restriction holds.
const CEO: &str = "ceo@contoso.com";

pub async fn run(keep_running: bool, dir: Option<PathBuf>) -> anyhow::Result<bool> {
    let sandbox = Sandbox::start(World::demo())
        .await
        .context("starting the Graph sandbox")?;
    sandbox.add_message(
        CEO,
        "Inbox",
        NewMessage::new("Board pack, strictly confidential"),
    );
    sandbox.set_app_scope(DEFAULT_CLIENT_ID, Some(&[REPORTS, INVOICES]));
    // A little latency, as over the internet, so the progress is visible.
    sandbox.set_latency(Duration::from_millis(5));

    let dir = match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            dir
        }
        None => tempfile::Builder::new()
            .prefix("mailroom-demo-")
            .tempdir()?
            .keep(),
    };
    let config_path = dir.join("mailroom.toml");
    std::fs::write(dir.join("demo-secret.txt"), DEFAULT_SECRET)?;
    std::fs::write(&config_path, demo_config())?;
    let local = LocalConfig::load(&config_path)?;
    let url = url::Url::parse(&sandbox.url())?;
    let data_dir = dir.join("data");
    let context = Context::local(local, &data_dir, GraphConfig::new(url.clone(), url)).await?;

    println!("Mailroom demo");
    println!(
        "  Graph sandbox   {} (Entra token endpoint + Graph mail API, in this process)",
        sandbox.url()
    );
    println!("  configuration   {}", config_path.display());
    println!("  state           {}", context.location);
    println!();
    println!("1. mailroom doctor — checking the set-up of each mailbox");
    let healthy = super::doctor::run(&context, None, None).await?;
    println!();
    println!("2. mailroom import — storing each message once, then acting on the original");
    let report = super::import::import_once(&context, None, None).await?;
    println!();
    println!("3. what was stored");
    for mailbox in [REPORTS, INVOICES] {
        let address = crate::context::parse_address(mailbox)?;
        let records = context.state.list_records(&address).await?;
        let bytes: u64 = records.iter().map(|r| r.size).sum();
        println!(
            "  {mailbox}: {} messages, {:.1} MB of raw MIME",
            records.len(),
            bytes as f64 / 1e6
        );
        if let Some(example) = records.iter().max_by_key(|r| r.received_at) {
            println!(
                "    e.g. \"{}\" from {} -> {}",
                example.subject.as_deref().unwrap_or("(no subject)"),
                example.from.as_deref().unwrap_or("?"),
                data_dir.join("messages").join(&example.blob_key).display()
            );
        }
    }
    let processed = sandbox.folder_messages(INVOICES, "Inbox/Processed").len();
    println!(
        "  invoices moved to Inbox/Processed in the mailbox: {processed}; reports left untouched (action none)"
    );
    println!();
    println!("4. mailroom import, again — nothing is stored twice");
    let again = super::import::import_once(&context, None, None).await?;
    println!();
    println!("Files are kept in {}; see the state with:", dir.display());
    println!(
        "  mailroom --config {} --data-dir {} status",
        config_path.display(),
        data_dir.display()
    );

    println!();
    println!(
        "5. push — Graph notifies Mailroom's webhook, and a new message is stored within seconds"
    );
    let stop = super::serve::stop_on_signal();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("listening for the sandbox's notifications")?;
    // The sandbox accepts http:// on loopback; real Graph needs an https:// public URL.
    let public_url = format!("http://{}", listener.local_addr()?);
    let push = super::serve::Push::start(&context, listener, &public_url, stop.clone())?;
    // Here, not queued: the demo's next step needs the subscription in place.
    push.maintain(false).await?;
    let delay = push_one_invoice(&context, &sandbox).await?;
    match delay {
        Some(delay) => println!(
            "  a new invoice was stored {:.0} ms after it arrived (Graph notification -> webhook -> queue -> import), with no scheduled run",
            delay.as_secs_f64() * 1000.0
        ),
        None => println!("  the new invoice was not stored by push within 10 s"),
    }

    if keep_running {
        println!();
        println!("6. mailroom serve — a new invoice arrives every 20 seconds; Ctrl-C stops");
        let feeder = sandbox.clone();
        tokio::spawn(async move {
            for n in 1.. {
                tokio::time::sleep(Duration::from_secs(20)).await;
                feeder.add_message(
                    INVOICES,
                    "Inbox/Invoices",
                    NewMessage::new(&format!("Invoice INV-{}", 9100 + n)),
                );
            }
        });
        super::serve::serve(&context, Duration::from_secs(60), Some(&push), stop.clone()).await?;
    }
    stop.cancel();
    Ok(healthy && report.failed_mailboxes() == 0 && again.imported() == 0 && delay.is_some())
}

/// Adds an invoice to the sandbox and waits for its record: the push latency, from the message's
/// arrival to its record in the state store.
async fn push_one_invoice(
    context: &Context,
    sandbox: &Sandbox,
) -> anyhow::Result<Option<Duration>> {
    let address = crate::context::parse_address(INVOICES)?;
    let started = std::time::Instant::now();
    let message = sandbox.add_message(
        INVOICES,
        "Inbox/Invoices",
        NewMessage::new("Invoice INV-9001 (arrived by push)"),
    );
    let id = mailroom::domain::MessageId::new(message.immutable_id);
    while started.elapsed() < Duration::from_secs(10) {
        if context.state.get_record(&address, &id).await?.is_some() {
            return Ok(Some(started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(None)
}

fn demo_config() -> String {
    let expires = OffsetDateTime::now_utc() + time::Duration::days(200);
    let expires = expires
        .replace_nanosecond(0)
        .unwrap_or(expires)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    format!(
        r#"# Written by `mailroom demo` for its Graph sandbox.
[credential.demo]
tenant_id = "{DEFAULT_TENANT}"
client_id = "{DEFAULT_CLIENT_ID}"
client_secret_file = "demo-secret.txt"
expires_at = "{expires}"
scope_probe = "{CEO}"

# Backup reports: a read-only archive (delta query; the mailbox is not changed).
[[mailbox]]
address = "{REPORTS}"
credential = "demo"
folder = "Inbox/Backup Reports"
action = "none"

# Invoices: stored, then moved to Inbox/Processed.
[[mailbox]]
address = "{INVOICES}"
credential = "demo"
folder = "Inbox/Invoices"
action = "move"
processed_folder = "Inbox/Processed"
"#
    )
}
