//! Run summaries: the latest run of each mailbox.

use async_trait::async_trait;

use super::*;
use crate::ports::RunLog;

#[async_trait]
impl RunLog for DynamoStateStore {
    async fn put_run(&self, run: &RunSummary) -> Result<(), StoreError> {
        const OPERATION: &str = "put run summary";
        let mut item = run_key(&run.mailbox);
        item.insert("summary".into(), s(run.to_json()));
        self.put(OPERATION, item).await
    }

    async fn last_run(&self, mailbox: &MailboxAddress) -> Result<Option<RunSummary>, StoreError> {
        const OPERATION: &str = "get run summary";
        let Some(item) = self.get_item(OPERATION, run_key(mailbox)).await? else {
            return Ok(None);
        };
        let json = Attributes::new(&item, OPERATION).string("summary")?;
        RunSummary::from_json(json)
            .map(Some)
            .map_err(|detail| StoreError::Malformed {
                operation: OPERATION,
                detail: format!("attribute 'summary' of the run of {mailbox}: {detail}"),
            })
    }
}
