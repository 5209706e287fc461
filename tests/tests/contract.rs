//! The port contracts against the memory adapters and against DynamoDB, S3, Secrets Manager and
//! SQS on moto, plus the AWS-specific behaviour the contracts cannot see (table layout, multipart
//! clean-up, secret errors, queue errors).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use aws_sdk_dynamodb::types::{
    AttributeValue, BillingMode, KeyType, ProjectionType, StreamViewType, TimeToLiveStatus,
};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use mailroom::adapters::aws::{
    BY_RECEIVED_INDEX, DynamoStateStore, PENDING_INDEX, SecretsManagerSource, SqsJobQueue,
};
use mailroom::adapters::memory::{MemoryBlobStore, MemoryJobQueue, MemoryStateStore};
use mailroom::clock::ManualClock;
use mailroom::domain::{MessageId, MessageRecord};
use mailroom::ports::{
    AlertClaims, BlobStore, Cursors, JobQueue, LeaseOutcome, Leases, MailboxConfigs,
    MessageRecords, QueueError, SecretError, SecretSource, StoreError, SubscriptionLookup,
    Subscriptions,
};
use mailroom_tests::contract::{
    self, Delivered, alert_contract, blob_store_contract, job_queue_contract, state_store_contract,
    subscription_contract,
};
use mailroom_tests::moto::Moto;
use secrecy::ExposeSecret;
use time::macros::datetime;

// ---- Contracts --------------------------------------------------------------------------------

#[tokio::test]
async fn memory_state_store_passes_the_contract() {
    state_store_contract(&MemoryStateStore::default()).await;
}

#[tokio::test]
async fn dynamodb_state_store_passes_the_contract() {
    let (store, _) = Moto::shared().fresh_table().await;
    state_store_contract(&store).await;
}

#[tokio::test]
async fn memory_state_store_passes_the_subscription_contract() {
    subscription_contract(&MemoryStateStore::default()).await;
}

#[tokio::test]
async fn dynamodb_state_store_passes_the_subscription_contract() {
    let (store, _) = Moto::shared().fresh_table().await;
    subscription_contract(&store).await;
}

#[tokio::test]
async fn memory_state_store_passes_the_alert_contract() {
    alert_contract(&MemoryStateStore::default()).await;
}

#[tokio::test]
async fn dynamodb_state_store_passes_the_alert_contract() {
    let (store, _) = Moto::shared().fresh_table().await;
    alert_contract(&store).await;
}

#[tokio::test]
async fn memory_blob_store_passes_the_contract() {
    blob_store_contract(&MemoryBlobStore::default()).await;
}

#[tokio::test]
async fn s3_blob_store_passes_the_contract() {
    let (store, _) = Moto::shared().fresh_bucket().await;
    blob_store_contract(&store).await;
}

#[tokio::test]
async fn memory_job_queue_passes_the_contract() {
    let clock = Arc::new(ManualClock::default());
    let queue = MemoryJobQueue::with_clock(clock.clone());
    let taken = std::cell::Cell::new(0);
    let drain = async || {
        let jobs = queue.jobs();
        let new = jobs[taken.get()..].to_vec();
        taken.set(jobs.len());
        new.into_iter()
            .map(|job| Delivered {
                group: job.mailbox.as_str().to_owned(),
                job,
            })
            .collect()
    };
    job_queue_contract(&queue, &clock, drain).await;
}

#[tokio::test]
async fn sqs_job_queue_passes_the_contract() {
    let moto = Moto::shared();
    let (queue, url) = moto.fresh_fifo_queue().await;
    let clock = Arc::new(ManualClock::default());
    let queue = queue.with_clock(clock.clone());
    let client = moto.clients().sqs;
    job_queue_contract(&queue, &clock, async || drain_sqs(&client, &url).await).await;
}

