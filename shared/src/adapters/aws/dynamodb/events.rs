//! The event outbox: one item per event in its mailbox's partition, `EVENT#{message_id}`, the
//! event as JSON. Beside the mailbox's records, so a run's outbox is one query of a partition it
//! already works in.

use async_trait::async_trait;

use super::*;
use crate::domain::event::MessageEvent;
use crate::ports::EventOutbox;

const EVENT_PREFIX: &str = "EVENT#";

fn event_key(mailbox: &MailboxAddress, id: &MessageId) -> Item {
    key(mailbox_pk(mailbox), format!("{EVENT_PREFIX}{id}"))
}

#[async_trait]
impl EventOutbox for DynamoStateStore {
    async fn put_event(&self, event: &MessageEvent) -> Result<(), StoreError> {
        const OPERATION: &str = "put event";
        let json = serde_json::to_string(event).map_err(|e| StoreError::Malformed {
            operation: OPERATION,
            detail: e.to_string(),
        })?;
        let mut item = event_key(&event.mailbox, &event.message_id);
        item.insert("event".into(), s(json));
        self.put(OPERATION, item).await
    }

    async fn pending_events(
        &self,
        mailbox: &MailboxAddress,
    ) -> Result<Vec<MessageEvent>, StoreError> {
        const OPERATION: &str = "list pending events";
        self.query_prefix(
            OPERATION,
            &mailbox_pk(mailbox),
            EVENT_PREFIX,
            |item, operation| {
                let a = Attributes::new(item, operation);
                serde_json::from_str(a.string("event")?)
                    .map_err(|e| a.malformed("event", &format!("is not an event: {e}")))
            },
        )
        .await
    }

    async fn delete_event(
        &self,
        mailbox: &MailboxAddress,
        message_id: &MessageId,
    ) -> Result<(), StoreError> {
        const OPERATION: &str = "delete event";
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(event_key(mailbox, message_id)))
            .send()
            .await
            .map_err(|e| store_error(OPERATION, e))?;
        Ok(())
    }
}
