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
        let mut configs = self.configs_under("list mailboxes", "MAILBOX#").await?;
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
        let mut configs = self.configs_under("list mailbox folders", &prefix).await?;
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

impl DynamoStateStore {
    /// The mailbox configurations whose sort key starts with `prefix`, every page.
    async fn configs_under(
        &self,
        operation: &'static str,
        prefix: &str,
    ) -> Result<Vec<MailboxConfig>, StoreError> {
        let mut items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(CONFIG_PK))
            .expression_attribute_values(":prefix", s(prefix))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut configs = Vec::new();
        while let Some(item) = items
            .try_next()
            .await
            .map_err(|e| store_error(operation, e))?
        {
            configs.push(config_from_item(&item, operation)?);
        }
        Ok(configs)
    }
}
