//! Message records: the exactly-once gate (an insert that does nothing on conflict) and pending records.

use async_trait::async_trait;

use super::*;
use crate::ports::MessageRecords;

#[async_trait]
impl MessageRecords for SqliteStateStore {
    async fn create_record(&self, record: &MessageRecord) -> Result<CreateOutcome, StoreError> {
        const OPERATION: &str = "create record";
        let record = record.clone();
        self.run(OPERATION, move |c| {
            let row = RecordRow::from_record(&record, OPERATION)?;
            // The insert and the read-back in one transaction: `AlreadyStored` returns what
            // actually blocked the insert.
            let existing = conditional_write(
                c,
                OPERATION,
                |transaction| {
                    transaction.execute(
                        &format!(
                            "INSERT INTO records ({RECORD_COLUMNS})
                             VALUES (:mailbox, :message_id, :folder, :internet_message_id,
                                     :subject, :sender, :received_at, :size, :sha256, :blob_key,
                                     :imported_at, :state)
                             ON CONFLICT (mailbox, message_id) DO NOTHING"
                        ),
                        named_params! {
                            ":mailbox": record.mailbox.as_str(),
                            ":message_id": record.message_id.as_str(),
                            ":folder": record.folder,
                            ":internet_message_id": record.internet_message_id,
                            ":subject": record.subject,
                            ":sender": record.from,
                            ":received_at": row.received_at,
                            ":size": row.size,
                            ":sha256": record.sha256,
                            ":blob_key": record.blob_key,
                            ":imported_at": row.imported_at,
                            ":state": record.state.as_str(),
                        },
                    )
                },
                |transaction| {
                    select_record(
                        transaction,
                        record.mailbox.as_str(),
                        record.message_id.as_str(),
                        OPERATION,
                    )?
                    .ok_or_else(|| {
                        StoreError::unavailable(
                            OPERATION,
                            format!(
                                "record {} of {} was neither inserted nor found",
                                record.message_id, record.mailbox
                            ),
                        )
                    })
                },
            )?;
            Ok(match existing {
                None => CreateOutcome::Created,
                Some(existing) => CreateOutcome::AlreadyStored(Box::new(existing)),
            })
        })
        .await
    }

    async fn get_record(
        &self,
        mailbox: &MailboxAddress,
        id: &MessageId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        const OPERATION: &str = "get record";
        let (mailbox, id) = (mailbox.clone(), id.clone());
        self.run(OPERATION, move |c| {
            select_record(c, mailbox.as_str(), id.as_str(), OPERATION)
        })
        .await
    }

    async fn mark_done(&self, mailbox: &MailboxAddress, id: &MessageId) -> Result<(), StoreError> {
        const OPERATION: &str = "mark record done";
        let (mailbox, id) = (mailbox.clone(), id.clone());
        self.run(OPERATION, move |c| {
            // An UPDATE of a missing row changes nothing: marking an unknown record does nothing,
            // as in the other stores.
            c.execute(
                "UPDATE records SET state = ?1 WHERE mailbox = ?2 AND message_id = ?3",
                (RecordState::Done.as_str(), mailbox.as_str(), id.as_str()),
            )
            .map_err(sql_error(OPERATION))?;
            Ok(())
        })
        .await
    }

    async fn pending_records(
        &self,
        mailbox: &MailboxAddress,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        const OPERATION: &str = "list pending records";
        let mailbox = mailbox.clone();
        self.run(OPERATION, move |c| {
            select_records(
                c,
                &pending_sql(),
                (mailbox.as_str(), RecordState::Stored.as_str()),
                OPERATION,
            )
        })
        .await
    }

    async fn list_records(
        &self,
        mailbox: &MailboxAddress,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        const OPERATION: &str = "list records";
        let mailbox = mailbox.clone();
        self.run(OPERATION, move |c| {
            select_records(
                c,
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM records WHERE mailbox = ?1 ORDER BY message_id"
                ),
                [mailbox.as_str()],
                OPERATION,
            )
        })
        .await
    }
}
