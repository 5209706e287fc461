//! Mailbox configuration: the `mailboxes` table.

use async_trait::async_trait;

use super::*;
use crate::ports::MailboxConfigs;

#[async_trait]
impl MailboxConfigs for SqliteStateStore {
    async fn put_mailbox(&self, config: &MailboxConfig) -> Result<(), StoreError> {
        const OPERATION: &str = "put mailbox";
        let config = config.clone();
        self.run(OPERATION, move |c| {
            c.execute(
                "INSERT INTO mailboxes
                     (address, folder, action, processed_folder, credential, enabled, discovered_by)
                 VALUES
                     (:address, :folder, :action, :processed_folder, :credential, :enabled, :discovered_by)
                 ON CONFLICT (address, folder) DO UPDATE SET
                     action = excluded.action,
                     processed_folder = excluded.processed_folder,
                     credential = excluded.credential,
                     enabled = excluded.enabled,
                     discovered_by = excluded.discovered_by",
                named_params! {
                    ":address": config.address.as_str(),
                    ":folder": config.folder,
                    ":action": config.action.name(),
                    ":processed_folder": config.action.processed_folder(),
                    ":credential": config.credential,
                    ":enabled": config.enabled,
                    ":discovered_by": config.discovered_by,
                },
            )
            .map_err(sql_error(OPERATION))?;
            Ok(())
        })
        .await
    }

    async fn list_mailboxes(&self) -> Result<Vec<MailboxConfig>, StoreError> {
        const OPERATION: &str = "list mailboxes";
        self.run(OPERATION, move |c| {
            // BINARY collation compares UTF-8 bytes, the same order as Rust's `String`.
            let mut statement = c
                .prepare(
                    "SELECT address, folder, action, processed_folder, credential, enabled,
                            discovered_by
                     FROM mailboxes ORDER BY address, folder",
                )
                .map_err(sql_error(OPERATION))?;
            let mut rows = statement.query([]).map_err(sql_error(OPERATION))?;
            let mut configs = Vec::new();
            while let Some(row) = rows.next().map_err(sql_error(OPERATION))? {
                configs.push(config_from_row(row, OPERATION)?);
            }
            Ok(configs)
        })
        .await
    }

    async fn mailbox_folders(
        &self,
        address: &MailboxAddress,
    ) -> Result<Vec<MailboxConfig>, StoreError> {
        const OPERATION: &str = "list mailbox folders";
        let address = address.to_string();
        self.run(OPERATION, move |c| {
            let mut statement = c
                .prepare(
                    "SELECT address, folder, action, processed_folder, credential, enabled,
                            discovered_by
                     FROM mailboxes WHERE address = ?1 ORDER BY folder",
                )
                .map_err(sql_error(OPERATION))?;
            let mut rows = statement.query([&address]).map_err(sql_error(OPERATION))?;
            let mut configs = Vec::new();
            while let Some(row) = rows.next().map_err(sql_error(OPERATION))? {
                configs.push(config_from_row(row, OPERATION)?);
            }
            Ok(configs)
        })
        .await
    }

    async fn remove_mailbox(&self, key: &FolderKey) -> Result<bool, StoreError> {
        const OPERATION: &str = "remove mailbox";
        let key = key.clone();
        self.run(OPERATION, move |c| {
            let removed = c
                .execute(
                    "DELETE FROM mailboxes WHERE address = ?1 AND folder = ?2",
                    (key.mailbox.as_str(), &key.folder),
                )
                .map_err(sql_error(OPERATION))?;
            Ok(removed > 0)
        })
        .await
    }
}
