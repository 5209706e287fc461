//! [`StateStore`] on one DynamoDB table (single-table design).
//!
//! | item           | pk                   | sk                           | other attributes |
//! |----------------|----------------------|------------------------------|------------------|
//! | mailbox config | `CONFIG`             | `MAILBOX#{address}#{folder}` | address, folder, action, processed_folder?, credential, enabled |
//! | message record | `MBX#{address}`      | `MSG#{message_id}`           | mailbox, message_id, folder, internet_message_id?, subject?, from?, received_at, size, sha256, blob_key, imported_at, state, gsi1pk, gsi1sk, pending_pk? |
//! | cursor         | `MBX#{address}`      | `CURSOR#{folder}`            | delta_link?, next_link? |
//! | last run       | `MBX#{address}`      | `RUN#LAST`                   | summary (JSON) |
//! | lease          | `LEASE#{name}`       | `LEASE`                      | owner, until (epoch ms), ttl (epoch s) |
//! | subscription   | `SUBSCRIPTION`       | `SUB#{id}`                   | id, mailbox, folder, credential, client_state, expires_at, notification_url, created_at |
//! | alert claim    | `ALERT#{credential}` | `{alert_key}`                | claimed_at |
//!
//! The GSI `by_received` (`gsi1pk` = `MBX#{address}`, `gsi1sk` = `RCV#{received_at}#{message_id}`)
//! lists a mailbox's recent messages by received time. The sparse GSI `pending` (`pending_pk` =
//! `MBX#{address}`, present only while a record is `stored`; range key `sk`) lists the records
//! whose after-import action may still be due. [`DynamoStateStore::create_table`] builds
//! exactly this table; the SAM template must define the same.
//!
//! Wire mapping (domain <-> `AttributeValue` maps) lives in this file and nowhere else.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ReturnValue, ReturnValuesOnConditionCheckFailure,
    ScalarAttributeType, StreamSpecification, StreamViewType, TimeToLiveSpecification,
    TimeToLiveStatus,
};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

use crate::adapters::{epoch_millis, from_epoch_millis};
use crate::domain::{
    AfterImport, ClientState, Cursor, FolderKey, MailboxAddress, MailboxConfig, MessageId,
    MessageRecord, RecordState, RunSummary, SubscriptionRecord,
};
use crate::ports::{CreateOutcome, LeaseOutcome, StateStore, StoreError};

/// Name of the global secondary index listing a mailbox's messages by received time.
pub const BY_RECEIVED_INDEX: &str = "by_received";

/// Name of the sparse GSI of records still `stored`.
pub const PENDING_INDEX: &str = "pending";

/// How long `create_table` waits for a new table to become ACTIVE.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);

/// Lease items outlive their expiry by a day before DynamoDB's TTL sweeps them: long enough that
/// an operator can still see who held a lease last, short enough that dead leases do not pile up.
const LEASE_TTL_GRACE_SECONDS: i64 = 86_400;

/// How often `acquire_lease` retries when the lease vanished between its write and its read.
const LEASE_ATTEMPTS: usize = 3;

type Item = HashMap<String, AttributeValue>;

/// A [`StateStore`] on a DynamoDB table laid out as described in the module docs.
#[derive(Clone, Debug)]
pub struct DynamoStateStore {
    client: Client,
    table: String,
}

impl DynamoStateStore {
    /// A store on `table`, which must already exist (see [`DynamoStateStore::create_table`]).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The DynamoDB operations this store makes (SDK method, the IAM action it needs), apart
    /// from [`DynamoStateStore::create_table`], which is for tests and dev tooling. A role that
    /// runs the store needs exactly these, on the table and its `pending` index (the only index
    /// it queries); `infra/template.yaml` grants them and `tests/tests/template.rs` checks it.
    /// `ReturnValues` and `ReturnValuesOnConditionCheckFailure` need no action of their own.
    pub const IAM_ACTIONS: &[(&str, &str)] = &[
        ("get_item", "dynamodb:GetItem"),
        ("put_item", "dynamodb:PutItem"),
        ("update_item", "dynamodb:UpdateItem"),
        ("delete_item", "dynamodb:DeleteItem"),
        ("query", "dynamodb:Query"),
    ];

