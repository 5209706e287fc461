//! One contract per port, run against every adapter (object_store's `integration.rs` pattern):
//! [`state_store_contract`], [`subscription_contract`], [`alert_contract`], [`blob_store_contract`]
//! and [`job_queue_contract`] call focused cases named for the behaviour they check. Each case
//! uses its own mailboxes, leases, credentials and keys, so the cases can share one store and a
//! failure names the case that broke.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use mailroom::clock::ManualClock;
use mailroom::discovery::{DiscoverRule, DiscoveryRun, Members};
use mailroom::domain::event::{AttachmentInfo, MessageEvent, RawLocation};
use mailroom::domain::job::{JobKind, SyncJob};
use mailroom::domain::{
    AfterImport, ClientState, Cursor, FolderKey, MailboxAddress, MailboxConfig, MessageId,
    MessageRecord, RecordState, SubscriptionRecord,
};
use mailroom::ports::{
    BlobError, BlobStore, ByteStream, CreateOutcome, JobQueue, LeaseOutcome, StateStore,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::datetime;

// ---- Fixtures ---------------------------------------------------------------------------------

/// A short random suffix, so cases never see each other's data.
pub fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A fresh mailbox address whose local part starts with `prefix`.
pub fn mailbox(prefix: &str) -> MailboxAddress {
    must(MailboxAddress::parse(&format!(
        "{prefix}-{}@contoso.com",
        unique()
    )))
}

/// A complete record: every optional field set, a received time with a fraction of a second.
pub fn record(mailbox: &MailboxAddress, id: &str) -> MessageRecord {
    let received_at = datetime!(2025-03-04 23:30:15.25 -02:00);
    let message_id = MessageId::new(id);
    MessageRecord {
        blob_key: mailroom::domain::blob_key(mailbox, &message_id, received_at),
        mailbox: mailbox.clone(),
        message_id,
        folder: "Inbox/Reports".into(),
        internet_message_id: Some(format!("<{id}@mail.contoso.com>")),
        subject: Some(format!("Backup report {id}")),
        from: Some("backup@contoso.com".into()),
        received_at,
        size: 2048,
        sha256: "0f".repeat(32),
        imported_at: datetime!(2025-03-05 01:31:00 UTC),
        state: RecordState::Stored,
    }
}

fn config(address: &MailboxAddress, folder: &str, action: AfterImport) -> MailboxConfig {
    MailboxConfig {
        address: address.clone(),
        folder: folder.into(),
        action,
        credential: "contoso".into(),
        enabled: true,
        discovered_by: None,
    }
}

fn must<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

/// The store's configs for the given addresses, in the store's order.
async fn configs_of(store: &dyn StateStore, addresses: &[&MailboxAddress]) -> Vec<MailboxConfig> {
    must(store.list_mailboxes().await)
        .into_iter()
        .filter(|c| addresses.contains(&&c.address))
        .collect()
}

/// Whole seconds: DynamoDB keeps lease times in milliseconds.
const T0: OffsetDateTime = datetime!(2030-01-01 00:00:00 UTC);

fn at(seconds: i64) -> OffsetDateTime {
    T0 + time::Duration::seconds(seconds)
}

// ---- StateStore -------------------------------------------------------------------------------

/// Every [`StateStore`] case, in turn.
pub async fn state_store_contract(store: &dyn StateStore) {
    mailbox_configs_are_listed_by_address_then_folder(store).await;
    putting_a_mailbox_config_replaces_it(store).await;
    removing_a_mailbox_config_reports_whether_it_existed(store).await;
    mailbox_folders_are_those_of_one_mailbox(store).await;
    create_record_returns_the_original_when_already_stored(store).await;
    concurrent_creates_of_one_record_create_it_once(store).await;
    get_record_of_an_unknown_message_is_none(store).await;
    mark_done_is_idempotent_and_visible(store).await;
    mark_done_of_an_unknown_message_does_nothing(store).await;
    pending_records_are_the_stored_records_not_yet_done(store).await;
    list_records_returns_only_that_mailboxs_records(store).await;
    list_records_pages_through_many_records(store).await;
    cursor_is_absent_until_put_and_put_replaces_it(store).await;
    last_run_is_absent_until_put_and_put_replaces_it(store).await;
    lease_is_acquired_when_free_and_refused_while_held(store).await;
    lease_is_renewed_by_its_owner(store).await;
    lease_is_taken_over_once_expired(store).await;
    lease_release_by_another_owner_does_nothing(store).await;
    released_lease_can_be_taken_by_anyone(store).await;
    a_discovered_mailbox_config_names_its_rule(store).await;
    discover_rules_are_listed_by_id_and_replaced_by_id(store).await;
    removing_a_discover_rule_removes_its_last_run(store).await;
    the_outbox_keeps_each_mailboxs_events_until_deleted(store).await;
    outbox_events_are_not_records(store).await;
}

/// A complete event: every optional field set, characters a key or a path must not mangle.
pub fn event(mailbox: &MailboxAddress, id: &str) -> MessageEvent {
    let record = record(mailbox, id);
    MessageEvent {
        version: MessageEvent::VERSION,
        id: MessageEvent::id_of(mailbox, &record.message_id),
        mailbox: mailbox.clone(),
        folder: "Inbox/Ré/ports #1".into(),
        message_id: record.message_id.clone(),
        internet_message_id: record.internet_message_id.clone(),
        conversation_id: Some(format!("conv-{id}")),
        subject: Some("Backup \u{202E}fdp.exe 🗂".into()),
        from: record.from.clone(),
        to: vec!["ops@contoso.com".into(), "it@contoso.com".into()],
        cc: vec!["audit@contoso.com".into()],
        received_at: record.received_at,
        stored_at: record.imported_at,
        size: record.size,
        sha256: record.sha256.clone(),
        attachments: vec![AttachmentInfo {
            name: "report 1/2.pdf".into(),
            size: 2048,
            content_type: Some("application/pdf".into()),
        }],
        preview: "Backup completed".into(),
        raw: RawLocation::S3 {
            bucket: "mailroom-messages".into(),
            key: record.blob_key,
        },
    }
}

pub async fn the_outbox_keeps_each_mailboxs_events_until_deleted(store: &dyn StateStore) {
    let (a, b) = (mailbox("outbox"), mailbox("outbox"));
    let (a2, a1, b1) = (event(&a, "m2"), event(&a, "m1"), event(&b, "m1"));
    for e in [&a2, &a1, &b1] {
        must(store.put_event(e).await);
    }
    // Ordered by message id, every field as put, one mailbox's only.
    assert_eq!(
        must(store.pending_events(&a).await),
        [a1.clone(), a2.clone()]
    );
    assert_eq!(
        must(store.pending_events(&b).await),
        std::slice::from_ref(&b1)
    );

    // Put again (a run retried after a crash): replaced, not doubled.
    let again = MessageEvent {
        preview: "again".into(),
        ..a1.clone()
    };
    must(store.put_event(&again).await);
    assert_eq!(must(store.pending_events(&a).await), [again, a2.clone()]);

    // Deleting is idempotent and touches nothing else.
    must(store.delete_event(&a, &a1.message_id).await);
    must(store.delete_event(&a, &a1.message_id).await);
    assert_eq!(must(store.pending_events(&a).await), [a2]);
    assert_eq!(must(store.pending_events(&b).await), [b1]);
    assert!(must(store.pending_events(&mailbox("outbox")).await).is_empty());
}

/// The outbox shares a mailbox's partition with its records (DynamoDB): neither listing sees
/// the other.
pub async fn outbox_events_are_not_records(store: &dyn StateStore) {
    let a = mailbox("outbox-records");
    let stored = record(&a, "m1");
    must(store.create_record(&stored).await);
    must(store.put_event(&event(&a, "m1")).await);
    assert_eq!(
        must(store.list_records(&a).await),
        std::slice::from_ref(&stored)
    );
    assert_eq!(must(store.pending_records(&a).await), [stored]);
    assert_eq!(must(store.pending_events(&a).await).len(), 1);
}

pub async fn mailbox_configs_are_listed_by_address_then_folder(store: &dyn StateStore) {
    let suffix = unique();
    let a = must(MailboxAddress::parse(&format!("a-{suffix}@contoso.com")));
    let b = must(MailboxAddress::parse(&format!("b-{suffix}@contoso.com")));
    let wanted = vec![
        config(&a, "Archive", AfterImport::None),
        config(
            &a,
            "Inbox",
            AfterImport::Move {
                processed_folder: "Inbox/Processed".into(),
            },
        ),
        MailboxConfig {
            enabled: false,
            ..config(&b, "Inbox", AfterImport::MarkRead)
        },
        config(&b, "Inbox/Deep/Folder #2", AfterImport::Delete),
    ];
    for i in [2, 0, 3, 1] {
        must(store.put_mailbox(&wanted[i]).await);
    }
    assert_eq!(configs_of(store, &[&a, &b]).await, wanted);
}

pub async fn putting_a_mailbox_config_replaces_it(store: &dyn StateStore) {
    let address = mailbox("replace");
    let first = config(
        &address,
        "Inbox",
        AfterImport::Move {
            processed_folder: "Inbox/Done".into(),
        },
    );
    must(store.put_mailbox(&first).await);
    let second = MailboxConfig {
        credential: "fabrikam".into(),
        enabled: false,
        ..config(&address, "Inbox", AfterImport::MarkRead)
    };
    must(store.put_mailbox(&second).await);
    // The processed folder of the old `move` must not linger.
    assert_eq!(configs_of(store, &[&address]).await, vec![second]);
}

pub async fn a_discovered_mailbox_config_names_its_rule(store: &dyn StateStore) {
    let address = mailbox("discovered");
    let discovered = MailboxConfig {
        discovered_by: Some("contoso/group=Sales Team/Inbox".into()),
        ..config(&address, "Inbox", AfterImport::None)
    };
    must(store.put_mailbox(&discovered).await);
    assert_eq!(configs_of(store, &[&address]).await, vec![discovered]);
    // Configured by hand now: the marker goes.
    let by_hand = config(&address, "Inbox", AfterImport::None);
    must(store.put_mailbox(&by_hand).await);
    assert_eq!(configs_of(store, &[&address]).await, vec![by_hand]);
}

/// A rule of credential `credential` over a group.
pub fn discover_rule(credential: &str, group: &str) -> DiscoverRule {
    DiscoverRule {
        credential: credential.into(),
        members: Members::Group(group.into()),
        exclude: vec!["ceo@contoso.com".into(), "*-admin@*".into()],
        shared_mailboxes: true,
        folder: "Inbox/Reports".into(),
        action: AfterImport::Move {
            processed_folder: "Inbox/Done".into(),
        },
    }
}

async fn rules_of(store: &dyn StateStore, credential: &str) -> Vec<DiscoverRule> {
    must(store.list_discover_rules().await)
        .into_iter()
        .filter(|r| r.credential == credential)
        .collect()
}

pub async fn discover_rules_are_listed_by_id_and_replaced_by_id(store: &dyn StateStore) {
    let credential = credential("rules");
    let sales = discover_rule(&credential, "Sales");
    let all = DiscoverRule {
        members: Members::All,
        exclude: Vec::new(),
        shared_mailboxes: false,
        action: AfterImport::None,
        ..sales.clone()
    };
    must(store.put_discover_rule(&sales).await);
    must(store.put_discover_rule(&all).await);
    assert_eq!(
        rules_of(store, &credential).await,
        vec![all.clone(), sales.clone()]
    );
    let narrower = DiscoverRule {
        exclude: vec!["*@fabrikam.com".into()],
        ..sales.clone()
    };
    must(store.put_discover_rule(&narrower).await);
    assert_eq!(rules_of(store, &credential).await, vec![all, narrower]);
}

pub async fn removing_a_discover_rule_removes_its_last_run(store: &dyn StateStore) {
    let credential = credential("runs");
    let rule = discover_rule(&credential, "Finance");
    let id = rule.id();
    assert_eq!(must(store.last_discovery_run(&id).await), None);
    must(store.put_discover_rule(&rule).await);
    let run = |added, error: Option<&str>| DiscoveryRun {
        rule: id.clone(),
        at: at(added as i64),
        archived: 7,
        skipped: 2,
        added,
        enabled: 1,
        disabled: 3,
        error: error.map(str::to_owned),
    };
    must(store.put_discovery_run(&run(5, None)).await);
    must(
        store
            .put_discovery_run(&run(6, Some("403: grant GroupMember.Read.All")))
            .await,
    );
    assert_eq!(
        must(store.last_discovery_run(&id).await),
        Some(run(6, Some("403: grant GroupMember.Read.All")))
    );
    assert!(must(store.remove_discover_rule(&id).await));
    assert!(!must(store.remove_discover_rule(&id).await));
    assert_eq!(must(store.last_discovery_run(&id).await), None);
    assert!(rules_of(store, &credential).await.is_empty());
}

pub async fn mailbox_folders_are_those_of_one_mailbox(store: &dyn StateStore) {
    let suffix = unique();
    let a = must(MailboxAddress::parse(&format!("a-{suffix}@contoso.com")));
    // Shares `a`'s address as a prefix of its own.
    let longer = must(MailboxAddress::parse(&format!("a-{suffix}@contoso.com.au")));
    let mine = vec![
        config(&a, "Archive", AfterImport::None),
        MailboxConfig {
            enabled: false,
            ..config(&a, "Inbox", AfterImport::MarkRead)
        },
    ];
    must(store.put_mailbox(&mine[1]).await);
    must(
        store
            .put_mailbox(&config(&longer, "Inbox", AfterImport::None))
            .await,
    );
    must(store.put_mailbox(&mine[0]).await);
    assert_eq!(must(store.mailbox_folders(&a).await), mine);
    let nobody = mailbox("nobody");
    assert!(must(store.mailbox_folders(&nobody).await).is_empty());
}

pub async fn removing_a_mailbox_config_reports_whether_it_existed(store: &dyn StateStore) {
    let address = mailbox("remove");
    let kept = config(&address, "Archive", AfterImport::None);
    let removed = config(&address, "Inbox", AfterImport::None);
    must(store.put_mailbox(&kept).await);
    must(store.put_mailbox(&removed).await);
    assert!(must(store.remove_mailbox(&removed.key()).await));
    assert!(!must(store.remove_mailbox(&removed.key()).await));
    assert_eq!(configs_of(store, &[&address]).await, vec![kept]);
}

pub async fn create_record_returns_the_original_when_already_stored(store: &dyn StateStore) {
    let address = mailbox("create");
    let original = record(&address, "AAMkAD/original+=");
    assert_eq!(
        must(store.create_record(&original).await),
        CreateOutcome::Created
    );
    let second = MessageRecord {
        subject: Some("a different subject".into()),
        size: 1,
        state: RecordState::Done,
        ..original.clone()
    };
    assert_eq!(
        must(store.create_record(&second).await),
        CreateOutcome::AlreadyStored(Box::new(original.clone()))
    );
    assert_eq!(
        must(store.get_record(&address, &original.message_id).await),
        Some(original)
    );
}

pub async fn concurrent_creates_of_one_record_create_it_once(store: &dyn StateStore) {
    let address = mailbox("race");
    let candidates: Vec<MessageRecord> = (0..8)
        .map(|i| MessageRecord {
            subject: Some(format!("attempt {i}")),
            ..record(&address, "AAMkAD-raced")
        })
        .collect();
    let outcomes =
        futures::future::join_all(candidates.iter().map(|r| store.create_record(r))).await;
    let outcomes: Vec<CreateOutcome> = outcomes.into_iter().map(must).collect();
    let created = outcomes
        .iter()
        .filter(|o| **o == CreateOutcome::Created)
        .count();
    assert_eq!(created, 1, "{outcomes:#?}");
    let stored = must(store.get_record(&address, &candidates[0].message_id).await)
        .unwrap_or_else(|| panic!("the raced record was not stored"));
    assert!(candidates.contains(&stored), "{stored:#?}");
    for outcome in &outcomes {
        if let CreateOutcome::AlreadyStored(existing) = outcome {
            assert_eq!(**existing, stored);
        }
    }
}

pub async fn get_record_of_an_unknown_message_is_none(store: &dyn StateStore) {
    let address = mailbox("unknown");
    must(store.create_record(&record(&address, "known")).await);
    let unknown = MessageId::new("unknown");
    assert_eq!(must(store.get_record(&address, &unknown).await), None);
    assert_eq!(
        must(
            store
                .get_record(&mailbox("elsewhere"), &MessageId::new("known"))
                .await
        ),
        None
    );
}

pub async fn mark_done_is_idempotent_and_visible(store: &dyn StateStore) {
    let address = mailbox("done");
    let stored = record(&address, "to-be-done");
    let untouched = record(&address, "still-stored");
    must(store.create_record(&stored).await);
    must(store.create_record(&untouched).await);
    must(store.mark_done(&address, &stored.message_id).await);
    must(store.mark_done(&address, &stored.message_id).await);
    let done = MessageRecord {
        state: RecordState::Done,
        ..stored.clone()
    };
    assert_eq!(
        must(store.get_record(&address, &stored.message_id).await),
        Some(done.clone())
    );
    let mut listed = must(store.list_records(&address).await);
    listed.sort_by(|a, b| a.message_id.cmp(&b.message_id));
    assert_eq!(listed, vec![untouched, done]);
}

pub async fn pending_records_are_the_stored_records_not_yet_done(store: &dyn StateStore) {
    let address = mailbox("pending");
    let other = mailbox("pending-other");
    let ids = ["p1", "p2", "p3"];
    for id in ids {
        must(store.create_record(&record(&address, id)).await);
    }
    must(store.create_record(&record(&other, "elsewhere")).await);
    must(store.mark_done(&address, &MessageId::new("p2")).await);
    let mut pending = must(store.pending_records(&address).await);
    pending.sort_by(|a, b| a.message_id.cmp(&b.message_id));
    assert_eq!(
        pending,
        vec![record(&address, "p1"), record(&address, "p3")]
    );
    for id in ["p1", "p3"] {
        must(store.mark_done(&address, &MessageId::new(id)).await);
    }
    assert!(must(store.pending_records(&address).await).is_empty());
    assert_eq!(must(store.pending_records(&other).await).len(), 1);
}

pub async fn mark_done_of_an_unknown_message_does_nothing(store: &dyn StateStore) {
    let address = mailbox("done-unknown");
    let id = MessageId::new("never-stored");
    must(store.mark_done(&address, &id).await);
    assert_eq!(must(store.get_record(&address, &id).await), None);
    assert!(must(store.list_records(&address).await).is_empty());
}

pub async fn list_records_returns_only_that_mailboxs_records(store: &dyn StateStore) {
    let first = mailbox("list");
    let second = mailbox("list");
    let ids = |records: &[MessageRecord]| -> Vec<String> {
        let mut ids: Vec<String> = records
            .iter()
            .map(|r| r.message_id.as_str().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert!(must(store.list_records(&first).await).is_empty());
    for id in ["m1", "m2", "m3"] {
        must(store.create_record(&record(&first, id)).await);
    }
    for id in ["m2", "m4"] {
        must(store.create_record(&record(&second, id)).await);
    }
    // A cursor and a config of the same mailbox are not records.
    let key = FolderKey {
        mailbox: first.clone(),
        folder: "Inbox".into(),
    };
    must(store.put_cursor(&key, &Cursor::default()).await);
    must(
        store
            .put_mailbox(&config(&first, "Inbox", AfterImport::None))
            .await,
    );

    let listed = must(store.list_records(&first).await);
    assert_eq!(ids(&listed), ["m1", "m2", "m3"]);
    assert!(listed.iter().all(|r| r.mailbox == first));
    assert_eq!(listed[0], record(&first, &listed[0].message_id.to_string()));
    assert_eq!(ids(&must(store.list_records(&second).await)), ["m2", "m4"]);
}

/// More than 1 MB of records: DynamoDB returns at most 1 MB per page, so this needs paging.
pub async fn list_records_pages_through_many_records(store: &dyn StateStore) {
    const COUNT: usize = 260;
    let address = mailbox("many");
    let padding = "x".repeat(5000);
    let records: Vec<MessageRecord> = (0..COUNT)
        .map(|i| MessageRecord {
            subject: Some(format!("{i} {padding}")),
            ..record(&address, &format!("msg-{i:04}"))
        })
        .collect();
    futures::stream::iter(&records)
        .map(|r| store.create_record(r))
        .buffer_unordered(16)
        .try_for_each(|outcome| async move {
            assert_eq!(outcome, CreateOutcome::Created);
            Ok(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let mut listed = must(store.list_records(&address).await);
    assert_eq!(listed.len(), COUNT, "every record exactly once");
    listed.sort_by(|a, b| a.message_id.cmp(&b.message_id));
    assert_eq!(listed, records);
}

pub async fn last_run_is_absent_until_put_and_put_replaces_it(store: &dyn StateStore) {
    let address = mailbox("runs");
    assert_eq!(must(store.last_run(&address).await), None);
    let first = mailroom::domain::RunSummary {
        mailbox: address.clone(),
        started_at: datetime!(2025-03-05 01:30:00 UTC),
        finished_at: datetime!(2025-03-05 01:31:02.5 UTC),
        status: "failed".into(),
        imported: 3,
        failed: 1,
        error: Some("folder 'X' not found".into()),
    };
    must(store.put_run(&first).await);
    assert_eq!(must(store.last_run(&address).await), Some(first.clone()));
    let second = mailroom::domain::RunSummary {
        status: "ok".into(),
        failed: 0,
        error: None,
        ..first
    };
    must(store.put_run(&second).await);
    assert_eq!(must(store.last_run(&address).await), Some(second));
    assert_eq!(must(store.last_run(&mailbox("runs-other")).await), None);
}

pub async fn cursor_is_absent_until_put_and_put_replaces_it(store: &dyn StateStore) {
    let address = mailbox("cursor");
    let inbox = FolderKey {
        mailbox: address.clone(),
        folder: "Inbox".into(),
    };
    let archive = FolderKey {
        mailbox: address.clone(),
        folder: "Archive".into(),
    };
    assert_eq!(must(store.get_cursor(&inbox).await), None);

    let midway = Cursor {
        delta_link: None,
        next_link: Some("https://graph.microsoft.com/v1.0/users/x/mailFolders/inbox/messages/delta?$skiptoken=abc".into()),
    };
    must(store.put_cursor(&inbox, &midway).await);
    assert_eq!(must(store.get_cursor(&inbox).await), Some(midway));

    let complete = Cursor {
        delta_link: Some("https://graph.microsoft.com/v1.0/users/x/mailFolders/inbox/messages/delta?$deltatoken=def".into()),
        next_link: None,
    };
    must(store.put_cursor(&inbox, &complete).await);
    // The next link of the finished round must be gone, not merged.
    assert_eq!(must(store.get_cursor(&inbox).await), Some(complete));
    assert_eq!(must(store.get_cursor(&archive).await), None);
}

pub async fn lease_is_acquired_when_free_and_refused_while_held(store: &dyn StateStore) {
    let lease = format!("mbx-{}", unique());
    assert_eq!(
        must(store.acquire_lease(&lease, "runner-a", at(0), at(60)).await),
        LeaseOutcome::Acquired
    );
    assert_eq!(
        must(
            store
                .acquire_lease(&lease, "runner-b", at(30), at(90))
                .await
        ),
        LeaseOutcome::HeldBy {
            owner: "runner-a".into(),
            until: at(60)
        }
    );
    // Another lease name is independent.
    let other = format!("mbx-{}", unique());
    assert_eq!(
        must(
            store
                .acquire_lease(&other, "runner-b", at(30), at(90))
                .await
        ),
        LeaseOutcome::Acquired
    );
}

pub async fn lease_is_renewed_by_its_owner(store: &dyn StateStore) {
    let lease = format!("mbx-{}", unique());
    must(store.acquire_lease(&lease, "runner-a", at(0), at(60)).await);
    assert_eq!(
        must(
            store
                .acquire_lease(&lease, "runner-a", at(50), at(120))
                .await
        ),
        LeaseOutcome::Acquired
    );
    assert_eq!(
        must(
            store
                .acquire_lease(&lease, "runner-b", at(100), at(160))
                .await
        ),
        LeaseOutcome::HeldBy {
            owner: "runner-a".into(),
            until: at(120)
        }
    );
}

pub async fn lease_is_taken_over_once_expired(store: &dyn StateStore) {
    let lease = format!("mbx-{}", unique());
    must(store.acquire_lease(&lease, "runner-a", at(0), at(60)).await);
    // Held up to, not including, its expiry.
    assert_eq!(
        must(
            store
                .acquire_lease(
                    &lease,
                    "runner-b",
                    at(60) - time::Duration::milliseconds(1),
                    at(120)
                )
                .await
        ),
        LeaseOutcome::HeldBy {
            owner: "runner-a".into(),
            until: at(60)
        }
    );
    assert_eq!(
        must(
            store
                .acquire_lease(&lease, "runner-b", at(60), at(120))
                .await
        ),
        LeaseOutcome::Acquired
    );
    assert_eq!(
        must(
            store
                .acquire_lease(&lease, "runner-a", at(61), at(121))
                .await
        ),
        LeaseOutcome::HeldBy {
            owner: "runner-b".into(),
            until: at(120)
        }
    );
}

pub async fn lease_release_by_another_owner_does_nothing(store: &dyn StateStore) {
    let lease = format!("mbx-{}", unique());
    must(store.acquire_lease(&lease, "runner-a", at(0), at(60)).await);
    must(store.release_lease(&lease, "runner-b").await);
    assert_eq!(
        must(store.acquire_lease(&lease, "runner-b", at(1), at(61)).await),
        LeaseOutcome::HeldBy {
            owner: "runner-a".into(),
            until: at(60)
        }
    );
}

pub async fn released_lease_can_be_taken_by_anyone(store: &dyn StateStore) {
    let lease = format!("mbx-{}", unique());
    // Releasing a lease nobody holds is fine too.
    must(store.release_lease(&lease, "runner-a").await);
    must(store.acquire_lease(&lease, "runner-a", at(0), at(60)).await);
    must(store.release_lease(&lease, "runner-a").await);
    assert_eq!(
        must(store.acquire_lease(&lease, "runner-b", at(1), at(61)).await),
        LeaseOutcome::Acquired
    );
}

// ---- StateStore: subscriptions ----------------------------------------------------------------

/// Every subscription case of the [`StateStore`], in turn.
pub async fn subscription_contract(store: &dyn StateStore) {
    subscription_round_trips_every_field(store).await;
    get_subscription_of_an_unknown_id_is_none(store).await;
    putting_a_subscription_with_the_same_id_replaces_it(store).await;
    subscriptions_are_listed_by_mailbox_folder_then_id(store).await;
    deleting_a_subscription_reports_whether_it_existed(store).await;
    subscription_debug_output_hides_the_client_state(store).await;
}

/// A fresh Graph subscription id.
pub fn subscription_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A complete subscription record with a fresh client state, and times with a fraction of a
/// second.
pub fn subscription(mailbox: &MailboxAddress, folder: &str, id: &str) -> SubscriptionRecord {
    SubscriptionRecord {
        id: id.into(),
        mailbox: mailbox.clone(),
        folder: folder.into(),
        credential: "main".into(),
        client_state: ClientState::generate(),
        expires_at: datetime!(2030-01-03 23:30:15.25 -02:00),
        notification_url: "https://mailroom.example.com/notifications?v=1".into(),
        created_at: datetime!(2030-01-01 00:00:01.5 UTC),
    }
}

/// The store's subscriptions of the given mailboxes, in the store's order.
async fn subscriptions_of(
    store: &dyn StateStore,
    mailboxes: &[&MailboxAddress],
) -> Vec<SubscriptionRecord> {
    must(store.list_subscriptions().await)
        .into_iter()
        .filter(|s| mailboxes.contains(&&s.mailbox))
        .collect()
}

pub async fn subscription_round_trips_every_field(store: &dyn StateStore) {
    let address = mailbox("sub-round-trip");
    let sub = subscription(&address, "Inbox/Deep/Folder #2", &subscription_id());
    must(store.put_subscription(&sub).await);
    let got = must(store.get_subscription(&sub.id).await)
        .unwrap_or_else(|| panic!("subscription {} was not stored", sub.id));
    assert_eq!(got, sub);
    // `==` on the client state is the constant-time comparison a notification's check uses.
    assert!(got.client_state == sub.client_state);
    assert!(got.client_state.matches(sub.client_state.expose()));
    assert_eq!(got.client_state.expose(), sub.client_state.expose());
    assert!(got.client_state != ClientState::generate());
    assert_eq!(subscriptions_of(store, &[&address]).await, vec![sub]);
}

pub async fn get_subscription_of_an_unknown_id_is_none(store: &dyn StateStore) {
    let address = mailbox("sub-unknown");
    must(
        store
            .put_subscription(&subscription(&address, "Inbox", &subscription_id()))
            .await,
    );
    assert_eq!(must(store.get_subscription(&subscription_id()).await), None);
}

pub async fn putting_a_subscription_with_the_same_id_replaces_it(store: &dyn StateStore) {
    let (first_box, second_box) = (mailbox("sub-replace"), mailbox("sub-replace"));
    let id = subscription_id();
    let first = subscription(&first_box, "Inbox", &id);
    must(store.put_subscription(&first).await);
    // Every field but the id differs (a renewal changes only `expires_at`; this is stricter).
    let second = SubscriptionRecord {
        id: id.clone(),
        mailbox: second_box.clone(),
        folder: "Archive".into(),
        credential: "main".into(),
        client_state: ClientState::generate(),
        expires_at: datetime!(2030-01-06 00:00:00 UTC),
        notification_url: "https://mailroom.example.com/notifications?v=2".into(),
        created_at: datetime!(2030-01-02 00:00:00 UTC),
    };
    must(store.put_subscription(&second).await);
    let got = must(store.get_subscription(&id).await);
    assert_eq!(got, Some(second.clone()));
    assert!(got.is_some_and(|g| g.client_state.expose() == second.client_state.expose()));
    assert_eq!(
        subscriptions_of(store, &[&first_box, &second_box]).await,
        vec![second]
    );
}

/// 30 subscriptions of about 40 KB each: more than DynamoDB's 1 MB page, so a complete list needs
/// paging.
pub async fn subscriptions_are_listed_by_mailbox_folder_then_id(store: &dyn StateStore) {
    const COUNT: usize = 30;
    let suffix = unique();
    let addresses = [
        must(MailboxAddress::parse(&format!("a-{suffix}@contoso.com"))),
        must(MailboxAddress::parse(&format!("a-{suffix}.b@contoso.com"))),
        must(MailboxAddress::parse(&format!("b-{suffix}@contoso.com"))),
    ];
    // `Inbox` sorts before `Inbox 2`, but `Inbox#{id}` would sort after `Inbox 2#{id}` (` ` is
    // below `#`): the order must be by the fields, not by one concatenated key.
    let folders = ["Archive", "Inbox", "Inbox 2", "Inbox/Deep #2"];
    let padding = "x".repeat(40 * 1024);
    let mut wanted: Vec<SubscriptionRecord> = (0..COUNT)
        .map(|i| SubscriptionRecord {
            notification_url: format!("https://mailroom.example.com/notifications?pad={padding}"),
            ..subscription(
                &addresses[i % addresses.len()],
                folders[(i / addresses.len()) % folders.len()],
                &format!("{:02}-{}", (i * 7) % COUNT, subscription_id()),
            )
        })
        .collect();
    futures::stream::iter(&wanted)
        .map(|s| store.put_subscription(s))
        .buffer_unordered(8)
        .try_for_each(|()| async { Ok(()) })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wanted.sort_by(|a, b| (&a.mailbox, &a.folder, &a.id).cmp(&(&b.mailbox, &b.folder, &b.id)));

    let listed = subscriptions_of(store, &addresses.iter().collect::<Vec<_>>()).await;
    assert_eq!(listed.len(), COUNT, "every subscription exactly once");
    assert_eq!(listed, wanted);
    // The whole list is in order too, not only this case's part of it.
    let all = must(store.list_subscriptions().await);
    assert!(
        all.windows(2)
            .all(|w| (&w[0].mailbox, &w[0].folder, &w[0].id)
                <= (&w[1].mailbox, &w[1].folder, &w[1].id)),
        "list_subscriptions is not ordered by mailbox, folder, id"
    );
}

pub async fn deleting_a_subscription_reports_whether_it_existed(store: &dyn StateStore) {
    let address = mailbox("sub-delete");
    let kept = subscription(&address, "Archive", &subscription_id());
    let deleted = subscription(&address, "Inbox", &subscription_id());
    must(store.put_subscription(&kept).await);
    must(store.put_subscription(&deleted).await);
    assert!(must(store.delete_subscription(&deleted.id).await));
    assert!(!must(store.delete_subscription(&deleted.id).await));
    assert_eq!(must(store.get_subscription(&deleted.id).await), None);
    assert_eq!(
        subscriptions_of(store, &[&address]).await,
        vec![kept.clone()]
    );
    assert_eq!(must(store.get_subscription(&kept.id).await), Some(kept));
}

pub async fn subscription_debug_output_hides_the_client_state(store: &dyn StateStore) {
    let address = mailbox("sub-debug");
    let sub = subscription(&address, "Inbox", &subscription_id());
    must(store.put_subscription(&sub).await);
    let got = must(store.get_subscription(&sub.id).await);
    let listed = subscriptions_of(store, &[&address]).await;
    let secret = sub.client_state.expose();
    for shown in [
        format!("{sub:?}"),
        format!("{sub:#?}"),
        format!("{got:?}"),
        format!("{listed:?}"),
    ] {
        assert!(shown.contains(&sub.id), "{shown}");
        assert!(
            !shown.contains(secret),
            "the client state is shown: {shown}"
        );
    }
}

// ---- StateStore: alert claims -----------------------------------------------------------------

/// Every alert-claim case of the [`StateStore`], in turn.
pub async fn alert_contract(store: &dyn StateStore) {
    an_alert_is_claimed_once(store).await;
    concurrent_claims_of_one_alert_give_exactly_one_winner(store).await;
    a_released_alert_can_be_claimed_again(store).await;
    alerts_are_listed_per_credential_in_ascending_order(store).await;
}

/// A credential name no other case uses.
pub fn credential(prefix: &str) -> String {
    format!("{prefix}-{}", unique())
}

pub async fn an_alert_is_claimed_once(store: &dyn StateStore) {
    let credential = credential("alert-once");
    let key = "2030-06-30T00:00:00Z#14";
    assert!(must(store.claim_alert(&credential, key, at(0)).await));
    assert!(!must(store.claim_alert(&credential, key, at(0)).await));
    // A retry later, as the next run would make, is refused too.
    assert!(!must(store.claim_alert(&credential, key, at(900)).await));
    assert_eq!(must(store.list_alerts(&credential).await), [key]);
    // The same key of another credential is a different alert.
    assert!(must(
        store
            .claim_alert(&format!("{credential}-other"), key, at(0))
            .await
    ));
}

pub async fn concurrent_claims_of_one_alert_give_exactly_one_winner(store: &dyn StateStore) {
    let credential = credential("alert-race");
    let key = "2030-06-30T00:00:00Z#7";
    let claims =
        futures::future::join_all((0..8).map(|i| store.claim_alert(&credential, key, at(i)))).await;
    let claims: Vec<bool> = claims.into_iter().map(must).collect();
    assert_eq!(claims.iter().filter(|won| **won).count(), 1, "{claims:?}");
    assert_eq!(must(store.list_alerts(&credential).await), [key]);
}

pub async fn a_released_alert_can_be_claimed_again(store: &dyn StateStore) {
    let credential = credential("alert-release");
    let key = "2030-06-30T00:00:00Z#1";
    // Releasing a claim nobody made is fine.
    must(store.release_alert(&credential, key).await);
    assert!(must(store.claim_alert(&credential, key, at(0)).await));
    must(store.release_alert(&credential, key).await);
    assert!(must(store.list_alerts(&credential).await).is_empty());
    assert!(must(store.claim_alert(&credential, key, at(60)).await));
    assert!(!must(store.claim_alert(&credential, key, at(61)).await));
    assert_eq!(must(store.list_alerts(&credential).await), [key]);
}

pub async fn alerts_are_listed_per_credential_in_ascending_order(store: &dyn StateStore) {
    let first = credential("alert-list");
    // A name that extends the first: a prefix match would mix them up.
    let second = format!("{first}-b");
    let keys = [
        "2030-12-01T00:00:00Z#7",
        "2030-06-30T00:00:00Z#14",
        "2030-12-01T00:00:00Z#14",
        "2030-06-30T00:00:00Z#30",
        "2030-06-30T00:00:00Z#1",
    ];
    assert!(must(store.list_alerts(&first).await).is_empty());
    for key in keys {
        assert!(must(store.claim_alert(&first, key, at(0)).await));
    }
    assert!(must(
        store
            .claim_alert(&second, "2030-01-01T00:00:00Z#30", at(0))
            .await
    ));
    let mut ascending = keys.map(str::to_owned).to_vec();
    ascending.sort();
    assert_eq!(must(store.list_alerts(&first).await), ascending);
    assert_eq!(
        must(store.list_alerts(&second).await),
        ["2030-01-01T00:00:00Z#30"]
    );
    assert!(must(store.list_alerts(&credential("alert-none")).await).is_empty());
}

// ---- BlobStore --------------------------------------------------------------------------------

/// Every [`BlobStore`] case, in turn.
pub async fn blob_store_contract(store: &dyn BlobStore) {
    small_body_round_trips(store).await;
    put_replaces_an_existing_object(store).await;
    size_of_a_missing_object_is_none(store).await;
    get_of_a_missing_object_fails(store).await;
    large_streamed_body_round_trips(store).await;
    failing_body_leaves_nothing_new_under_the_key(store).await;
}

/// A key no other case uses.
pub fn blob_key(case: &str) -> String {
    format!("contract/{}/{case}.eml", unique())
}

/// A body from fixed chunks.
pub fn body(chunks: &[&[u8]]) -> ByteStream {
    let chunks: Vec<std::io::Result<Bytes>> = chunks
        .iter()
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

/// `len` bytes of deterministic, incompressible-looking data in chunks of `chunk` bytes, made
/// lazily, and their SHA-256 (hex).
pub fn generated_body(len: usize, chunk: usize) -> (ByteStream, String) {
    let byte = |i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8;
    let mut hasher = Sha256::new();
    for start in (0..len).step_by(chunk) {
        let piece: Vec<u8> = (start..(start + chunk).min(len)).map(byte).collect();
        hasher.update(&piece);
    }
    let digest = hex::encode(hasher.finalize());
    let stream = futures::stream::iter((0..len).step_by(chunk)).map(move |start| {
        Ok(Bytes::from(
            (start..(start + chunk).min(len))
                .map(byte)
                .collect::<Vec<u8>>(),
        ))
    });
    (Box::pin(stream), digest)
}

/// `good` bytes in chunks of `chunk`, then an I/O error, as when Graph resets the connection.
pub fn failing_body(good: usize, chunk: usize) -> ByteStream {
    let (prefix, _) = generated_body(good, chunk);
    let failure = futures::stream::once(async {
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "graph reset the connection",
        ))
    });
    Box::pin(prefix.chain(failure))
}

/// Reads a whole object (small ones: for large ones use [`sha256_of`]).
pub async fn read_all(store: &dyn BlobStore, key: &str) -> Vec<u8> {
    let mut stream = must(store.get(key).await);
    let mut all = Vec::new();
    while let Some(chunk) = stream.next().await {
        all.extend_from_slice(&must(chunk));
    }
    all
}

/// SHA-256 (hex) and length of an object, read as a stream.
pub async fn sha256_of(store: &dyn BlobStore, key: &str) -> (String, u64) {
    let mut stream = must(store.get(key).await);
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = must(chunk);
        len += chunk.len() as u64;
        hasher.update(&chunk);
    }
    (hex::encode(hasher.finalize()), len)
}

pub async fn small_body_round_trips(store: &dyn BlobStore) {
    let key = blob_key("small");
    let mime: &[&[u8]] = &[b"From: a@contoso.com\r\nSubject: hi\r\n", b"\r\nhello\r\n"];
    must(store.put(&key, body(mime)).await);
    assert_eq!(read_all(store, &key).await, mime.concat());
    assert_eq!(
        must(store.size(&key).await),
        Some(mime.concat().len() as u64)
    );
}

pub async fn put_replaces_an_existing_object(store: &dyn BlobStore) {
    let key = blob_key("replace");
    must(store.put(&key, body(&[b"first version, longer"])).await);
    must(store.put(&key, body(&[b"second"])).await);
    assert_eq!(read_all(store, &key).await, b"second");
    assert_eq!(must(store.size(&key).await), Some(6));
}

pub async fn size_of_a_missing_object_is_none(store: &dyn BlobStore) {
    assert_eq!(must(store.size(&blob_key("missing")).await), None);
}

pub async fn get_of_a_missing_object_fails(store: &dyn BlobStore) {
    let key = blob_key("missing");
    match store.get(&key).await {
        Err(BlobError::Unavailable { key: named, .. }) => assert_eq!(named, key),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a missing object was readable"),
    }
}

/// 20 MB in 64 KiB chunks: larger than any part size, so a streaming store must split it.
pub async fn large_streamed_body_round_trips(store: &dyn BlobStore) {
    const LEN: usize = 20 * 1024 * 1024 + 12_345;
    let key = blob_key("large");
    let (stream, digest) = generated_body(LEN, 64 * 1024);
    must(store.put(&key, stream).await);
    assert_eq!(must(store.size(&key).await), Some(LEN as u64));
    assert_eq!(sha256_of(store, &key).await, (digest, LEN as u64));
}

pub async fn failing_body_leaves_nothing_new_under_the_key(store: &dyn BlobStore) {
    let key = blob_key("failing");
    assert_source_error(
        store.put(&key, failing_body(300 * 1024, 64 * 1024)).await,
        &key,
    );
    assert_eq!(must(store.size(&key).await), None);

    let existing = blob_key("failing-replace");
    must(store.put(&existing, body(&[b"the original"])).await);
    assert_source_error(
        store
            .put(&existing, failing_body(300 * 1024, 64 * 1024))
            .await,
        &existing,
    );
    assert_eq!(read_all(store, &existing).await, b"the original");
}

/// Asserts `result` is the source stream's error for `key`.
pub fn assert_source_error(result: Result<(), BlobError>, key: &str) {
    match result {
        Err(BlobError::Source { key: named, source }) => {
            assert_eq!(named, key);
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionReset);
        }
        Err(other) => panic!("expected a source error, got: {other}"),
        Ok(()) => panic!("a put whose body failed succeeded"),
    }
}

// ---- JobQueue ---------------------------------------------------------------------------------

/// A job as the consumer received it: the FIFO group it came in, and the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub group: String,
    pub job: SyncJob,
}

/// Every [`JobQueue`] case, in turn. `clock` is the clock the queue deduplicates by (it only moves
/// when a case advances it, so no case depends on when it runs); `drain` returns the jobs
/// enqueued since its last call, in delivery order.
pub async fn job_queue_contract(
    queue: &dyn JobQueue,
    clock: &ManualClock,
    drain: impl AsyncFn() -> Vec<Delivered>,
) {
    jobs_arrive_in_order_within_each_mailbox(queue, &drain).await;
    identical_jobs_within_a_window_arrive_once(queue, &drain).await;
    the_same_job_in_a_later_window_is_enqueued_again(queue, clock, &drain).await;
    a_continuation_is_never_taken_for_a_repeat(queue, &drain).await;
    enqueue_all_queues_each_job_as_enqueue_would(queue, &drain).await;
}

/// A job for `mailbox`'s `folder`.
pub fn job(mailbox: &MailboxAddress, folder: &str, kind: JobKind) -> SyncJob {
    SyncJob {
        mailbox: mailbox.clone(),
        folder: folder.into(),
        kind,
        slice: 0,
    }
}

pub async fn jobs_arrive_in_order_within_each_mailbox(
    queue: &dyn JobQueue,
    drain: &impl AsyncFn() -> Vec<Delivered>,
) {
    let (a, b) = (mailbox("queue-order-a"), mailbox("queue-order-b"));
    let sent = [
        job(&a, "Inbox", JobKind::Sync),
        job(&b, "Inbox", JobKind::Sync),
        job(&a, "Inbox/Reports", JobKind::Sync),
        job(&b, "Inbox", JobKind::FullResync),
        job(&a, "Inbox", JobKind::FullResync),
        job(&b, "Archive", JobKind::Sync),
    ];
    for j in &sent {
        must(queue.enqueue(j).await);
    }
    let delivered = drain().await;
    for d in &delivered {
        assert_eq!(d.group, d.job.mailbox.as_str(), "group of {:?}", d.job);
    }
    assert_eq!(delivered.len(), sent.len(), "delivered: {delivered:?}");
    for m in [&a, &b] {
        let expected: Vec<&SyncJob> = sent.iter().filter(|j| &j.mailbox == m).collect();
        let got: Vec<&SyncJob> = delivered
            .iter()
            .map(|d| &d.job)
            .filter(|j| &j.mailbox == m)
            .collect();
        assert_eq!(got, expected, "order of {}'s jobs", m.as_str());
    }
}

pub async fn identical_jobs_within_a_window_arrive_once(
    queue: &dyn JobQueue,
    drain: &impl AsyncFn() -> Vec<Delivered>,
) {
    let m = mailbox("queue-dedup");
    let burst = job(&m, "Inbox", JobKind::Sync);
    for _ in 0..3 {
        must(queue.enqueue(&burst).await);
    }
    // Differ in one field each: not duplicates.
    must(queue.enqueue(&job(&m, "Inbox", JobKind::FullResync)).await);
    must(queue.enqueue(&job(&m, "Archive", JobKind::Sync)).await);
    must(queue.enqueue(&burst).await);
    let got: Vec<SyncJob> = drain().await.into_iter().map(|d| d.job).collect();
    assert_eq!(
        got,
        [
            burst,
            job(&m, "Inbox", JobKind::FullResync),
            job(&m, "Archive", JobKind::Sync)
        ]
    );
}

pub async fn the_same_job_in_a_later_window_is_enqueued_again(
    queue: &dyn JobQueue,
    clock: &ManualClock,
    drain: &impl AsyncFn() -> Vec<Delivered>,
) {
    let m = mailbox("queue-window");
    let j = job(&m, "Inbox", JobKind::Sync);
    must(queue.enqueue(&j).await);
    clock.advance(time::Duration::seconds(
        SyncJob::DEDUPLICATION_WINDOW_SECONDS,
    ));
    must(queue.enqueue(&j).await);
    let got: Vec<SyncJob> = drain().await.into_iter().map(|d| d.job).collect();
    assert_eq!(got, [j.clone(), j]);
}

pub async fn a_continuation_is_never_taken_for_a_repeat(
    queue: &dyn JobQueue,
    drain: &impl AsyncFn() -> Vec<Delivered>,
) {
    let m = mailbox("queue-slices");
    let first = SyncJob::mailbox(m.clone());
    let second = first.continuation();
    let third = second.continuation();
    for j in [&first, &first, &second, &third, &third] {
        must(queue.enqueue(j).await);
    }
    let got: Vec<Delivered> = drain().await;
    assert!(got.iter().all(|d| d.group == m.as_str()), "{got:?}");
    let slices: Vec<u32> = got.iter().map(|d| d.job.slice).collect();
    assert_eq!(slices, [0, 1, 2], "each slice once, in order");
}

pub async fn enqueue_all_queues_each_job_as_enqueue_would(
    queue: &dyn JobQueue,
    drain: &impl AsyncFn() -> Vec<Delivered>,
) {
    // More than one SQS batch, three mailboxes, and a repeat that deduplication folds.
    let mailboxes = [
        mailbox("queue-all-a"),
        mailbox("queue-all-b"),
        mailbox("queue-all-c"),
    ];
    let mut jobs: Vec<SyncJob> = (0..23)
        .map(|i| job(&mailboxes[i % 3], &format!("Folder {i:02}"), JobKind::Sync))
        .collect();
    jobs.push(jobs[4].clone());
    assert!(
        queue.enqueue_all(&jobs).await.is_empty(),
        "every job queued"
    );
    let got = drain().await;
    assert_eq!(got.len(), 23, "each job once: {got:?}");
    for m in &mailboxes {
        let sent: Vec<&SyncJob> = jobs[..23].iter().filter(|j| &j.mailbox == m).collect();
        let arrived: Vec<&SyncJob> = got
            .iter()
            .filter(|d| d.group == m.as_str())
            .map(|d| &d.job)
            .collect();
        assert_eq!(arrived, sent, "in order within {m}");
    }
}
