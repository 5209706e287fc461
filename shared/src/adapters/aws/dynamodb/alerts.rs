//! Alert claims: a conditional put per credential and alert key, so each alert goes out once.

use async_trait::async_trait;

use super::*;
use crate::ports::AlertClaims;

#[async_trait]
impl AlertClaims for DynamoStateStore {
    async fn claim_alert(
        &self,
        credential: &str,
        alert_key: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const OPERATION: &str = "claim alert";
        let mut item = alert_item_key(credential, alert_key);
        item.insert(
            "claimed_at".into(),
            s(rfc3339(now, "claimed_at", OPERATION)?),
        );
        // Only the first claim writes: the condition is what makes an alert go out once.
        let put = self
            .conditional_put(OPERATION, item, |put| {
                put.condition_expression("attribute_not_exists(pk)")
            })
            .await?;
        Ok(matches!(put, ConditionalPut::Written))
    }

    async fn release_alert(&self, credential: &str, alert_key: &str) -> Result<(), StoreError> {
        const OPERATION: &str = "release alert";
        // Deleting a claim that is not there is not an error: releasing is idempotent.
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(alert_item_key(credential, alert_key)))
            .send()
            .await
            .map_err(|e| store_error(OPERATION, e))?;
        Ok(())
    }

    async fn list_alerts(&self, credential: &str) -> Result<Vec<String>, StoreError> {
        const OPERATION: &str = "list alerts";
        // Ascending sort key order (the default) is the port's ascending key order: DynamoDB
        // compares strings by UTF-8 bytes, as Rust's `String` does.
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(alert_pk(credential)))
            .consistent_read(true);
        collect_items(OPERATION, query, |item, operation| {
            Attributes::new(item, operation)
                .string("sk")
                .map(str::to_owned)
        })
        .await
    }
}