#[tokio::test]
async fn sqs_retry_after_brings_a_failed_job_back_when_asked_not_before() {
    let moto = Moto::shared();
    let (queue, url) = moto.fresh_fifo_queue().await;
    let client = moto.clients().sqs;
    let job = contract::job(
        &contract::mailbox("queue-retry"),
        "Inbox",
        mailroom::domain::job::JobKind::Sync,
    );
    queue.enqueue(&job).await.unwrap();
    let receive = || async {
        client
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .visibility_timeout(900)
            .send()
            .await
            .unwrap()
            .messages()
            .to_vec()
    };
    let first = receive().await;
    assert_eq!(first.len(), 1);
    // In flight for 15 minutes unless told otherwise.
    assert!(receive().await.is_empty());
    queue
        .retry_after(
            first[0].receipt_handle().unwrap(),
            std::time::Duration::from_secs(0),
        )
        .await
        .unwrap();
    let again = receive().await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        SqsJobQueue::parse_job(again[0].body().unwrap()).unwrap(),
        job
    );
    queue
        .retry_after(
            again[0].receipt_handle().unwrap(),
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(receive().await.is_empty(), "not before its delay");
}

/// Receives (10 at a time, waiting up to 1 s) and deletes messages until a receive comes back
/// empty. A FIFO queue hands out the next message of a group only once the previous one is
/// deleted, so this also proves the order within a group.
async fn drain_sqs(client: &aws_sdk_sqs::Client, url: &str) -> Vec<Delivered> {
    let mut delivered = Vec::new();
    loop {
        let received = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .unwrap();
        let messages = received.messages();
        if messages.is_empty() {
            return delivered;
        }
        for message in messages {
            let group = message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned()
                .unwrap_or_default();
            let job = SqsJobQueue::parse_job(message.body().unwrap()).unwrap();
            delivered.push(Delivered { group, job });
            client
                .delete_message()
                .queue_url(url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

// ---- SQS --------------------------------------------------------------------------------------

#[tokio::test]
async fn sqs_enqueue_to_a_missing_queue_names_the_operation_and_the_queue() {
    let moto = Moto::shared();
    let url = format!(
        "{}/123456789012/mailroom-missing-{}.fifo",
        moto.endpoint(),
        contract::unique()
    );
    let queue = SqsJobQueue::new(moto.clients().sqs, &url);
    let job = contract::job(
        &contract::mailbox("queue-missing"),
        "Inbox",
        mailroom::domain::job::JobKind::Sync,
    );
    let err = queue.enqueue(&job).await.unwrap_err();
    let QueueError::Unavailable { operation, detail } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*operation, "enqueue");
    assert!(detail.contains(&url), "{detail}");
    assert!(detail.contains(job.mailbox.as_str()), "{detail}");
    let message = err.to_string();
    assert!(
        message.starts_with("job queue unavailable during enqueue: "),
        "{message}"
    );
    // The service's own words, not the bare "service error".
    assert!(
        message.contains("QueueDoesNotExist") || message.contains("NonExistentQueue"),
        "{message}"
    );
}

// ---- DynamoDB ---------------------------------------------------------------------------------

#[tokio::test]
async fn dynamodb_create_table_is_idempotent_and_builds_the_documented_layout() {
    let moto = Moto::shared();
    let (_, table) = moto.fresh_table().await;
    let client = moto.clients().dynamodb;
    // A second call finds the table and succeeds.
    DynamoStateStore::create_table(&client, &table)
        .await
        .unwrap();

    let described = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let t = described.table().unwrap();
    let keys: Vec<(&str, &KeyType)> = t
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type()))
        .collect();
    assert_eq!(keys, [("pk", &KeyType::Hash), ("sk", &KeyType::Range)]);
    assert_eq!(
        t.billing_mode_summary().and_then(|b| b.billing_mode()),
        Some(&BillingMode::PayPerRequest)
    );
    let stream = t.stream_specification().unwrap();
    assert!(stream.stream_enabled());
    assert_eq!(
        stream.stream_view_type(),
        Some(&StreamViewType::NewAndOldImages)
    );
    type Index<'a> = (
        &'a str,
        Vec<(&'a str, &'a KeyType)>,
        Option<&'a ProjectionType>,
    );
    let mut indexes: Vec<Index> = t
        .global_secondary_indexes()
        .iter()
        .map(|gsi| {
            (
                gsi.index_name().unwrap_or_default(),
                gsi.key_schema()
                    .iter()
                    .map(|k| (k.attribute_name(), k.key_type()))
                    .collect(),
                gsi.projection().and_then(|p| p.projection_type()),
            )
        })
        .collect();
    indexes.sort_by_key(|(name, ..)| *name);
    assert_eq!(
        indexes,
        [
            (
                BY_RECEIVED_INDEX,
                vec![("gsi1pk", &KeyType::Hash), ("gsi1sk", &KeyType::Range)],
                Some(&ProjectionType::All)
            ),
            (
                PENDING_INDEX,
                vec![("pending_pk", &KeyType::Hash), ("sk", &KeyType::Range)],
                Some(&ProjectionType::All)
            ),
        ]
    );

    let ttl = client
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some("ttl"));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
}

