//! Mailbox configuration: one item per mailbox folder under the `CONFIG` partition.

use async_trait::async_trait;

use super::*;
use crate::ports::MailboxConfigs;

#[async_trait]
impl MailboxConfigs for DynamoStateStore {
    async fn put_mailbox(&self, config: &MailboxConfig) -> Result<(), StoreError> {
        const OPERATION: &str = "put mailbox";
        self.put(OPERATION, config_to_item(config)).await
    }

    async fn list_mailboxes(&self) -> Result<Vec<MailboxConfig>, StoreError> {
        let mut configs = self
            .query_prefix("list mailboxes", CONFIG_PK, "MAILBOX#", config_from_item)
            .await?;
        // The sort key orders by `{address}#{folder}` as one string, which differs from ordering
        // by address then folder when an address sorts below `#` after a shared prefix. The port
        // promises the latter, so sort here (the list is small).
        configs.sort_by(|a, b| (&a.address, &a.folder).cmp(&(&b.address, &b.folder)));
        Ok(configs)
    }

    async fn mailbox_folders(
        &self,
        address: &MailboxAddress,
    ) -> Result<Vec<MailboxConfig>, StoreError> {
        // `MAILBOX#{address}#`: an address holds no `#` after its `@`, so no other address's
        // keys share the prefix; the filter says so again.
        let prefix = format!("MAILBOX#{address}#");
        let mut configs = self
            .query_prefix("list mailbox folders", CONFIG_PK, &prefix, config_from_item)
            .await?;
        configs.retain(|c| &c.address == address);
        configs.sort_by(|a, b| a.folder.cmp(&b.folder));
        Ok(configs)
    }

    async fn remove_mailbox(&self, key: &FolderKey) -> Result<bool, StoreError> {
        const OPERATION: &str = "remove mailbox";
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(config_key(&key.mailbox, &key.folder)))
            // The old item tells us whether there was one, in the same call.
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| store_error(OPERATION, e))?;
        Ok(output.attributes.is_some_and(|a| !a.is_empty()))
    }
}
