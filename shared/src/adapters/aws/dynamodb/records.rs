//! Message records: the exactly-once gate (a conditional put) and the `pending` index.

use async_trait::async_trait;

use super::*;
use crate::ports::MessageRecords;

#[async_trait]
impl MessageRecords for DynamoStateStore {
    async fn create_record(&self, record: &MessageRecord) -> Result<CreateOutcome, StoreError> {
        const OPERATION: &str = "create record";
        let item = record_to_item(record, OPERATION)?;
        // On a duplicate the existing record comes back from the same atomic call: there is no
        // window in which a separate read could see something else.
        let put = self
            .conditional_put(OPERATION, item, |put| {
                put.condition_expression("attribute_not_exists(pk)")
            })
            .await?;
        let ConditionalPut::Refused(returned) = put else {
            return Ok(CreateOutcome::Created);
        };
        // Records are never deleted, so a read back finds it.
        let key = record_key(&record.mailbox, &record.message_id);
        let existing = self
            .existing(OPERATION, returned, key)
            .await?
            .ok_or_else(|| {
                StoreError::unavailable(
                    OPERATION,
                    format!(
                        "record {} of {} exists but could not be read back",
                        record.message_id, record.mailbox
                    ),
                )
            })?;
        Ok(CreateOutcome::AlreadyStored(Box::new(record_from_item(
            &existing, OPERATION,
        )?)))
    }

    async fn get_record(
        &self,
        mailbox: &MailboxAddress,
        id: &MessageId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        const OPERATION: &str = "get record";
        self.get_item(OPERATION, record_key(mailbox, id))
            .await?
            .map(|item| record_from_item(&item, OPERATION))
            .transpose()
    }

    async fn mark_done(&self, mailbox: &MailboxAddress, id: &MessageId) -> Result<(), StoreError> {
        const OPERATION: &str = "mark record done";
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(record_key(mailbox, id)))
            // Leaving the sparse `pending` index is what "done" means to the next run.
            .update_expression("SET #state = :done REMOVE pending_pk")
            // Without the condition an update of a missing record would create a stub item.
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":done", s(RecordState::Done.as_str()))
            .send()
            .await;
        // Like the memory store: marking a record that does not exist does nothing.
        refusal_is_nothing_to_do(OPERATION, update)
    }

    async fn pending_records(
        &self,
        mailbox: &MailboxAddress,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        const OPERATION: &str = "list pending records";
        // A GSI read is eventually consistent: a record marked done a moment ago may still be
        // listed (its action is repeated, harmlessly), one stored a moment ago may be missed (the
        // next run finishes it).
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(PENDING_INDEX)
            .key_condition_expression("pending_pk = :pk")
            .expression_attribute_values(":pk", s(mailbox_pk(mailbox)));
        let mut records = collect_items(OPERATION, query, record_from_item).await?;
        records.retain(|r| r.state == RecordState::Stored);
        Ok(records)
    }

    async fn list_records(
        &self,
        mailbox: &MailboxAddress,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        const OPERATION: &str = "list records";
        self.query_prefix(OPERATION, &mailbox_pk(mailbox), "MSG#", record_from_item)
            .await
    }
}