#[tokio::test]
async fn dynamodb_records_are_listed_by_received_time_on_the_index() {
    let moto = Moto::shared();
    let (store, table) = moto.fresh_table().await;
    let mailbox = contract::mailbox("index");
    let received = [
        ("late", datetime!(2025-03-05 09:00:00 UTC)),
        ("early", datetime!(2025-03-04 23:00:00.5 -02:00)),
        ("middle", datetime!(2025-03-05 08:59:59 +00:00)),
    ];
    for (id, received_at) in received {
        let record = MessageRecord {
            received_at,
            ..contract::record(&mailbox, id)
        };
        store.create_record(&record).await.unwrap();
    }
    // Another mailbox's record must not show up.
    store
        .create_record(&contract::record(&contract::mailbox("other"), "x"))
        .await
        .unwrap();

    let newest_first = moto
        .clients()
        .dynamodb
        .query()
        .table_name(&table)
        .index_name(BY_RECEIVED_INDEX)
        .key_condition_expression("gsi1pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(format!("MBX#{mailbox}")))
        .scan_index_forward(false)
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = newest_first
        .items()
        .iter()
        .map(|item| item["message_id"].as_s().unwrap().as_str())
        .collect();
    assert_eq!(ids, ["late", "middle", "early"]);
    assert_eq!(
        newest_first.items()[2]["gsi1sk"],
        AttributeValue::S("RCV#2025-03-05T01:00:00Z#early".into())
    );
}

#[tokio::test]
async fn dynamodb_lease_items_expire_through_ttl_a_day_after_the_lease() {
    let moto = Moto::shared();
    let (store, table) = moto.fresh_table().await;
    let until = datetime!(2030-01-01 00:01:00.250 UTC);
    let outcome = store
        .acquire_lease(
            "mailbox-a",
            "runner-a",
            until - time::Duration::minutes(1),
            until,
        )
        .await
        .unwrap();
    assert_eq!(outcome, LeaseOutcome::Acquired);
    let item = moto
        .clients()
        .dynamodb
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("LEASE#mailbox-a".into()))
        .key("sk", AttributeValue::S("LEASE".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let item = item.item().unwrap();
    assert_eq!(item["owner"], AttributeValue::S("runner-a".into()));
    assert_eq!(item["until"], AttributeValue::N("1893456060250".into()));
    assert_eq!(
        item["ttl"],
        AttributeValue::N((1_893_456_060 + 86_400).to_string())
    );
}

#[tokio::test]
async fn dynamodb_subscription_and_alert_items_follow_the_documented_layout() {
    let moto = Moto::shared();
    let (store, table) = moto.fresh_table().await;
    let client = moto.clients().dynamodb;
    let item = async |pk: String, sk: String| {
        client
            .get_item()
            .table_name(&table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .unwrap()
    };

    let sub = contract::subscription(
        &contract::mailbox("layout"),
        "Inbox",
        &contract::subscription_id(),
    );
    store.put_subscription(&sub).await.unwrap();
    let stored = item("SUBSCRIPTION".into(), format!("SUB#{}", sub.id)).await;
    let s = |name: &str| stored[name].as_s().unwrap().as_str();
    assert_eq!(s("id"), sub.id);
    assert_eq!(s("mailbox"), sub.mailbox.as_str());
    assert_eq!(s("folder"), "Inbox");
    assert_eq!(s("client_state"), sub.client_state.expose());
    assert_eq!(s("expires_at"), "2030-01-04T01:30:15.25Z");
    assert_eq!(s("notification_url"), sub.notification_url);
    assert_eq!(s("created_at"), "2030-01-01T00:00:01.5Z");

    let credential = contract::credential("layout");
    assert!(
        store
            .claim_alert(
                &credential,
                "2030-06-30T00:00:00Z#14",
                datetime!(2030-06-16 00:00:00.25 UTC)
            )
            .await
            .unwrap()
    );
    let claim = item(
        format!("ALERT#{credential}"),
        "2030-06-30T00:00:00Z#14".into(),
    )
    .await;
    assert_eq!(
        claim["claimed_at"],
        AttributeValue::S("2030-06-16T00:00:00.25Z".into())
    );
}

#[tokio::test]
async fn dynamodb_malformed_subscription_items_name_the_attribute_not_the_client_state() {
    let moto = Moto::shared();
    let (store, table) = moto.fresh_table().await;
    let sub = contract::subscription(
        &contract::mailbox("malformed-sub"),
        "Inbox",
        &contract::subscription_id(),
    );
    moto.clients()
        .dynamodb
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("SUBSCRIPTION".into()))
        .item("sk", AttributeValue::S(format!("SUB#{}", sub.id)))
        .item("id", AttributeValue::S(sub.id.clone()))
        .item("mailbox", AttributeValue::S(sub.mailbox.to_string()))
        .item("folder", AttributeValue::S("Inbox".into()))
        .item("credential", AttributeValue::S("main".into()))
        .item(
            "client_state",
            AttributeValue::S(sub.client_state.expose().into()),
        )
        .item("expires_at", AttributeValue::N("1893456000".into()))
        .send()
        .await
        .unwrap();
    for err in [
        store.get_subscription(&sub.id).await.unwrap_err(),
        store.list_subscriptions().await.unwrap_err(),
    ] {
        let shown = format!("{err} {err:?}");
        let StoreError::Malformed { operation, detail } = &err else {
            panic!("expected Malformed, got {shown}");
        };
        assert!(
            ["get subscription", "list subscriptions"].contains(operation),
            "{shown}"
        );
        assert!(detail.contains("'expires_at'"), "{detail}");
        assert!(
            detail.contains(&format!("pk='SUBSCRIPTION' sk='SUB#{}'", sub.id)),
            "{detail}"
        );
        assert!(!shown.contains(sub.client_state.expose()), "{shown}");
    }
}

#[tokio::test]
async fn dynamodb_malformed_items_are_reported_with_attribute_and_key() {
    let moto = Moto::shared();
    let (store, table) = moto.fresh_table().await;
    let mailbox = contract::mailbox("malformed");
    moto.clients()
        .dynamodb
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S(format!("MBX#{mailbox}")))
        .item("sk", AttributeValue::S("MSG#broken".into()))
        .item("mailbox", AttributeValue::S(mailbox.to_string()))
        .item("message_id", AttributeValue::S("broken".into()))
        .item("folder", AttributeValue::S("Inbox".into()))
        .item("size", AttributeValue::S("large".into()))
        .send()
        .await
        .unwrap();
    let err = store
        .get_record(&mailbox, &MessageId::new("broken"))
        .await
        .unwrap_err();
    let StoreError::Malformed { operation, detail } = &err else {
        panic!("expected Malformed, got {err:?}");
    };
    assert_eq!(*operation, "get record");
    assert!(detail.contains("'received_at'"), "{detail}");
    assert!(
        detail.contains(&format!("pk='MBX#{mailbox}' sk='MSG#broken'")),
        "{detail}"
    );
    // The same item breaks listing, with the same precision.
    let err = store.list_records(&mailbox).await.unwrap_err().to_string();
    assert!(
        err.contains("list records") && err.contains("'received_at'"),
        "{err}"
    );
}

#[tokio::test]
async fn dynamodb_errors_carry_the_service_error() {
    let moto = Moto::shared();
    let store = DynamoStateStore::new(moto.clients().dynamodb, "mailroom-no-such-table");
    let err = store
        .get_record(&contract::mailbox("any"), &MessageId::new("x"))
        .await
        .unwrap_err();
    let StoreError::Unavailable {
        operation, detail, ..
    } = &err
    else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert_eq!(*operation, "get record");
    // DisplayErrorContext shows the service's code, which the bare SdkError Display hides.
    assert!(detail.contains("ResourceNotFoundException"), "{detail}");
    // The SDK's own error is kept for callers that inspect it.
    let cause = err.cause().expect("the SDK error is kept");
    let sdk = cause
        .downcast_ref::<aws_sdk_dynamodb::error::SdkError<
            aws_sdk_dynamodb::operation::get_item::GetItemError,
            aws_sdk_dynamodb::config::http::HttpResponse,
        >>()
        .expect("the cause is the GetItem SdkError");
    assert!(
        sdk.as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{sdk:?}"
    );
}

// ---- S3 ---------------------------------------------------------------------------------------

const SMALL_PART: usize = 256 * 1024;

#[tokio::test]
async fn s3_uploads_a_body_larger_than_a_part_in_parts() {
    let moto = Moto::shared();
    let (store, bucket) = moto.fresh_bucket().await;
    let store = store.with_part_size_unchecked(SMALL_PART);
    let key = contract::blob_key("multipart");
    let len = 4 * SMALL_PART + 1;
    let (body, digest) = contract::generated_body(len, 64 * 1024);
    store.put(&key, body).await.unwrap();

    let head = moto
        .clients()
        .s3
        .head_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    // A multipart object's ETag ends in the number of parts.
    assert!(
        head.e_tag().unwrap().ends_with("-5\""),
        "{:?}",
        head.e_tag()
    );
    assert_eq!(head.content_type(), Some("message/rfc822"));
    assert_eq!(
        contract::sha256_of(&store, &key).await,
        (digest, len as u64)
    );
}

#[tokio::test]
async fn s3_single_part_objects_are_message_rfc822() {
    let moto = Moto::shared();
    let (store, bucket) = moto.fresh_bucket().await;
    let key = contract::blob_key("single");
    store
        .put(&key, contract::body(&[b"Subject: x\r\n\r\nbody"]))
        .await
        .unwrap();
    let head = moto
        .clients()
        .s3
        .head_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("message/rfc822"));
    assert!(!head.e_tag().unwrap().contains('-'), "{:?}", head.e_tag());
}