    /// The table this store reads and writes.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates `table` with Mailroom's layout (on-demand billing, `pk`/`sk`, GSI `by_received`,
    /// TTL on `ttl`, a stream of new and old images), waits until it is ACTIVE and turns TTL on.
    /// Idempotent: an existing table is left as it is, apart from turning TTL on if it is off.
    ///
    /// For tests and dev tooling; deployments get the same table from the SAM template.
    pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
        const OPERATION: &str = "create table";
        let string_attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| unavailable(OPERATION, e))
        };
        let key = |name: &str, key_type: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .map_err(|e| unavailable(OPERATION, e))
        };
        // Both indexes project everything: records are small, and a query needs no second read.
        let index = |name: &str, hash: &str, range: &str| {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(hash, KeyType::Hash)?)
                .key_schema(key(range, KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(|e| unavailable(OPERATION, e))
        };
        let by_received = index(BY_RECEIVED_INDEX, "gsi1pk", "gsi1sk")?;
        let pending = index(PENDING_INDEX, "pending_pk", "sk")?;
        // The design asks for the stream so downstream consumers can react to new records; new
        // and old images let them see a record's `stored` -> `done` transition too.
        let stream = StreamSpecification::builder()
            .stream_enabled(true)
            .stream_view_type(StreamViewType::NewAndOldImages)
            .build()
            .map_err(|e| unavailable(OPERATION, e))?;

        let created = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(string_attribute("pk")?)
            .attribute_definitions(string_attribute("sk")?)
            .attribute_definitions(string_attribute("gsi1pk")?)
            .attribute_definitions(string_attribute("gsi1sk")?)
            .attribute_definitions(string_attribute("pending_pk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .global_secondary_indexes(by_received)
            .global_secondary_indexes(pending)
            .stream_specification(stream)
            .send()
            .await;
        match created {
            Ok(_) => {}
            // The table is there already (or being created by someone else): wait for it below.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) => {}
            Err(e) => return Err(unavailable(OPERATION, e)),
        }

        client
            .wait_until_table_exists()
            .table_name(table)
            .wait(TABLE_ACTIVE_TIMEOUT)
            .await
            .map_err(|e| unavailable(OPERATION, e))?;

        // TTL can only be set on an ACTIVE table, and setting it twice is a ValidationException,
        // so look first.
        let ttl = client
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .map_err(|e| unavailable(OPERATION, e))?;
        let ttl_on = ttl
            .time_to_live_description()
            .and_then(|d| d.time_to_live_status())
            .is_some_and(|s| matches!(s, TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling));
        if !ttl_on {
            let specification = TimeToLiveSpecification::builder()
                .attribute_name("ttl")
                .enabled(true)
                .build()
                .map_err(|e| unavailable(OPERATION, e))?;
            client
                .update_time_to_live()
                .table_name(table)
                .time_to_live_specification(specification)
                .send()
                .await
                .map_err(|e| unavailable(OPERATION, e))?;
        }
        Ok(())
    }

    async fn get_item(
        &self,
        operation: &'static str,
        key: Item,
    ) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(operation, e))?;
        Ok(output.item)
    }
}

