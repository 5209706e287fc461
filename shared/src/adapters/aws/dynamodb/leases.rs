//! Leases: a conditional put that succeeds when the lease is free, expired or already ours.

use async_trait::async_trait;

use super::*;
use crate::ports::Leases;

#[async_trait]
impl Leases for DynamoStateStore {
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<LeaseOutcome, StoreError> {
        const OPERATION: &str = "acquire lease";
        let until_ms = epoch_millis(until);
        let mut item = lease_key(name);
        item.insert("owner".into(), s(owner));
        item.insert("until".into(), n(until_ms));
        item.insert(
            "ttl".into(),
            n(until_ms.div_euclid(1000) + LEASE_TTL_GRACE_SECONDS),
        );
        for _ in 0..LEASE_ATTEMPTS {
            let put = self
                .conditional_put(OPERATION, item.clone(), |put| {
                    // Free, expired (an expiry equal to `now` counts as expired, as in the memory
                    // store), or already ours.
                    put.condition_expression(
                        "attribute_not_exists(pk) OR #until <= :now OR #owner = :owner",
                    )
                    .expression_attribute_names("#until", "until")
                    .expression_attribute_names("#owner", "owner")
                    .expression_attribute_values(":now", n(epoch_millis(now)))
                    .expression_attribute_values(":owner", s(owner))
                })
                .await?;
            let ConditionalPut::Refused(returned) = put else {
                return Ok(LeaseOutcome::Acquired);
            };
            match self.existing(OPERATION, returned, lease_key(name)).await? {
                Some(holder) => {
                    let (owner, until) = lease_from_item(&holder, OPERATION)?;
                    return Ok(LeaseOutcome::HeldBy { owner, until });
                }
                // Released between our write and our read: try again.
                None => continue,
            }
        }
        Err(StoreError::Conflict {
            operation: OPERATION,
            detail: format!(
                "lease '{name}' changed hands {LEASE_ATTEMPTS} times while being acquired"
            ),
        })
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        const OPERATION: &str = "release lease";
        let delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(lease_key(name)))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        // Someone else holds it, or nobody does: releasing is then a no-op by contract.
        refusal_is_nothing_to_do(OPERATION, delete)
    }
}