#[tokio::test]
async fn s3_failed_multipart_upload_is_aborted_and_leaves_nothing() {
    let moto = Moto::shared();
    let (store, bucket) = moto.fresh_bucket().await;
    let store = store.with_part_size_unchecked(SMALL_PART);
    let key = contract::blob_key("aborted");
    // Four parts go up before the body fails.
    let result = store
        .put(
            &key,
            contract::failing_body(4 * SMALL_PART + 1000, 64 * 1024),
        )
        .await;
    contract::assert_source_error(result, &key);

    let uploads = moto
        .clients()
        .s3
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
    assert_eq!(store.size(&key).await.unwrap(), None);
}

// ---- Secrets Manager --------------------------------------------------------------------------

const SECRET_VALUE: &str = "Qx8~never.show-this-value";

fn secret_name() -> String {
    format!("mailroom/test-{}", contract::unique())
}

#[tokio::test]
async fn secrets_manager_reads_a_valid_secret() {
    let moto = Moto::shared();
    let name = secret_name();
    moto.put_secret(
        &name,
        &format!(
            r#"{{"tenant_id":"tenant-1","client_id":"client-1","client_secret":"{SECRET_VALUE}","expires_at":"2026-06-30T00:00:00Z"}}"#
        ),
    )
    .await;
    let source = SecretsManagerSource::new(moto.clients().secrets);
    let credential = source.fetch(&name).await.unwrap();
    assert_eq!(credential.tenant_id, "tenant-1");
    assert_eq!(credential.client_id, "client-1");
    assert_eq!(
        credential.client_secret().unwrap().expose_secret(),
        SECRET_VALUE
    );
    assert_eq!(
        credential.expires_at,
        Some(datetime!(2026-06-30 00:00:00 UTC))
    );
}