#[async_trait]
impl StateStore for DynamoStateStore {
    async fn put_mailbox(&self, config: &MailboxConfig) -> Result<(), StoreError> {
        const OPERATION: &str = "put mailbox";
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(config_to_item(config)))
            .send()
            .await
            .map_err(|e| unavailable(OPERATION, e))?;
        Ok(())
    }

    async fn list_mailboxes(&self) -> Result<Vec<MailboxConfig>, StoreError> {
        const OPERATION: &str = "list mailboxes";
        let mut items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(CONFIG_PK))
            .expression_attribute_values(":prefix", s("MAILBOX#"))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut configs = Vec::new();
        while let Some(item) = items
            .try_next()
            .await
            .map_err(|e| unavailable(OPERATION, e))?
        {
            configs.push(config_from_item(&item, OPERATION)?);
        }
        // The sort key orders by `{address}#{folder}` as one string, which differs from ordering
        // by address then folder when an address sorts below `#` after a shared prefix. The port
        // promises the latter, so sort here (the list is small).
        configs.sort_by(|a, b| (&a.address, &a.folder).cmp(&(&b.address, &b.folder)));
        Ok(configs)
    }

    async fn remove_mailbox(&self, key: &FolderKey) -> Result<bool, StoreError> {
        const OPERATION: &str = "remove mailbox";
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(config_key(&key.mailbox, &key.folder)))
            // The old item tells us whether there was one, in the same call.
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| unavailable(OPERATION, e))?;
        Ok(output.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn create_record(&self, record: &MessageRecord) -> Result<CreateOutcome, StoreError> {
        const OPERATION: &str = "create record";
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(record_to_item(record, OPERATION)?))
            .condition_expression("attribute_not_exists(pk)")
            // On a duplicate, DynamoDB hands back the existing record inside the exception: the
            // caller gets `AlreadyStored(existing)` from the same atomic call, with no window in
            // which a separate read could see something else.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match put {
            Ok(_) => return Ok(CreateOutcome::Created),
            Err(err) => err,
        };
        let Some(failed) = err
            .as_service_error()
            .filter(|e| e.is_conditional_check_failed_exception())
        else {
            return Err(unavailable(OPERATION, err));
        };
        let returned = match failed {
            aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(
                e,
            ) => e.item().cloned(),
            _ => None,
        };
        // An emulator (or an old endpoint) may not return the item; a consistent read is the
        // fallback. Records are never deleted, so the read finds it.
        let existing = match returned {
            Some(item) if !item.is_empty() => item,
            _ => self
                .get_item(OPERATION, record_key(&record.mailbox, &record.message_id))
                .await?
                .ok_or_else(|| StoreError::Unavailable {
                    operation: OPERATION,
                    detail: format!(
                        "record {} of {} exists but could not be read back",
                        record.message_id, record.mailbox
                    ),
                })?,
        };
        Ok(CreateOutcome::AlreadyStored(Box::new(record_from_item(
            &existing, OPERATION,
        )?)))
    }

    async fn get_record(
        &self,
        mailbox: &MailboxAddress,
        id: &MessageId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        const OPERATION: &str = "get record";
        self.get_item(OPERATION, record_key(mailbox, id))
            .await?
            .map(|item| record_from_item(&item, OPERATION))
            .transpose()
    }

    async fn mark_done(&self, mailbox: &MailboxAddress, id: &MessageId) -> Result<(), StoreError> {
        const OPERATION: &str = "mark record done";
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(record_key(mailbox, id)))
            // Leaving the sparse `pending` index is what "done" means to the next run.
            .update_expression("SET #state = :done REMOVE pending_pk")
            // Without the condition an update of a missing record would create a stub item.
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":done", s(RecordState::Done.as_str()))
            .send()
            .await;
        match update {
            Ok(_) => Ok(()),
            // Like the memory store: marking a record that does not exist does nothing.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable(OPERATION, e)),
        }
    }

    async fn pending_records(
        &self,
        mailbox: &MailboxAddress,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        const OPERATION: &str = "list pending records";
        // A GSI read is eventually consistent: a record marked done a moment ago may still be
        // listed (its action is repeated, harmlessly), one stored a moment ago may be missed (the
        // next run finishes it).
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(PENDING_INDEX)
            .key_condition_expression("pending_pk = :pk")
            .expression_attribute_values(":pk", s(mailbox_pk(mailbox)));
        let mut records = collect_items(OPERATION, query, record_from_item).await?;
        records.retain(|r| r.state == RecordState::Stored);
        Ok(records)
    }

    async fn list_records(
        &self,
        mailbox: &MailboxAddress,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        const OPERATION: &str = "list records";
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(mailbox_pk(mailbox)))
            .expression_attribute_values(":prefix", s("MSG#"))
            .consistent_read(true);
        collect_items(OPERATION, query, record_from_item).await
    }

    async fn put_run(&self, run: &RunSummary) -> Result<(), StoreError> {
        const OPERATION: &str = "put run summary";
        let mut item = run_key(&run.mailbox);
        item.insert("summary".into(), s(run.to_json()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| unavailable(OPERATION, e))?;
        Ok(())
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

    async fn get_cursor(&self, key: &FolderKey) -> Result<Option<Cursor>, StoreError> {
        const OPERATION: &str = "get cursor";
        self.get_item(OPERATION, cursor_key(key))
            .await?
            .map(|item| cursor_from_item(&item, OPERATION))
            .transpose()
    }

    async fn put_cursor(&self, key: &FolderKey, cursor: &Cursor) -> Result<(), StoreError> {
        const OPERATION: &str = "put cursor";
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(cursor_to_item(key, cursor)))
            .send()
            .await
            .map_err(|e| unavailable(OPERATION, e))?;
        Ok(())
    }

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
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item.clone()))
                // Free, expired (an expiry equal to `now` counts as expired, as in the memory
                // store), or already ours.
                .condition_expression(
                    "attribute_not_exists(pk) OR #until <= :now OR #owner = :owner",
                )
                .expression_attribute_names("#until", "until")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":now", n(epoch_millis(now)))
                .expression_attribute_values(":owner", s(owner))
                // The current holder comes back in the exception, atomically with the refusal.
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let err = match put {
                Ok(_) => return Ok(LeaseOutcome::Acquired),
                Err(err) => err,
            };
            let Some(failed) = err
                .as_service_error()
                .filter(|e| e.is_conditional_check_failed_exception())
            else {
                return Err(unavailable(OPERATION, err));
            };
            let returned = match failed {
                aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(e) => {
                    e.item().cloned()
                }
                _ => None,
            };
            let holder = match returned {
                Some(item) if !item.is_empty() => Some(item),
                _ => self.get_item(OPERATION, lease_key(name)).await?,
            };
            match holder {
                Some(item) => {
                    let (owner, until) = lease_from_item(&item, OPERATION)?;
                    return Ok(LeaseOutcome::HeldBy { owner, until });
                }
                // Released between our write and our read: try again.
                None => continue,
            }
        }
        Err(StoreError::Unavailable {
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
        match delete {
            Ok(_) => Ok(()),
            // Someone else holds it, or nobody does: releasing is then a no-op by contract.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable(OPERATION, e)),
        }
    }

    async fn put_subscription(&self, sub: &SubscriptionRecord) -> Result<(), StoreError> {
        const OPERATION: &str = "put subscription";
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(subscription_to_item(sub, OPERATION)?))
            .send()
            .await
            .map_err(|e| unavailable(OPERATION, e))?;
        Ok(())
    }

    async fn get_subscription(&self, id: &str) -> Result<Option<SubscriptionRecord>, StoreError> {
        const OPERATION: &str = "get subscription";
        self.get_item(OPERATION, subscription_key(id))
            .await?
            .map(|item| subscription_from_item(&item, OPERATION))
            .transpose()
    }

    async fn list_subscriptions(&self) -> Result<Vec<SubscriptionRecord>, StoreError> {
        const OPERATION: &str = "list subscriptions";
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(SUBSCRIPTION_PK))
            .expression_attribute_values(":prefix", s(SUBSCRIPTION_SK_PREFIX))
            .consistent_read(true);
        let mut subscriptions = collect_items(OPERATION, query, subscription_from_item).await?;
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
            .map_err(|e| unavailable(OPERATION, e))?;
        Ok(output.attributes.is_some_and(|a| !a.is_empty()))
    }

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
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // Only the first claim writes: the condition is what makes an alert go out once.
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(unavailable(OPERATION, e)),
        }
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
            .map_err(|e| unavailable(OPERATION, e))?;
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

