//! `mailroom folders <mailbox>`: the folder tree with full paths and message counts.

use anyhow::bail;
use mailroom::domain::shown;
use mailroom::graph::GraphClient;

use crate::context::{Context, parse_address};

pub async fn run(
    context: &Context,
    mailbox: &str,
    credential: Option<&str>,
) -> anyhow::Result<bool> {
    let address = parse_address(mailbox)?;
    let name = match credential {
        Some(name) => name.to_owned(),
        None => pick_credential(context, &address).await?,
    };
    let credential = context.secrets.fetch(&name).await?;
    let graph = GraphClient::new(context.graph.clone())?.mailbox(credential, address.clone());

    let tree = graph.folder_tree().await?;
    println!(
        "{:<50} {:>8} {:>8}",
        format!("folders of {address}"),
        "messages",
        "unread"
    );
    for (path, folder) in tree {
        // Folder names are the mailbox's: escape sequences or bidi marks in one must not reach
        // the terminal raw.
        println!(
            "{:<50} {:>8} {:>8}",
            shown(&path),
            folder.total_item_count,
            folder.unread_item_count
        );
    }
    Ok(true)
}

/// The credential of the mailbox's configuration, else the only declared one.
async fn pick_credential(
    context: &Context,
    address: &mailroom::domain::MailboxAddress,
) -> anyhow::Result<String> {
    let configured = context.state.list_mailboxes().await?;
    if let Some(config) = configured.iter().find(|c| &c.address == address) {
        return Ok(config.credential.clone());
    }
    if let Some(local) = &context.local {
        let names: Vec<_> = local.credentials.keys().cloned().collect();
        if let [only] = names.as_slice() {
            return Ok(only.clone());
        }
        bail!(
            "{address} is not configured; choose a credential with --credential (declared: {})",
            names.join(", ")
        );
    }
    bail!("{address} is not configured; name its Secrets Manager secret with --credential")
}