#[tokio::test]
async fn secrets_manager_missing_secret_is_not_found_with_a_hint() {
    let source = SecretsManagerSource::new(Moto::shared().clients().secrets);
    let name = secret_name();
    let err = source.fetch(&name).await.unwrap_err();
    let SecretError::NotFound { name: named, hint } = &err else {
        panic!("expected NotFound, got {err:?}");
    };
    assert_eq!(*named, name);
    assert!(
        hint.contains(&format!(
            "aws secretsmanager create-secret --name {name} --secret-string"
        )),
        "{hint}"
    );
    for field in ["tenant_id", "client_id", "client_secret"] {
        assert!(hint.contains(field), "{hint}");
    }
}

#[tokio::test]
async fn secrets_manager_malformed_secret_names_the_field_not_the_value() {
    let moto = Moto::shared();
    let source = SecretsManagerSource::new(moto.clients().secrets);
    let cases = [
        (
            format!(r#"{{"tenant_id":"t","client_secret":"{SECRET_VALUE}"}}"#),
            "field 'client_id' is missing",
        ),
        (
            format!(r#"{{"tenant_id":"t", "client_id":"c", "client_secret":"{SECRET_VALUE}"#),
            "not valid JSON",
        ),
    ];
    for (json, expected) in cases {
        let name = secret_name();
        moto.put_secret(&name, &json).await;
        let err = source.fetch(&name).await.unwrap_err();
        assert!(matches!(err, SecretError::Malformed { .. }), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(shown.contains(expected), "{shown}");
        assert!(shown.contains(&name), "{shown}");
        assert!(!shown.contains(SECRET_VALUE), "{shown}");
    }
}

#[tokio::test]
async fn secrets_manager_binary_secret_is_malformed() {
    let moto = Moto::shared();
    let name = secret_name();
    moto.clients()
        .secrets
        .create_secret()
        .name(&name)
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(
            SECRET_VALUE.as_bytes(),
        ))
        .send()
        .await
        .unwrap();
    let source = SecretsManagerSource::new(moto.clients().secrets);
    let err = source.fetch(&name).await.unwrap_err();
    let SecretError::Malformed { detail, .. } = &err else {
        panic!("expected Malformed, got {err:?}");
    };
    assert!(detail.contains("SecretString"), "{detail}");
    assert!(!format!("{err} {err:?}").contains(SECRET_VALUE));
}

// ---- Local mode: SQLite, a directory, local secrets ---------------------------------------------

use mailroom::adapters::local::{
    DirBlobStore, FileSecretSource, LocalCredential, SecretRef, SqliteStateStore,
};

#[tokio::test]
async fn sqlite_state_store_passes_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state/mailroom.db")).unwrap();
    state_store_contract(&store).await;
}

#[tokio::test]
async fn sqlite_state_store_passes_the_subscription_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state/mailroom.db")).unwrap();
    subscription_contract(&store).await;
}