/// An SDK error as `Unavailable`. `DisplayErrorContext` walks the source chain: the bare `SdkError`
/// Display says only "service error".
fn unavailable(operation: &'static str, err: impl std::error::Error) -> StoreError {
    StoreError::Unavailable {
        operation,
        detail: DisplayErrorContext(err).to_string(),
    }
}

// ---- Keys -------------------------------------------------------------------------------------

const CONFIG_PK: &str = "CONFIG";

fn mailbox_pk(mailbox: &MailboxAddress) -> String {
    format!("MBX#{mailbox}")
}

fn key(pk: String, sk: String) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn config_key(mailbox: &MailboxAddress, folder: &str) -> Item {
    key(CONFIG_PK.to_owned(), format!("MAILBOX#{mailbox}#{folder}"))
}

fn record_key(mailbox: &MailboxAddress, id: &MessageId) -> Item {
    key(mailbox_pk(mailbox), format!("MSG#{id}"))
}

fn cursor_key(folder: &FolderKey) -> Item {
    key(
        mailbox_pk(&folder.mailbox),
        format!("CURSOR#{}", folder.folder),
    )
}

/// Runs a query through every page, turning each item into a `T` with `from_item`.
async fn collect_items<T>(
    operation: &'static str,
    query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    from_item: impl Fn(&Item, &'static str) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut items = query.into_paginator().items().send();
    let mut collected = Vec::new();
    while let Some(item) = items
        .try_next()
        .await
        .map_err(|e| unavailable(operation, e))?
    {
        collected.push(from_item(&item, operation)?);
    }
    Ok(collected)
}

fn run_key(mailbox: &MailboxAddress) -> Item {
    key(mailbox_pk(mailbox), "RUN#LAST".to_owned())
}

fn lease_key(name: &str) -> Item {
    key(format!("LEASE#{name}"), "LEASE".to_owned())
}

const SUBSCRIPTION_PK: &str = "SUBSCRIPTION";
const SUBSCRIPTION_SK_PREFIX: &str = "SUB#";

fn subscription_key(id: &str) -> Item {
    key(
        SUBSCRIPTION_PK.to_owned(),
        format!("{SUBSCRIPTION_SK_PREFIX}{id}"),
    )
}

fn alert_pk(credential: &str) -> String {
    format!("ALERT#{credential}")
}

fn alert_item_key(credential: &str, alert_key: &str) -> Item {
    key(alert_pk(credential), alert_key.to_owned())
}

// ---- Wire mapping: domain -> item -------------------------------------------------------------

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn put_optional(item: &mut Item, name: &str, value: Option<&str>) {
    if let Some(value) = value {
        item.insert(name.to_owned(), s(value));
    }
}

fn config_to_item(config: &MailboxConfig) -> Item {
    let mut item = config_key(&config.address, &config.folder);
    item.insert("address".into(), s(config.address.as_str()));
    item.insert("folder".into(), s(&config.folder));
    item.insert("action".into(), s(config.action.name()));
    put_optional(
        &mut item,
        "processed_folder",
        config.action.processed_folder(),
    );
    item.insert("credential".into(), s(&config.credential));
    item.insert("enabled".into(), AttributeValue::Bool(config.enabled));
    item
}

fn record_to_item(record: &MessageRecord, operation: &'static str) -> Result<Item, StoreError> {
    let received_at = rfc3339(record.received_at, "received_at", operation)?;
    let mut item = record_key(&record.mailbox, &record.message_id);
    item.insert("mailbox".into(), s(record.mailbox.as_str()));
    item.insert("message_id".into(), s(record.message_id.as_str()));
    item.insert("folder".into(), s(&record.folder));
    put_optional(
        &mut item,
        "internet_message_id",
        record.internet_message_id.as_deref(),
    );
    put_optional(&mut item, "subject", record.subject.as_deref());
    put_optional(&mut item, "from", record.from.as_deref());
    item.insert("received_at".into(), s(received_at));
    item.insert("size".into(), n(record.size));
    item.insert("sha256".into(), s(&record.sha256));
    item.insert("blob_key".into(), s(&record.blob_key));
    item.insert(
        "imported_at".into(),
        s(rfc3339(record.imported_at, "imported_at", operation)?),
    );
    item.insert("state".into(), s(record.state.as_str()));
    if record.state == RecordState::Stored {
        item.insert("pending_pk".into(), s(mailbox_pk(&record.mailbox)));
    }
    item.insert("gsi1pk".into(), s(mailbox_pk(&record.mailbox)));
    item.insert(
        "gsi1sk".into(),
        s(format!(
            "RCV#{}#{}",
            sortable_utc(record.received_at, operation)?,
            record.message_id
        )),
    );
    Ok(item)
}

fn cursor_to_item(key: &FolderKey, cursor: &Cursor) -> Item {
    let mut item = cursor_key(key);
    put_optional(&mut item, "delta_link", cursor.delta_link.as_deref());
    put_optional(&mut item, "next_link", cursor.next_link.as_deref());
    item
}

fn subscription_to_item(
    sub: &SubscriptionRecord,
    operation: &'static str,
) -> Result<Item, StoreError> {
    let mut item = subscription_key(&sub.id);
    item.insert("id".into(), s(&sub.id));
    item.insert("mailbox".into(), s(sub.mailbox.as_str()));
    item.insert("folder".into(), s(&sub.folder));
    item.insert("client_state".into(), s(sub.client_state.expose()));
    item.insert(
        "expires_at".into(),
        s(rfc3339(sub.expires_at, "expires_at", operation)?),
    );
    item.insert("notification_url".into(), s(&sub.notification_url));
    item.insert("credential".into(), s(&sub.credential));
    item.insert(
        "created_at".into(),
        s(rfc3339(sub.created_at, "created_at", operation)?),
    );
    Ok(item)
}

/// RFC 3339 in UTC, full precision (what the record attribute holds).
fn rfc3339(
    at: OffsetDateTime,
    attribute: &str,
    operation: &'static str,
) -> Result<String, StoreError> {
    at.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|e| StoreError::Malformed {
            operation,
            detail: format!("attribute '{attribute}' cannot be written as RFC 3339: {e}"),
        })
}

