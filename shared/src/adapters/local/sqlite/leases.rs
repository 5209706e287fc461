//! Leases: an upsert that succeeds when the lease is free, expired or already ours.

use async_trait::async_trait;

use super::*;
use crate::ports::Leases;

#[async_trait]
impl Leases for SqliteStateStore {
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<LeaseOutcome, StoreError> {
        const OPERATION: &str = "acquire lease";
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.run(OPERATION, move |c| {
            // Free, expired (an expiry equal to `now` counts as expired, as in the other stores),
            // or already ours. A refused upsert changes no row; the holder is read instead.
            let holder = conditional_write(
                c,
                OPERATION,
                |transaction| {
                    transaction.execute(
                        "INSERT INTO leases (name, owner, until_ms) VALUES (:name, :owner, :until)
                         ON CONFLICT (name) DO UPDATE SET
                             owner = excluded.owner,
                             until_ms = excluded.until_ms
                         WHERE leases.until_ms <= :now OR leases.owner = :owner",
                        named_params! {
                            ":name": name,
                            ":owner": owner,
                            ":until": epoch_millis(until),
                            ":now": epoch_millis(now),
                        },
                    )
                },
                |transaction| {
                    transaction
                        .query_row(
                            "SELECT owner, until_ms FROM leases WHERE name = ?1",
                            [&name],
                            |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
                        )
                        .map_err(sql_error(OPERATION))
                },
            )?;
            let Some((holder, until_ms)) = holder else {
                return Ok(LeaseOutcome::Acquired);
            };
            Ok(LeaseOutcome::HeldBy {
                owner: holder,
                until: from_epoch_millis(until_ms).ok_or_else(|| StoreError::Malformed {
                    operation: OPERATION,
                    detail: format!(
                        "column 'until_ms' of lease '{name}' is out of range: {until_ms}"
                    ),
                })?,
            })
        })
        .await
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        const OPERATION: &str = "release lease";
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.run(OPERATION, move |c| {
            // Someone else's lease, or none: deleting nothing is the contract's no-op.
            c.execute(
                "DELETE FROM leases WHERE name = ?1 AND owner = ?2",
                (&name, &owner),
            )
            .map_err(sql_error(OPERATION))?;
            Ok(())
        })
        .await
    }
}
