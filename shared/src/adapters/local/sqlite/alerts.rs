//! Alert claims: an insert per credential and alert key, so each alert goes out once.

use async_trait::async_trait;

use super::*;
use crate::ports::AlertClaims;

#[async_trait]
impl AlertClaims for SqliteStateStore {
    async fn claim_alert(
        &self,
        credential: &str,
        alert_key: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const OPERATION: &str = "claim alert";
        let (credential, alert_key) = (credential.to_owned(), alert_key.to_owned());
        self.run(OPERATION, move |c| {
            let claimed_at = sortable_utc(now, "claimed_at", OPERATION)?;
            // One statement, so atomic (across processes too): inserting a claim that exists
            // changes no row.
            let inserted = c
                .execute(
                    "INSERT INTO alerts (credential, alert_key, claimed_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (credential, alert_key) DO NOTHING",
                    (&credential, &alert_key, &claimed_at),
                )
                .map_err(sql_error(OPERATION))?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn release_alert(&self, credential: &str, alert_key: &str) -> Result<(), StoreError> {
        const OPERATION: &str = "release alert";
        let (credential, alert_key) = (credential.to_owned(), alert_key.to_owned());
        self.run(OPERATION, move |c| {
            // Releasing a claim that is not there deletes nothing: releasing is idempotent.
            c.execute(
                "DELETE FROM alerts WHERE credential = ?1 AND alert_key = ?2",
                (&credential, &alert_key),
            )
            .map_err(sql_error(OPERATION))?;
            Ok(())
        })
        .await
    }

    async fn list_alerts(&self, credential: &str) -> Result<Vec<String>, StoreError> {
        const OPERATION: &str = "list alerts";
        let credential = credential.to_owned();
        self.run(OPERATION, move |c| {
            let mut statement = c
                .prepare("SELECT alert_key FROM alerts WHERE credential = ?1 ORDER BY alert_key")
                .map_err(sql_error(OPERATION))?;
            let keys = statement
                .query_map([&credential], |row| row.get(0))
                .map_err(sql_error(OPERATION))?
                .collect::<Result<Vec<String>, _>>()
                .map_err(sql_error(OPERATION))?;
            Ok(keys)
        })
        .await
    }
}
