//! [`crate::ports::StateStore`] on one DynamoDB table (single-table design).
//!
//! | item           | pk                   | sk                           | other attributes |
//! |----------------|----------------------|------------------------------|------------------|
//! | mailbox config | `CONFIG`             | `MAILBOX#{address}#{folder}` | address, folder, action, processed_folder?, credential, enabled, discovered_by? |
//! | message record | `MBX#{address}`      | `MSG#{message_id}`           | mailbox, message_id, folder, internet_message_id?, subject?, from?, received_at, size, sha256, blob_key, imported_at, state, gsi1pk, gsi1sk, pending_pk? |
//! | cursor         | `MBX#{address}`      | `CURSOR#{folder}`            | delta_link?, next_link? |
//! | last run       | `MBX#{address}`      | `RUN#LAST`                   | summary (JSON) |
//! | lease          | `LEASE#{name}`       | `LEASE`                      | owner, until (epoch ms), ttl (epoch s) |
//! | subscription   | `SUBSCRIPTION`       | `SUB#{id}`                   | id, mailbox, folder, credential, client_state, expires_at, notification_url, created_at |
//! | alert claim    | `ALERT#{credential}` | `{alert_key}`                | claimed_at |
//! | discovery rule | `DISCOVERY`          | `RULE#{rule id}`             | rule (JSON) |
//! | discovery run  | `DISCOVERY`          | `RUN#{rule id}`              | summary (JSON) |
//! | outbox event   | `MBX#{address}`      | `EVENT#{message_id}`         | event (JSON) |
//!
//! The GSI `by_received` (`gsi1pk` = `MBX#{address}`, `gsi1sk` = `RCV#{received_at}#{message_id}`)
//! lists a mailbox's recent messages by received time. The sparse GSI `pending` (`pending_pk` =
//! `MBX#{address}`, present only while a record is `stored`; range key `sk`) lists the records
//! whose after-import action may still be due. [`DynamoStateStore::create_table`] builds
//! exactly this table; the SAM template must define the same.
//!
//! Each capability of the store is implemented in its own file (`mailboxes.rs`, `records.rs`,
//! `runs.rs`, `cursors.rs`, `leases.rs`, `subscriptions.rs`, `alerts.rs`, `discovery.rs`, `events.rs`); the keys, the wire
//! mapping (domain <-> `AttributeValue` maps), the error mapping and the conditional put they share
//! live in this file and nowhere else.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
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
use crate::ports::{CreateOutcome, LeaseOutcome, StoreError};