#[tokio::test]
async fn sqlite_state_store_passes_the_alert_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state/mailroom.db")).unwrap();
    alert_contract(&store).await;
}

#[tokio::test]
async fn sqlite_state_store_survives_reopening() {
    use mailroom::domain::{AfterImport, Cursor, FolderKey, MailboxConfig, RecordState};
    use mailroom::ports::CreateOutcome;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailroom.db");
    let mailbox = contract::mailbox("reopen");
    let config = MailboxConfig {
        address: mailbox.clone(),
        folder: "Inbox/Reports".into(),
        action: AfterImport::Move {
            processed_folder: "Inbox/Done".into(),
        },
        credential: "contoso".into(),
        enabled: true,
        discovered_by: None,
    };
    let pending = contract::record(&mailbox, "AAMk/pending+=");
    let done = contract::record(&mailbox, "AAMk-done");
    let key = FolderKey {
        mailbox: mailbox.clone(),
        folder: "Inbox/Reports".into(),
    };
    let cursor = Cursor {
        delta_link: Some("https://graph.microsoft.com/v1.0/delta?$deltatoken=x".into()),
        next_link: None,
    };
    let (now, until) = (
        datetime!(2030-01-01 00:00:00 UTC),
        datetime!(2030-01-01 00:05:00 UTC),
    );
    let subscription =
        contract::subscription(&mailbox, "Inbox/Reports", &contract::subscription_id());
    let credential = contract::credential("reopen");
    {
        let store = SqliteStateStore::open(&path).unwrap();
        store.put_mailbox(&config).await.unwrap();
        store.create_record(&pending).await.unwrap();
        store.create_record(&done).await.unwrap();
        store.mark_done(&mailbox, &done.message_id).await.unwrap();
        store.put_cursor(&key, &cursor).await.unwrap();
        assert_eq!(
            store
                .acquire_lease("mbx-reopen", "runner-a", now, until)
                .await
                .unwrap(),
            LeaseOutcome::Acquired
        );
        store.put_subscription(&subscription).await.unwrap();
        assert!(store.claim_alert(&credential, "k#14", now).await.unwrap());
    }

    let store = SqliteStateStore::open(&path).unwrap();
    assert_eq!(store.list_mailboxes().await.unwrap(), vec![config]);
    let done = MessageRecord {
        state: RecordState::Done,
        ..done
    };
    let mut records = store.list_records(&mailbox).await.unwrap();
    records.sort_by(|a, b| a.message_id.cmp(&b.message_id));
    assert_eq!(records, vec![done, pending.clone()]);
    assert_eq!(
        store.pending_records(&mailbox).await.unwrap(),
        vec![pending.clone()]
    );
    assert_eq!(store.get_cursor(&key).await.unwrap(), Some(cursor));
    // The exactly-once gate and the lease hold across a restart too.
    assert_eq!(
        store.create_record(&pending).await.unwrap(),
        CreateOutcome::AlreadyStored(Box::new(pending))
    );
    assert_eq!(
        store
            .acquire_lease("mbx-reopen", "runner-b", now, until)
            .await
            .unwrap(),
        LeaseOutcome::HeldBy {
            owner: "runner-a".into(),
            until
        }
    );
    // So do subscriptions and alert claims.
    assert_eq!(
        store.get_subscription(&subscription.id).await.unwrap(),
        Some(subscription)
    );
    assert!(!store.claim_alert(&credential, "k#14", until).await.unwrap());
}