/// RFC 3339 in UTC with a fixed width, to whole seconds, for the index sort key. Plain RFC 3339
/// drops a zero fraction, and `10:00:00.5Z` sorts before `10:00:00Z` as a string; Graph gives
/// received times to the second anyway, and the message id after it keeps the key unique.
fn sortable_utc(at: OffsetDateTime, operation: &'static str) -> Result<String, StoreError> {
    at.to_offset(UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .map_err(|e| StoreError::Malformed {
            operation,
            detail: format!("attribute 'gsi1sk' cannot be written: {e}"),
        })
}

// ---- Wire mapping: item -> domain -------------------------------------------------------------

/// Read access to one item's attributes; every failure names the attribute and the item's key.
struct Attributes<'a> {
    item: &'a Item,
    operation: &'static str,
}

impl<'a> Attributes<'a> {
    fn new(item: &'a Item, operation: &'static str) -> Self {
        Self { item, operation }
    }

    fn malformed(&self, attribute: &str, problem: &str) -> StoreError {
        let key_part = |name: &str| match self.item.get(name) {
            Some(AttributeValue::S(v)) => v.as_str(),
            _ => "?",
        };
        StoreError::Malformed {
            operation: self.operation,
            detail: format!(
                "attribute '{attribute}' of item pk='{}' sk='{}' {problem}",
                key_part("pk"),
                key_part("sk")
            ),
        }
    }

