//! The DynamoDB adapter's unit tests: IAM actions against the code, item mapping.

/// The adapter's source, every file; `mod.rs` last, because the SDK-call scan stops at its
/// `mod tests` line.
const SOURCE: &str = concat!(
    include_str!("alerts.rs"),
    include_str!("cursors.rs"),
    include_str!("discovery.rs"),
    include_str!("events.rs"),
    include_str!("leases.rs"),
    include_str!("mailboxes.rs"),
    include_str!("records.rs"),
    include_str!("runs.rs"),
    include_str!("subscriptions.rs"),
    include_str!("mod.rs"),
);

/// The DynamoDB actions the bodies of the named store methods call for (following the helpers
/// that wrap an SDK call: `self.get_item`, `self.put`, `self.query_prefix` and
/// `self.conditional_put`).
fn actions_of(methods: &[&str]) -> std::collections::BTreeSet<&'static str> {
    let source = SOURCE;
    let calls = [
        (".get_item()", "dynamodb:GetItem"),
        ("self.get_item(", "dynamodb:GetItem"),
        ("self.put(", "dynamodb:PutItem"),
        (".query_prefix(", "dynamodb:Query"),
        (".conditional_put(", "dynamodb:PutItem"),
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
/// The outbox function's only state access: which credential a mailbox sends with, and the
/// configured mailboxes an error names (infra/template.yaml grants it dynamodb:Query alone).
#[test]
fn sending_reads_the_state_store_with_queries_only() {
    assert_eq!(
        actions_of(&["mailbox_folders", "list_mailboxes"]),
        std::collections::BTreeSet::from(["dynamodb:Query"])
    );
}

/// `SubscriptionLookup::get_subscription`.
#[test]
fn the_webhooks_dynamodb_actions_are_those_of_get_subscription() {
    assert_eq!(
        actions_of(&["get_subscription"]),
        dynamodb_part(crate::push::Webhook::IAM_ACTIONS)
    );
}

/// The secret-expiry function's role gets exactly these: its store access is typed down to
/// `MailboxConfigs::list_mailboxes` and `AlertClaims`.
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
    let called = crate::adapters::aws::sdk_calls(SOURCE, &["pub async fn create_table"]);
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
            discovered_by: None,
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
        discovered_by: None,
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