#[tokio::test]
async fn dir_blob_store_passes_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    blob_store_contract(&DirBlobStore::new(dir.path().join("mime"))).await;
}

#[tokio::test]
async fn dir_blob_store_rejects_keys_that_escape_the_root() {
    let parent = tempfile::tempdir().unwrap();
    let store = DirBlobStore::new(parent.path().join("root"));
    let absolute = parent.path().join("absolute.eml").display().to_string();
    for key in [
        "../escaped.eml",
        "a@contoso.com/../../escaped.eml",
        absolute.as_str(),
        "a@contoso.com//x.eml",
        "",
    ] {
        let err = store
            .put(key, contract::body(&[b"Subject: x\r\n\r\nbody"]))
            .await
            .unwrap_err();
        let mailroom::ports::BlobError::Unavailable { key: named, .. } = &err else {
            panic!("expected Unavailable for {key:?}, got {err:?}");
        };
        assert_eq!(named, key);
        assert!(err.to_string().contains("invalid key"), "{err}");
        assert!(store.size(key).await.is_err(), "size of {key:?}");
        assert!(store.get(key).await.is_err(), "get of {key:?}");
    }
    // Nothing was written anywhere: not outside the root, not even the root itself.
    let written: Vec<_> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(written.is_empty(), "{written:?}");
}

#[tokio::test]
async fn dir_blob_store_failed_write_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirBlobStore::new(dir.path());
    let folder = "a@contoso.com/2025/03/05";
    let kept = format!("{folder}/kept.eml");
    let failed = format!("{folder}/failed.eml");
    store
        .put(&kept, contract::body(&[b"the original"]))
        .await
        .unwrap();
    for key in [&kept, &failed] {
        contract::assert_source_error(
            store
                .put(key, contract::failing_body(300 * 1024, 64 * 1024))
                .await,
            key,
        );
    }
    let mut left: Vec<String> = std::fs::read_dir(dir.path().join(folder))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["kept.eml"]);
    assert_eq!(contract::read_all(&store, &kept).await, b"the original");
    assert_eq!(store.size(&failed).await.unwrap(), None);
}

