//! Run summaries: the latest run of each mailbox.

use async_trait::async_trait;

use super::*;
use crate::ports::RunLog;

#[async_trait]
impl RunLog for SqliteStateStore {
    async fn put_run(&self, run: &RunSummary) -> Result<(), StoreError> {
        const OPERATION: &str = "put run summary";
        let (mailbox, summary) = (run.mailbox.to_string(), run.to_json());
        self.run(OPERATION, move |c| {
            c.execute(
                "INSERT INTO runs (mailbox, summary) VALUES (?1, ?2)
                 ON CONFLICT (mailbox) DO UPDATE SET summary = excluded.summary",
                (&mailbox, &summary),
            )
            .map_err(sql_error(OPERATION))?;
            Ok(())
        })
        .await
    }

    async fn last_run(&self, mailbox: &MailboxAddress) -> Result<Option<RunSummary>, StoreError> {
        const OPERATION: &str = "get run summary";
        let mailbox = mailbox.to_string();
        self.run(OPERATION, move |c| {
            let summary: Option<String> = c
                .query_row(
                    "SELECT summary FROM runs WHERE mailbox = ?1",
                    [&mailbox],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql_error(OPERATION))?;
            summary
                .map(|json| {
                    RunSummary::from_json(&json).map_err(|detail| StoreError::Malformed {
                        operation: OPERATION,
                        detail: format!("run summary of {mailbox}: {detail}"),
                    })
                })
                .transpose()
        })
        .await
    }
}
