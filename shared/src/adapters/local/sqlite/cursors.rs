//! Delta cursors: one row per mailbox folder.

use async_trait::async_trait;

use super::*;
use crate::ports::Cursors;

#[async_trait]
impl Cursors for SqliteStateStore {
    async fn get_cursor(&self, key: &FolderKey) -> Result<Option<Cursor>, StoreError> {
        const OPERATION: &str = "get cursor";
        let key = key.clone();
        self.run(OPERATION, move |c| {
            c.query_row(
                "SELECT delta_link, next_link FROM cursors WHERE mailbox = ?1 AND folder = ?2",
                (key.mailbox.as_str(), &key.folder),
                |row| {
                    Ok(Cursor {
                        delta_link: row.get(0)?,
                        next_link: row.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(sql_error(OPERATION))
        })
        .await
    }

    async fn put_cursor(&self, key: &FolderKey, cursor: &Cursor) -> Result<(), StoreError> {
        const OPERATION: &str = "put cursor";
        let (key, cursor) = (key.clone(), cursor.clone());
        self.run(OPERATION, move |c| {
            // Both links are replaced: a finished round's next link must not survive.
            c.execute(
                "INSERT INTO cursors (mailbox, folder, delta_link, next_link)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (mailbox, folder) DO UPDATE SET
                     delta_link = excluded.delta_link,
                     next_link = excluded.next_link",
                (
                    key.mailbox.as_str(),
                    &key.folder,
                    &cursor.delta_link,
                    &cursor.next_link,
                ),
            )
            .map_err(sql_error(OPERATION))?;
            Ok(())
        })
        .await
    }
}