#[tokio::test]
async fn file_secret_source_reads_env_and_file_and_names_what_is_missing() {
    use std::collections::HashMap;

    const ENV_SECRET: &str = "Env8~local.secret-one";
    const FILE_SECRET: &str = "File8~local.secret-two";
    const ROTATED: &str = "File9~local.secret-three";
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("contoso.secret");
    std::fs::write(&secret_file, format!("{FILE_SECRET}\n")).unwrap();
    let empty_file = dir.path().join("empty.secret");
    std::fs::write(&empty_file, "\n").unwrap();
    let missing_file = dir.path().join("missing.secret");

    let variable = format!("MAILROOM_TEST_SECRET_{}", contract::unique().to_uppercase());
    let unset = format!("MAILROOM_TEST_UNSET_{}", contract::unique().to_uppercase());
    let credential = |secret: SecretRef| LocalCredential {
        delegated_scopes: None,
        tenant_id: "tenant-1".into(),
        client_id: "client-1".into(),
        secret,
        key_id: None,
        expires_at: Some(datetime!(2026-06-30 00:00:00 UTC)),
    };
    let credentials = HashMap::from([
        (
            "from-env".to_owned(),
            credential(SecretRef::Env(variable.clone())),
        ),
        (
            "from-file".to_owned(),
            credential(SecretRef::File(secret_file.clone())),
        ),
        (
            "unset-env".to_owned(),
            credential(SecretRef::Env(unset.clone())),
        ),
        (
            "empty-file".to_owned(),
            credential(SecretRef::File(empty_file.clone())),
        ),
        (
            "missing-file".to_owned(),
            credential(SecretRef::File(missing_file.clone())),
        ),
    ]);
    let env = HashMap::from([(variable.clone(), ENV_SECRET.to_owned())]);
    let source = FileSecretSource::with_env(credentials, move |name| env.get(name).cloned());

    let from_env = source.fetch("from-env").await.unwrap();
    assert_eq!(from_env.tenant_id, "tenant-1");
    assert_eq!(from_env.client_id, "client-1");
    assert_eq!(
        from_env.client_secret().unwrap().expose_secret(),
        ENV_SECRET
    );
    assert_eq!(
        from_env.expires_at,
        Some(datetime!(2026-06-30 00:00:00 UTC))
    );

    let from_file = source.fetch("from-file").await.unwrap();
    assert_eq!(
        from_file.client_secret().unwrap().expose_secret(),
        FILE_SECRET
    );
    // Read at every call: a rotated secret is seen without restarting.
    std::fs::write(&secret_file, ROTATED).unwrap();
    let rotated = source.fetch("from-file").await.unwrap();
    assert_eq!(rotated.client_secret().unwrap().expose_secret(), ROTATED);

    let shown = |err: &SecretError| {
        let shown = format!("{err} {err:?}");
        for secret in [ENV_SECRET, FILE_SECRET, ROTATED] {
            assert!(!shown.contains(secret), "{shown}");
        }
        shown
    };

    let err = source.fetch("fabrikam").await.unwrap_err();
    assert!(
        matches!(&err, SecretError::NotFound { name, hint }
            if name == "fabrikam" && hint.contains("[credential.fabrikam] in mailroom.toml")),
        "{}",
        shown(&err)
    );

    let err = source.fetch("unset-env").await.unwrap_err();
    let text = shown(&err);
    assert!(matches!(err, SecretError::NotFound { .. }), "{text}");
    assert!(text.contains(&format!("export {unset}=")), "{text}");
    assert!(text.contains("not its Secret ID"), "{text}");

    let err = source.fetch("missing-file").await.unwrap_err();
    let text = shown(&err);
    assert!(matches!(err, SecretError::Unavailable { .. }), "{text}");
    assert!(text.contains(&missing_file.display().to_string()), "{text}");
    assert!(
        text.contains(&std::io::ErrorKind::NotFound.to_string()),
        "{text}"
    );

    let err = source.fetch("empty-file").await.unwrap_err();
    let text = shown(&err);
    assert!(matches!(err, SecretError::Malformed { .. }), "{text}");
    assert!(text.contains(&empty_file.display().to_string()), "{text}");
    assert!(text.contains("empty"), "{text}");
}

#[tokio::test]
async fn s3_attachments_open_with_name_size_type_and_bytes_and_a_missing_key_is_named() {
    use futures::TryStreamExt;
    use mailroom::adapters::aws::S3Attachments;
    use mailroom::ports::{AttachmentError, AttachmentSource};
    let moto = Moto::shared();
    let (_, bucket) = moto.fresh_bucket().await;
    let s3 = moto.clients().s3;
    s3.put_object()
        .bucket(&bucket)
        .key("outbox/ticket-1042/report.pdf")
        .body(b"%PDF-1.7 report".to_vec().into())
        .send()
        .await
        .unwrap();
    let source = S3Attachments::new(s3, &bucket);
    let opened = source.open("outbox/ticket-1042/report.pdf").await.unwrap();
    assert_eq!(
        (
            opened.name.as_str(),
            opened.size,
            opened.content_type.as_str()
        ),
        ("report.pdf", 15, "application/pdf")
    );
    let bytes: Vec<u8> = opened
        .body
        .map_ok(|b| b.to_vec())
        .try_concat()
        .await
        .unwrap();
    assert_eq!(bytes, b"%PDF-1.7 report");
    let err = source.open("outbox/missing.pdf").await.unwrap_err();
    assert!(matches!(err, AttachmentError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("outbox/missing.pdf") && !err.retry_can_help());
}