    fn optional_string(&self, attribute: &str) -> Result<Option<&'a str>, StoreError> {
        match self.item.get(attribute) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(value)) => Ok(Some(value)),
            Some(_) => Err(self.malformed(attribute, "is not a string")),
        }
    }

    fn string(&self, attribute: &str) -> Result<&'a str, StoreError> {
        self.optional_string(attribute)?
            .ok_or_else(|| self.malformed(attribute, "is missing"))
    }

    fn number<T: std::str::FromStr>(&self, attribute: &str) -> Result<T, StoreError> {
        match self.item.get(attribute) {
            None => Err(self.malformed(attribute, "is missing")),
            Some(AttributeValue::N(value)) => value
                .parse()
                .map_err(|_| self.malformed(attribute, "is not a number in range")),
            Some(_) => Err(self.malformed(attribute, "is not a number")),
        }
    }

    fn boolean(&self, attribute: &str) -> Result<bool, StoreError> {
        match self.item.get(attribute) {
            None => Err(self.malformed(attribute, "is missing")),
            Some(AttributeValue::Bool(value)) => Ok(*value),
            Some(_) => Err(self.malformed(attribute, "is not a boolean")),
        }
    }

    fn time(&self, attribute: &str) -> Result<OffsetDateTime, StoreError> {
        OffsetDateTime::parse(self.string(attribute)?, &Rfc3339)
            .map_err(|_| self.malformed(attribute, "is not an RFC 3339 time"))
    }

    fn mailbox(&self, attribute: &str) -> Result<MailboxAddress, StoreError> {
        MailboxAddress::parse(self.string(attribute)?)
            .map_err(|_| self.malformed(attribute, "is not a mailbox address"))
    }
}

fn config_from_item(item: &Item, operation: &'static str) -> Result<MailboxConfig, StoreError> {
    let a = Attributes::new(item, operation);
    let action =
        AfterImport::from_parts(a.string("action")?, a.optional_string("processed_folder")?)
            .map_err(|e| a.malformed(e.field, &format!("is invalid: expected {}", e.expected)))?;
    Ok(MailboxConfig {
        address: a.mailbox("address")?,
        folder: a.string("folder")?.to_owned(),
        action,
        credential: a.string("credential")?.to_owned(),
        enabled: a.boolean("enabled")?,
    })
}

fn record_from_item(item: &Item, operation: &'static str) -> Result<MessageRecord, StoreError> {
    let a = Attributes::new(item, operation);
    let owned = |v: Option<&str>| v.map(str::to_owned);
    Ok(MessageRecord {
        mailbox: a.mailbox("mailbox")?,
        message_id: MessageId::new(a.string("message_id")?),
        folder: a.string("folder")?.to_owned(),
        internet_message_id: owned(a.optional_string("internet_message_id")?),
        subject: owned(a.optional_string("subject")?),
        from: owned(a.optional_string("from")?),
        received_at: a.time("received_at")?,
        size: a.number("size")?,
        sha256: a.string("sha256")?.to_owned(),
        blob_key: a.string("blob_key")?.to_owned(),
        imported_at: a.time("imported_at")?,
        state: RecordState::parse(a.string("state")?)
            .ok_or_else(|| a.malformed("state", "is not one of stored, done"))?,
    })
}

fn cursor_from_item(item: &Item, operation: &'static str) -> Result<Cursor, StoreError> {
    let a = Attributes::new(item, operation);
    Ok(Cursor {
        delta_link: a.optional_string("delta_link")?.map(str::to_owned),
        next_link: a.optional_string("next_link")?.map(str::to_owned),
    })
}

/// Errors name the attribute and the item's key, never an attribute's value: the client state is
/// a secret.
fn subscription_from_item(
    item: &Item,
    operation: &'static str,
) -> Result<SubscriptionRecord, StoreError> {
    let a = Attributes::new(item, operation);
    Ok(SubscriptionRecord {
        id: a.string("id")?.to_owned(),
        mailbox: a.mailbox("mailbox")?,
        folder: a.string("folder")?.to_owned(),
        credential: a.string("credential")?.to_owned(),
        client_state: ClientState::from_stored(a.string("client_state")?),
        expires_at: a.time("expires_at")?,
        notification_url: a.string("notification_url")?.to_owned(),
        created_at: a.time("created_at")?,
    })
}

