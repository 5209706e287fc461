//! Discovery rules and the latest run of each: the `discover_rules` and `discovery_runs` tables,
//! each row a JSON document keyed by the rule's id.

use async_trait::async_trait;

use super::*;
use crate::discovery::{DiscoverRule, DiscoveryRun};
use crate::ports::DiscoverRules;

#[async_trait]
impl DiscoverRules for SqliteStateStore {
    async fn put_discover_rule(&self, rule: &DiscoverRule) -> Result<(), StoreError> {
        const OPERATION: &str = "put discovery rule";
        let (id, json) = (rule.id(), rule.to_json());
        self.run(OPERATION, move |c| {
            c.execute(
                "INSERT INTO discover_rules (id, rule) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET rule = excluded.rule",
                (&id, &json),
            )
            .map_err(sql_error(OPERATION))?;
            Ok(())
        })
        .await
    }

    async fn list_discover_rules(&self) -> Result<Vec<DiscoverRule>, StoreError> {
        const OPERATION: &str = "list discovery rules";
        self.run(OPERATION, move |c| {
            let mut statement = c
                .prepare("SELECT id, rule FROM discover_rules ORDER BY id")
                .map_err(sql_error(OPERATION))?;
            let rows = statement
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })
                .map_err(sql_error(OPERATION))?;
            let mut rules = Vec::new();
            for row in rows {
                let (id, json) = row.map_err(sql_error(OPERATION))?;
                rules.push(DiscoverRule::from_json(&json).map_err(|detail| {
                    StoreError::Malformed {
                        operation: OPERATION,
                        detail: format!("discovery rule '{id}': {detail}"),
                    }
                })?);
            }
            Ok(rules)
        })
        .await
    }

    async fn remove_discover_rule(&self, id: &str) -> Result<bool, StoreError> {
        const OPERATION: &str = "remove discovery rule";
        let id = id.to_owned();
        self.run(OPERATION, move |c| {
            c.execute("DELETE FROM discovery_runs WHERE rule = ?1", [&id])
                .map_err(sql_error(OPERATION))?;
            let removed = c
                .execute("DELETE FROM discover_rules WHERE id = ?1", [&id])
                .map_err(sql_error(OPERATION))?;
            Ok(removed > 0)
        })
        .await
    }

    async fn put_discovery_run(&self, run: &DiscoveryRun) -> Result<(), StoreError> {
        const OPERATION: &str = "put discovery run";
        let (rule, json) = (run.rule.clone(), run.to_json());
        self.run(OPERATION, move |c| {
            c.execute(
                "INSERT INTO discovery_runs (rule, summary) VALUES (?1, ?2)
                 ON CONFLICT (rule) DO UPDATE SET summary = excluded.summary",
                (&rule, &json),
            )
            .map_err(sql_error(OPERATION))?;
            Ok(())
        })
        .await
    }

    async fn last_discovery_run(&self, rule: &str) -> Result<Option<DiscoveryRun>, StoreError> {
        const OPERATION: &str = "get discovery run";
        let rule = rule.to_owned();
        self.run(OPERATION, move |c| {
            let summary: Option<String> = c
                .query_row(
                    "SELECT summary FROM discovery_runs WHERE rule = ?1",
                    [&rule],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql_error(OPERATION))?;
            summary
                .map(|json| {
                    DiscoveryRun::from_json(&json).map_err(|detail| StoreError::Malformed {
                        operation: OPERATION,
                        detail: format!("latest run of discovery rule '{rule}': {detail}"),
                    })
                })
                .transpose()
        })
        .await
    }
}
