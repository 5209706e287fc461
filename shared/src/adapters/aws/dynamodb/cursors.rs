//! Delta cursors: one item per mailbox folder.

use async_trait::async_trait;

use super::*;
use crate::ports::Cursors;

#[async_trait]
impl Cursors for DynamoStateStore {
    async fn get_cursor(&self, key: &FolderKey) -> Result<Option<Cursor>, StoreError> {
        const OPERATION: &str = "get cursor";
        self.get_item(OPERATION, cursor_key(key))
            .await?
            .map(|item| cursor_from_item(&item, OPERATION))
            .transpose()
    }

    async fn put_cursor(&self, key: &FolderKey, cursor: &Cursor) -> Result<(), StoreError> {
        const OPERATION: &str = "put cursor";
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(cursor_to_item(key, cursor)))
            .send()
            .await
            .map_err(|e| store_error(OPERATION, e))?;
        Ok(())
    }
}