fn lease_from_item(
    item: &Item,
    operation: &'static str,
) -> Result<(String, OffsetDateTime), StoreError> {
    let a = Attributes::new(item, operation);
    let until_ms: i64 = a.number("until")?;
    let until =
        from_epoch_millis(until_ms).ok_or_else(|| a.malformed("until", "is out of range"))?;
    Ok((a.string("owner")?.to_owned(), until))
}

#[cfg(test)]
mod tests {

    /// The DynamoDB actions the bodies of the named `StateStore` methods in this file call for
    /// (following `self.get_item`, the one helper that wraps an SDK call).
    fn actions_of(methods: &[&str]) -> std::collections::BTreeSet<&'static str> {
        let source = include_str!("dynamodb.rs");
        let calls = [
            (".get_item()", "dynamodb:GetItem"),
            ("self.get_item(", "dynamodb:GetItem"),
            (".query()", "dynamodb:Query"),
            (".put_item()", "dynamodb:PutItem"),
            (".update_item()", "dynamodb:UpdateItem"),
            (".delete_item()", "dynamodb:DeleteItem"),
            (".scan()", "dynamodb:Scan"),
        ];
        let mut actions = std::collections::BTreeSet::new();
        for method in methods {
            let start = source
                .find(&format!("    async fn {method}("))
                .unwrap_or_else(|| panic!("no method {method}"));
            let body = &source[start..];
            let body = &body[..body.find("\n    }\n").unwrap()];
            let found: Vec<_> = calls.iter().filter(|(c, _)| body.contains(c)).collect();
            assert!(!found.is_empty(), "{method} makes no call this test knows");
            actions.extend(found.iter().map(|(_, a)| *a));
        }
        actions
    }

    fn dynamodb_part(actions: &[&'static str]) -> std::collections::BTreeSet<&'static str> {
        actions
            .iter()
            .copied()
            .filter(|a| a.starts_with("dynamodb:"))
            .collect()
    }

    /// The webhook's role gets exactly these: its store access is typed down to
    /// `SubscriptionLookup::get_subscription`.
    #[test]
    fn the_webhooks_dynamodb_actions_are_those_of_get_subscription() {
        assert_eq!(
            actions_of(&["get_subscription"]),
            dynamodb_part(crate::push::Webhook::IAM_ACTIONS)
        );
    }

    /// The secret-expiry function's role gets exactly these: its store access is typed down to
    /// `expiry::AlertState`.
    #[test]
    fn the_expiry_checks_dynamodb_actions_are_those_of_its_alert_state() {
        assert_eq!(
            actions_of(&[
                "list_mailboxes",
                "list_alerts",
                "claim_alert",
                "release_alert"
            ]),
            dynamodb_part(crate::expiry::ExpiryChecker::IAM_ACTIONS)
        );
    }
    use super::*;
    use time::macros::datetime;

    fn record() -> MessageRecord {
        crate::domain::sample_record(datetime!(2025-03-04 23:30:15.25 -02:00))
    }

    #[test]
    fn iam_actions_cover_exactly_the_operations_called() {
        let called = crate::adapters::aws::sdk_calls(
            include_str!("dynamodb.rs"),
            &["pub async fn create_table"],
        );
        assert_eq!(
            called,
            crate::adapters::aws::listed_calls(DynamoStateStore::IAM_ACTIONS)
        );
    }

    #[test]
    fn records_round_trip_through_items() {
        let record = record();
        let item = record_to_item(&record, "test").unwrap();
        assert_eq!(item["pk"], s("MBX#a@contoso.com"));
        assert_eq!(item["sk"], s("MSG#AAMk/1+="));
        assert_eq!(item["gsi1sk"], s("RCV#2025-03-05T01:30:15Z#AAMk/1+="));
        assert_eq!(item["received_at"], s("2025-03-05T01:30:15.25Z"));
        assert!(!item.contains_key("subject"));
        assert_eq!(record_from_item(&item, "test").unwrap(), record);
    }

    #[test]
    fn configs_round_trip_through_items() {
        for action in [
            AfterImport::Move {
                processed_folder: "Inbox/Done".into(),
            },
            AfterImport::MarkRead,
            AfterImport::Delete,
            AfterImport::None,
        ] {
            let config = MailboxConfig {
                address: MailboxAddress::parse("a@contoso.com").unwrap(),
                folder: "Inbox/Reports".into(),
                action,
                credential: "contoso".into(),
                enabled: false,
            };
            let item = config_to_item(&config);
            assert_eq!(item["sk"], s("MAILBOX#a@contoso.com#Inbox/Reports"));
            assert_eq!(config_from_item(&item, "test").unwrap(), config);
        }
    }

    #[test]
    fn malformed_items_name_the_attribute_and_the_key() {
        let mut item = record_to_item(&record(), "get record").unwrap();
        item.insert("size".into(), s("big"));
        let err = record_from_item(&item, "get record")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'size'"), "{err}");
        assert!(
            err.contains("pk='MBX#a@contoso.com' sk='MSG#AAMk/1+='"),
            "{err}"
        );

        item.remove("received_at");
        let err = record_from_item(&item, "get record")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'received_at'") && err.contains("missing"),
            "{err}"
        );

        let mut config = config_to_item(&MailboxConfig {
            address: MailboxAddress::parse("a@contoso.com").unwrap(),
            folder: "Inbox".into(),
            action: AfterImport::None,
            credential: "c".into(),
            enabled: true,
        });
        config.insert("action".into(), s("archive"));
        let err = config_from_item(&config, "list mailboxes")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'action'") && err.contains("move, mark_read"),
            "{err}"
        );
    }

    const CLIENT_STATE: &str = "s3cr3t-client-state-0123456789abcdef";

    fn subscription() -> SubscriptionRecord {
        SubscriptionRecord {
            id: "7f105c7d-2dc5-4530-97cd-4e7ae6534c07".into(),
            mailbox: MailboxAddress::parse("a@contoso.com").unwrap(),
            folder: "Inbox/Reports".into(),
            credential: "main".into(),
            client_state: ClientState::from_stored(CLIENT_STATE),
            expires_at: datetime!(2025-03-07 23:30:15.25 -02:00),
            notification_url: "https://mailroom.example/notify".into(),
            created_at: datetime!(2025-03-05 01:31 UTC),
        }
    }

    #[test]
    fn subscriptions_round_trip_through_items() {
        let sub = subscription();
        let item = subscription_to_item(&sub, "test").unwrap();
        assert_eq!(item["pk"], s("SUBSCRIPTION"));
        assert_eq!(item["sk"], s("SUB#7f105c7d-2dc5-4530-97cd-4e7ae6534c07"));
        assert_eq!(item["client_state"], s(CLIENT_STATE));
        assert_eq!(item["expires_at"], s("2025-03-08T01:30:15.25Z"));
        assert_eq!(item["created_at"], s("2025-03-05T01:31:00Z"));
        let back = subscription_from_item(&item, "test").unwrap();
        assert_eq!(back.client_state.expose(), CLIENT_STATE);
        assert_eq!(back, sub);
    }

    #[test]
    fn malformed_subscription_items_name_the_attribute_not_the_client_state() {
        let mut item = subscription_to_item(&subscription(), "get subscription").unwrap();
        item.insert("expires_at".into(), s("soon"));
        let err = subscription_from_item(&item, "get subscription").unwrap_err();
        let StoreError::Malformed { operation, detail } = &err else {
            panic!("expected Malformed, got {err:?}");
        };
        assert_eq!(*operation, "get subscription");
        assert!(detail.contains("'expires_at'"), "{detail}");
        assert!(
            detail.contains("pk='SUBSCRIPTION' sk='SUB#7f105c7d"),
            "{detail}"
        );
        assert!(!format!("{err} {err:?}").contains(CLIENT_STATE), "{err:?}");

        let mut item = subscription_to_item(&subscription(), "list subscriptions").unwrap();
        item.insert("client_state".into(), n(42));
        let err = subscription_from_item(&item, "list subscriptions").unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("'client_state'"), "{shown}");
        assert!(!shown.contains(CLIENT_STATE), "{shown}");

        item.remove("client_state");
        let err = subscription_from_item(&item, "list subscriptions")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'client_state'") && err.contains("missing"),
            "{err}"
        );
    }

    #[test]
    fn alert_claims_are_keyed_by_credential_and_alert_key() {
        let item = alert_item_key("contoso", "2026-12-01T00:00:00Z#14");
        assert_eq!(item["pk"], s("ALERT#contoso"));
        assert_eq!(item["sk"], s("2026-12-01T00:00:00Z#14"));
    }

    #[test]
    fn lease_times_are_epoch_milliseconds() {
        let at = datetime!(2025-01-01 00:00:01.5 UTC);
        assert_eq!(epoch_millis(at), 1_735_689_601_500);
        let item = HashMap::from([
            ("owner".to_owned(), s("me")),
            ("until".to_owned(), n(epoch_millis(at))),
        ]);
        assert_eq!(lease_from_item(&item, "test").unwrap(), ("me".into(), at));
    }
}
