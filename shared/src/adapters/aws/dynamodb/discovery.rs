//! Discovery rules and the latest run of each: JSON documents under the `DISCOVERY` partition,
//! `RULE#{id}` and `RUN#{id}`.

use async_trait::async_trait;

use super::*;
use crate::discovery::{DiscoverRule, DiscoveryRun};
use crate::ports::DiscoverRules;

#[async_trait]
impl DiscoverRules for DynamoStateStore {
    async fn put_discover_rule(&self, rule: &DiscoverRule) -> Result<(), StoreError> {
        const OPERATION: &str = "put discovery rule";
        let mut item = rule_key(&rule.id());
        item.insert("rule".into(), s(rule.to_json()));
        self.put(OPERATION, item).await
    }

    async fn list_discover_rules(&self) -> Result<Vec<DiscoverRule>, StoreError> {
        const OPERATION: &str = "list discovery rules";
        let mut rules = self
            .query_prefix(OPERATION, DISCOVERY_PK, RULE_PREFIX, |item, operation| {
                let a = Attributes::new(item, operation);
                DiscoverRule::from_json(a.string("rule")?)
                    .map_err(|detail| a.malformed("rule", &format!("is not a rule: {detail}")))
            })
            .await?;
        // The sort key orders by id already; sorting again keeps the port's promise explicit.
        rules.sort_by_key(DiscoverRule::id);
        Ok(rules)
    }

    async fn remove_discover_rule(&self, id: &str) -> Result<bool, StoreError> {
        const OPERATION: &str = "remove discovery rule";
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(run_of_rule_key(id)))
            .send()
            .await
            .map_err(|e| store_error(OPERATION, e))?;
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(rule_key(id)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| store_error(OPERATION, e))?;
        Ok(output.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn put_discovery_run(&self, run: &DiscoveryRun) -> Result<(), StoreError> {
        const OPERATION: &str = "put discovery run";
        let mut item = run_of_rule_key(&run.rule);
        item.insert("summary".into(), s(run.to_json()));
        self.put(OPERATION, item).await
    }

    async fn last_discovery_run(&self, rule: &str) -> Result<Option<DiscoveryRun>, StoreError> {
        const OPERATION: &str = "get discovery run";
        let Some(item) = self.get_item(OPERATION, run_of_rule_key(rule)).await? else {
            return Ok(None);
        };
        let a = Attributes::new(&item, OPERATION);
        DiscoveryRun::from_json(a.string("summary")?)
            .map(Some)
            .map_err(|detail| a.malformed("summary", &format!("is not a discovery run: {detail}")))
    }
}

const DISCOVERY_PK: &str = "DISCOVERY";
const RULE_PREFIX: &str = "RULE#";

fn rule_key(id: &str) -> Item {
    key(DISCOVERY_PK.to_owned(), format!("{RULE_PREFIX}{id}"))
}

fn run_of_rule_key(id: &str) -> Item {
    key(DISCOVERY_PK.to_owned(), format!("RUN#{id}"))
}