mod alerts;
mod cursors;
mod discovery;
mod events;
mod leases;
mod mailboxes;
mod records;
mod runs;
mod subscriptions;

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
                .map_err(|e| invalid_request(OPERATION, e))
        };
        let key = |name: &str, key_type: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .map_err(|e| invalid_request(OPERATION, e))
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
                .map_err(|e| invalid_request(OPERATION, e))
        };
        let by_received = index(BY_RECEIVED_INDEX, "gsi1pk", "gsi1sk")?;
        let pending = index(PENDING_INDEX, "pending_pk", "sk")?;
        // The design asks for the stream so downstream consumers can react to new records; new
        // and old images let them see a record's `stored` -> `done` transition too.
        let stream = StreamSpecification::builder()
            .stream_enabled(true)
            .stream_view_type(StreamViewType::NewAndOldImages)
            .build()
            .map_err(|e| invalid_request(OPERATION, e))?;

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
            Err(e) => return Err(store_error(OPERATION, e)),
        }

        client
            .wait_until_table_exists()
            .table_name(table)
            .wait(TABLE_ACTIVE_TIMEOUT)
            .await
            .map_err(|e| invalid_request(OPERATION, e))?;

        // TTL can only be set on an ACTIVE table, and setting it twice is a ValidationException,
        // so look first.
        let ttl = client
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .map_err(|e| store_error(OPERATION, e))?;
        let ttl_on = ttl
            .time_to_live_description()
            .and_then(|d| d.time_to_live_status())
            .is_some_and(|s| matches!(s, TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling));
        if !ttl_on {
            let specification = TimeToLiveSpecification::builder()
                .attribute_name("ttl")
                .enabled(true)
                .build()
                .map_err(|e| invalid_request(OPERATION, e))?;
            client
                .update_time_to_live()
                .table_name(table)
                .time_to_live_specification(specification)
                .send()
                .await
                .map_err(|e| store_error(OPERATION, e))?;
        }
        Ok(())
    }

    /// Puts `item` if `condition` (the expression and its names and values, set on the builder)
    /// holds. When it does not, DynamoDB hands back the item that stood in the way inside the
    /// exception, atomically with the refusal; [`DynamoStateStore::existing`] reads it when an
    /// endpoint leaves it out. The one conditional write of this adapter.
    async fn conditional_put(
        &self,
        operation: &'static str,
        item: Item,
        condition: impl FnOnce(PutItemFluentBuilder) -> PutItemFluentBuilder,
    ) -> Result<ConditionalPut, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let err = match condition(put).send().await {
            Ok(_) => return Ok(ConditionalPut::Written),
            Err(err) => err,
        };
        match err.as_service_error() {
            Some(PutItemError::ConditionalCheckFailedException(refused)) => Ok(
                ConditionalPut::Refused(refused.item().filter(|i| !i.is_empty()).cloned()),
            ),
            _ => Err(store_error(operation, err)),
        }
    }

    /// The item a refused [`DynamoStateStore::conditional_put`] returned, else a consistent read
    /// of `key` (an emulator or an old endpoint may not return it).
    async fn existing(
        &self,
        operation: &'static str,
        returned: Option<Item>,
        key: Item,
    ) -> Result<Option<Item>, StoreError> {
        match returned {
            Some(item) => Ok(Some(item)),
            None => self.get_item(operation, key).await,
        }
    }

    /// Every item of partition `pk` whose sort key starts with `prefix`, read consistently
    /// through every page, each turned into a `T` with `from_item`.
    async fn query_prefix<T>(
        &self,
        operation: &'static str,
        pk: &str,
        prefix: &str,
        from_item: impl Fn(&Item, &'static str) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":prefix", s(prefix))
            .consistent_read(true);
        collect_items(operation, query, from_item).await
    }

    /// Creates or replaces an item, unconditionally.
    async fn put(&self, operation: &'static str, item: Item) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| store_error(operation, e))?;
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
            .map_err(|e| store_error(operation, e))?;
        Ok(output.item)
    }
}

/// An SDK error as `Unavailable`. `DisplayErrorContext` walks the source chain: the bare `SdkError`
/// Display says only "service error".
/// A request that could not be built (a bug, not the service's answer).
fn invalid_request(operation: &'static str, err: impl std::error::Error) -> StoreError {
    StoreError::unavailable(operation, err.to_string())
}

/// What a conditional put did.
enum ConditionalPut {
    Written,
    /// The condition failed; the item in the way, when DynamoDB returned it.
    Refused(Option<Item>),
}

/// The result of a conditional update or delete whose refused condition means there was nothing
/// to do (the item is not there, or not ours): `Ok` either way.
fn refusal_is_nothing_to_do<T, E, R>(
    operation: &'static str,
    result: Result<T, SdkError<E, R>>,
) -> Result<(), StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error().and_then(|e| e.code())
                == Some("ConditionalCheckFailedException") =>
        {
            Ok(())
        }
        Err(e) => Err(store_error(operation, e)),
    }
}

/// An SDK error as the engine reads it: throttling (a retry helps soon) apart from other
/// failures, with the service's code and message ([`DisplayErrorContext`]; a bare `SdkError`
/// shows only "service error").
fn store_error<E, R>(operation: &'static str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    const THROTTLING: [&str; 3] = [
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
    ];
    let throttled = err
        .as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| THROTTLING.contains(&code));
    let detail = DisplayErrorContext(&err).to_string();
    let cause: Option<crate::ports::Cause> = Some(std::sync::Arc::new(err));
    if throttled {
        StoreError::Throttled {
            operation,
            detail,
            cause,
        }
    } else {
        StoreError::Unavailable {
            operation,
            detail,
            cause,
        }
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
        .map_err(|e| store_error(operation, e))?
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
    put_optional(&mut item, "discovered_by", config.discovered_by.as_deref());
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
        discovered_by: a.optional_string("discovered_by")?.map(str::to_owned),
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
mod tests;
