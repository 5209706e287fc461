//! `mailroom init`: write a commented example configuration.

use std::path::Path;

use anyhow::bail;

use crate::config::{EXAMPLE, write_atomically};

pub fn run(path: &Path, force: bool) -> anyhow::Result<bool> {
    if path.exists() && !force {
        bail!(
            "{} already exists; pass --force to overwrite it",
            path.display()
        );
    }
    write_atomically(path, EXAMPLE)?;
    println!("wrote {}", path.display());
    println!("next: edit it (tenant_id, client_id, mailboxes), put the client secret's Value in");
    println!("      MAILROOM_CONTOSO_SECRET (or a file), then run `mailroom doctor`");
    Ok(true)
}
