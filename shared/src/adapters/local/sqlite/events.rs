//! The event outbox: the `events` table, each row an event as JSON.

use async_trait::async_trait;

use super::*;
use crate::domain::event::MessageEvent;
use crate::ports::EventOutbox;

#[async_trait]
impl EventOutbox for SqliteStateStore {
    async fn put_event(&self, event: &MessageEvent) -> Result<(), StoreError> {
        const OPERATION: &str = "put event";
        let json = serde_json::to_string(event).map_err(|e| StoreError::Malformed {
            operation: OPERATION,
            detail: e.to_string(),
        })?;
        let (mailbox, id) = (event.mailbox.to_string(), event.message_id.to_string());
        self.run(OPERATION, move |c| {
            c.execute(
                "INSERT INTO events (mailbox, message_id, event) VALUES (?1, ?2, ?3)
                 ON CONFLICT (mailbox, message_id) DO UPDATE SET event = excluded.event",
                (&mailbox, &id, &json),
            )
            .map_err(sql_error(OPERATION))?;
            Ok(())
        })
        .await
    }

    async fn pending_events(
        &self,
        mailbox: &MailboxAddress,
    ) -> Result<Vec<MessageEvent>, StoreError> {
        const OPERATION: &str = "list pending events";
        let mailbox = mailbox.to_string();
        self.run(OPERATION, move |c| {
            let mut statement = c
                .prepare("SELECT event FROM events WHERE mailbox = ?1 ORDER BY message_id")
                .map_err(sql_error(OPERATION))?;
            let rows = statement
                .query_map([&mailbox], |row| row.get::<_, String>(0))
                .map_err(sql_error(OPERATION))?;
            let mut events = Vec::new();
            for row in rows {
                let json = row.map_err(sql_error(OPERATION))?;
                events.push(
                    serde_json::from_str(&json).map_err(|e| StoreError::Malformed {
                        operation: OPERATION,
                        detail: format!("event of {mailbox}: {e}"),
                    })?,
                );
            }
            Ok(events)
        })
        .await
    }

    async fn delete_event(
        &self,
        mailbox: &MailboxAddress,
        message_id: &MessageId,
    ) -> Result<(), StoreError> {
        const OPERATION: &str = "delete event";
        let (mailbox, id) = (mailbox.to_string(), message_id.to_string());
        self.run(OPERATION, move |c| {
            c.execute(
                "DELETE FROM events WHERE mailbox = ?1 AND message_id = ?2",
                (&mailbox, &id),
            )
            .map_err(sql_error(OPERATION))?;
            Ok(())
        })
        .await
    }
}
