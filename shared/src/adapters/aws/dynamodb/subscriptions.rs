//! Subscription records under the `SUBSCRIPTION` partition; the webhook reads them by id.

use async_trait::async_trait;

use super::*;
use crate::ports::{SubscriptionLookup, Subscriptions};

#[async_trait]
impl SubscriptionLookup for DynamoStateStore {
    async fn get_subscription(&self, id: &str) -> Result<Option<SubscriptionRecord>, StoreError> {
        const OPERATION: &str = "get subscription";
        self.get_item(OPERATION, subscription_key(id))
            .await?
            .map(|item| subscription_from_item(&item, OPERATION))
            .transpose()
    }
}

#[async_trait]
impl Subscriptions for DynamoStateStore {
    async fn put_subscription(&self, sub: &SubscriptionRecord) -> Result<(), StoreError> {
        const OPERATION: &str = "put subscription";
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(subscription_to_item(sub, OPERATION)?))
            .send()
            .await
            .map_err(|e| store_error(OPERATION, e))?;
        Ok(())
    }

    async fn list_subscriptions(&self) -> Result<Vec<SubscriptionRecord>, StoreError> {
        const OPERATION: &str = "list subscriptions";
        let mut subscriptions = self
            .query_prefix(
                OPERATION,
                SUBSCRIPTION_PK,
                SUBSCRIPTION_SK_PREFIX,
                subscription_from_item,
            )
            .await?;
        // The sort key orders by id alone; the port promises mailbox, folder, then id.
        subscriptions
            .sort_by(|a, b| (&a.mailbox, &a.folder, &a.id).cmp(&(&b.mailbox, &b.folder, &b.id)));
        Ok(subscriptions)
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError> {
        const OPERATION: &str = "delete subscription";
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(subscription_key(id)))
            // The old item tells us whether there was one, in the same call.
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| store_error(OPERATION, e))?;
        Ok(output.attributes.is_some_and(|a| !a.is_empty()))
    }
}
