//! Hostile input (issue 16): property-based tests of what Mailroom reads from outside, through
//! its public API. Generated inputs: raw bytes, arbitrary JSON, near-valid Graph and notification
//! payloads (right shape, wrong types, missing fields, huge arrays and strings), environment
//! values, and text with control characters, bidi marks, emoji, path separators, `..` and NUL.
//!
//! Each property runs `PROPTEST_CASES` cases (proptest's default: 256), a slow one a share of
//! them; each prints how many inputs it ran (`-- --nocapture` shows the lines). The long run
//! (tests/README.md, "Hostile input"; `bench` is the optimised profile without LTO):
//!
//! ```text
//! PROPTEST_CASES=20000 cargo test --profile bench -p mailroom --test hostile -- --nocapture
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailroom::adapters::local::DirBlobStore;
use mailroom::adapters::memory::{MemoryJobQueue, MemoryStateStore};
use mailroom::credentials::{AppCredential, ClientAuth};
use mailroom::domain::event::{PREVIEW_CHARS, preview};
use mailroom::domain::job::{JobKind, SyncJob};
use mailroom::domain::{ClientState, MailboxAddress, MessageId, SubscriptionRecord, blob_key};
use mailroom::graph::{
    DeltaStart, GraphClient, GraphConfig, GraphSubscription, MailFolder, MessageSummary, Page,
    RetryPolicy,
};
use mailroom::ports::{BlobStore, ByteStream, Subscriptions};
use mailroom::push::notification::{Notification, NotificationCollection};
use mailroom::push::server::BODY_READ_TIMEOUT;
use mailroom::push::webhook::MAX_BODY_BYTES;
use mailroom::push::{Webhook, WebhookRequest};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// The runner: a share of PROPTEST_CASES per property, counted.

/// Runs `test` on `cases / share` inputs of `strategy` (at least one), prints how many ran, and
/// fails with the smallest failing input proptest finds.
fn check<S>(
    name: &str,
    share: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    // `Config::default()` reads PROPTEST_CASES (proptest's `std` feature); 256 without it.
    let default = Config::default();
    let config = Config {
        cases: (default.cases / share).max(1),
        // Failures become plain #[test]s below, with the minimal input; no files are written.
        failure_persistence: None,
        // A failure that hangs (a loop) costs its timeout per shrinking step: a minute at most.
        max_shrink_time: 60_000,
        ..default
    };
    let ran = AtomicU64::new(0);
    let mut runner = TestRunner::new(config);
    // HOSTILE_TRACE=1 prints every input before it runs: the last one shown is the culprit of
    // a hang.
    let trace = std::env::var_os("HOSTILE_TRACE").is_some();
    let result = runner.run(&strategy, |value| {
        ran.fetch_add(1, Ordering::Relaxed);
        if trace {
            eprintln!("hostile: {name}: {value:?}");
        }
        test(value)
    });
    eprintln!(
        "hostile: {name}: {} generated inputs",
        ran.load(Ordering::Relaxed)
    );
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Bytes that print as text (lossily) when proptest reports a failing input.
#[derive(Clone)]
struct Raw(Vec<u8>);

impl Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = String::from_utf8_lossy(&self.0);
        let shown: String = text.chars().take(2000).collect();
        write!(f, "{} bytes: {shown:?}", self.0.len())
    }
}

fn raw(strategy: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Raw> {
    strategy.prop_map(Raw)
}

// ---------------------------------------------------------------------------------------------
// Generators.

/// Characters that break naive handling: controls, bidi controls, separators, escapes, emoji,
/// the edges of the Unicode range.
const NASTY_CHARS: &[char] = &[
    '\0',
    '\n',
    '\r',
    '\t',
    '\x08',
    '\x1b',
    '\x7f',
    '\u{85}',
    '\u{9b}',
    '\u{202A}',
    '\u{202B}',
    '\u{202C}',
    '\u{202D}',
    '\u{202E}',
    '\u{2066}',
    '\u{2067}',
    '\u{2068}',
    '\u{2069}',
    '\u{200E}',
    '\u{200F}',
    '\u{061C}',
    '\u{200B}',
    '\u{200D}',
    '\u{FEFF}',
    '\u{2028}',
    '\u{2029}',
    '/',
    '\\',
    '.',
    '%',
    '+',
    '=',
    '#',
    '?',
    '&',
    ':',
    '"',
    '\'',
    '<',
    '>',
    '*',
    '|',
    '~',
    '@',
    ' ',
    '\u{1F600}',
    '\u{1F4E7}',
    '\u{1F469}',
    '\u{FFFD}',
    '\u{FFFF}',
    '\u{D7FF}',
    '\u{E000}',
    '\u{10FFFF}',
    'é',
    'ß',
    'İ',
    'ﬃ',
    '中',
];

/// Whole strings that break naive handling.
const NASTY_STRINGS: &[&str] = &[
    "",
    ".",
    "..",
    "...",
    "../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "a/../../b",
    "/absolute",
    "C:\\x",
    "CON",
    "nul",
    "%2e%2e%2f",
    "%00",
    "\u{202E}gnp.exe",
    "\x1b[2J\x1b[31mred",
    "\x1b]0;title\x07",
    "line\r\nBcc: x@y.com",
    "👨\u{200D}👩\u{200D}👧",
    "\u{FEFF}bom",
    " ",
    "*",
    "*#x",
];

fn nasty_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(NASTY_CHARS),
        3 => any::<char>(),
        3 => prop::char::range('a', 'z'),
    ]
}

/// Text of up to `max` characters, mostly short, sometimes one character repeated thousands of
/// times.
fn nasty_string(max: usize) -> BoxedStrategy<String> {
    prop_oneof![
        6 => prop::collection::vec(nasty_char(), 0..max.max(1))
            .prop_map(|chars| chars.into_iter().collect::<String>()),
        2 => prop::sample::select(NASTY_STRINGS).prop_map(str::to_owned),
        1 => (nasty_char(), 256..4096usize).prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
    .boxed()
}

/// Keys Graph and the webhook use, so that arbitrary JSON often has the right names.
const KEYS: &[&str] = &[
    "value",
    "@odata.nextLink",
    "@odata.deltaLink",
    "@odata.type",
    "@removed",
    "id",
    "subject",
    "from",
    "emailAddress",
    "address",
    "name",
    "receivedDateTime",
    "toRecipients",
    "ccRecipients",
    "isRead",
    "internetMessageId",
    "conversationId",
    "bodyPreview",
    "hasAttachments",
    "displayName",
    "parentFolderId",
    "childFolderCount",
    "totalItemCount",
    "unreadItemCount",
    "error",
    "code",
    "message",
    "innerError",
    "expirationDateTime",
    "resource",
    "subscriptionId",
    "clientState",
    "changeType",
    "lifecycleEvent",
    "tenantId",
    "size",
    "contentType",
];

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => nasty_string(12),
    ]
}

/// Date-times as Graph writes them, and near misses.
fn date_time() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            0u32..10_000,
            0u32..14,
            0u32..33,
            0u32..25,
            0u32..61,
            0u32..62
        )
            .prop_map(|(y, mo, d, h, mi, s)| format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"
            )),
        prop::sample::select(vec![
            "2025-02-13T10:17:05Z",
            "2025-02-13T10:17:05.1234567Z",
            "2025-02-13T10:17:05+14:00",
            "2025-02-13T10:17:05-23:59",
            "9999-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
            "2016-12-31T23:59:60Z",
            "+10000-01-01T00:00:00Z",
            "2025-02-13 10:17:05",
            "2025-02-30T00:00:00Z",
            "",
        ])
        .prop_map(str::to_owned),
        nasty_string(24),
    ]
}

fn json_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![0u64, 1, u64::from(u32::MAX) + 1, u64::MAX])
            .prop_map(Value::from),
        nasty_string(48).prop_map(Value::String),
        date_time().prop_map(Value::String),
    ]
    .boxed()
}

/// Any JSON value: nested arrays and objects of the leaves, with Graph's keys.
fn json_value() -> BoxedStrategy<Value> {
    json_leaf()
        .prop_recursive(5, 96, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((json_key(), inner), 0..8)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
            ]
        })
        .boxed()
}

/// A field of a near-valid object: usually the right type, sometimes anything, sometimes absent.
fn field(valid: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        6 => valid.prop_map(Some),
        1 => json_value().prop_map(Some),
        1 => Just(None),
    ]
    .boxed()
}

fn object(fields: Vec<(&'static str, Option<Value>)>, extra: Vec<(String, Value)>) -> Value {
    let mut map: Map<String, Value> = extra.into_iter().collect();
    for (name, value) in fields {
        match value {
            Some(value) => {
                map.insert(name.to_owned(), value);
            }
            None => {
                map.remove(name);
            }
        }
    }
    Value::Object(map)
}

fn text_value() -> BoxedStrategy<Value> {
    nasty_string(64).prop_map(Value::String).boxed()
}

fn recipient() -> BoxedStrategy<Value> {
    (field(text_value()), field(text_value()))
        .prop_map(|(name, address)| {
            json!({"emailAddress": object(vec![("name", name), ("address", address)], vec![])})
        })
        .boxed()
}

/// A message as Graph lists it, each field possibly of the wrong type or missing.
fn near_message() -> BoxedStrategy<Value> {
    (
        (
            field(text_value()),
            field(text_value()),
            field(text_value()),
            field(recipient()),
            field(date_time().prop_map(Value::String)),
            field(any::<bool>().prop_map(Value::Bool)),
        ),
        (
            field(prop::collection::vec(recipient(), 0..4).prop_map(Value::Array)),
            field(prop::collection::vec(recipient(), 0..4).prop_map(Value::Array)),
            field(text_value()),
            prop_oneof![3 => Just(None), 1 => field(Just(json!({"reason": "deleted"})))],
            prop::collection::vec((json_key(), json_leaf()), 0..3),
        ),
    )
        .prop_map(
            |((id, imid, subject, from, received, is_read), (to, cc, preview, removed, extra))| {
                object(
                    vec![
                        ("id", id),
                        ("internetMessageId", imid),
                        ("subject", subject),
                        ("from", from),
                        ("receivedDateTime", received),
                        ("isRead", is_read),
                        ("toRecipients", to),
                        ("ccRecipients", cc),
                        ("bodyPreview", preview),
                        ("@removed", removed),
                    ],
                    extra,
                )
            },
        )
        .boxed()
}

/// A mail folder as Graph lists it, each field possibly of the wrong type or missing.
fn near_folder() -> BoxedStrategy<Value> {
    (
        field(prop::sample::select(vec!["f1", "f2", "f3", "root"]).prop_map(Value::from)),
        field(text_value()),
        field(prop::sample::select(vec!["f1", "f2", "f3", "root"]).prop_map(Value::from)),
        field(
            prop::sample::select(vec![0u64, 1, 2, u64::from(u32::MAX) + 1]).prop_map(Value::from),
        ),
        field(any::<u64>().prop_map(Value::from)),
        field(
            prop::sample::select(vec![
                "#microsoft.graph.mailSearchFolder",
                "#microsoft.graph.mailFolder",
            ])
            .prop_map(Value::from),
        ),
    )
        .prop_map(|(id, name, parent, children, total, kind)| {
            object(
                vec![
                    ("id", id),
                    ("displayName", name),
                    ("parentFolderId", parent),
                    ("childFolderCount", children),
                    ("totalItemCount", total),
                    ("@odata.type", kind),
                ],
                vec![],
            )
        })
        .boxed()
}

/// A paging link: the fake server's own origin (`{SELF}`, replaced when served), another host,
/// or junk.
fn paging_link() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => Just(Value::from("{SELF}/v1.0/next?$skiptoken=1")),
        1 => Just(Value::from("https://evil.example/steal")),
        1 => text_value(),
    ]
    .boxed()
}

/// A page of `items`: `value`, nextLink, deltaLink, each possibly wrong or missing, sometimes
/// with a folder's own fields beside them (one body answering every request).
fn near_page(item: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    (
        field(prop::collection::vec(item, 0..6).prop_map(Value::Array)),
        prop_oneof![2 => Just(None), 1 => field(paging_link())],
        prop_oneof![2 => Just(None), 1 => field(paging_link())],
        prop_oneof![2 => Just(None), 1 => near_folder().prop_map(Some)],
    )
        .prop_map(|(value, next, delta, folder)| {
            let mut page = object(
                vec![
                    ("value", value),
                    ("@odata.nextLink", next),
                    ("@odata.deltaLink", delta),
                ],
                vec![],
            );
            if let (Some(Value::Object(folder)), Value::Object(page)) = (folder, &mut page) {
                page.extend(folder);
            }
            page
        })
        .boxed()
}

/// Graph's error body, `{"error":{"code","message"}}`, each part possibly wrong.
fn near_error() -> BoxedStrategy<Value> {
    (
        field(
            prop_oneof![
                prop::sample::select(vec![
                    "ErrorItemNotFound",
                    "SyncStateNotFound",
                    "ErrorAccessDenied",
                    "InvalidAuthenticationToken",
                    "ApplicationThrottled",
                    "MailboxNotEnabledForRESTAPI",
                ])
                .prop_map(Value::from),
                text_value(),
            ]
            .boxed(),
        ),
        field(text_value()),
    )
        .prop_map(|(code, message)| {
            json!({"error": object(vec![("code", code), ("message", message)], vec![])})
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// The webhook: a fixture of known subscriptions.

/// Known subscriptions: (id, folder, clientState). Long ids and states that generated input
/// does not hit by chance; one folder name is itself hostile, and must be carried opaquely.
const SUBSCRIPTIONS: &[(&str, &str, &str)] = &[
    (
        "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
        "Inbox",
        "3c1b0f5e8a9d4f6b9e2a7c4d1f0b8e6a5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a",
    ),
    (
        "a0c4e2d8-1b3f-4a5c-9e7d-6f8b0a2c4e6d",
        "Reports/\u{202E}fdp.exe 😀",
        "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
    ),
];

struct Fixture {
    webhook: Webhook,
    queue: Arc<MemoryJobQueue>,
    state: Arc<MemoryStateStore>,
}

async fn fixture() -> Fixture {
    let state = Arc::new(MemoryStateStore::default());
    let queue = Arc::new(MemoryJobQueue::default());
    for (id, folder, secret) in SUBSCRIPTIONS {
        state
            .put_subscription(&record(id, folder, secret))
            .await
            .unwrap();
    }
    Fixture {
        webhook: Webhook::new(state.clone(), queue.clone()),
        queue,
        state,
    }
}

fn record(id: &str, folder: &str, secret: &str) -> SubscriptionRecord {
    SubscriptionRecord {
        id: id.into(),
        mailbox: MailboxAddress::parse("ops@contoso.com").unwrap(),
        folder: folder.into(),
        credential: "main".into(),
        client_state: ClientState::from_stored(secret),
        expires_at: time::macros::datetime!(2026-11-26 00:00 UTC),
        notification_url: "https://example.com/notifications".into(),
        created_at: time::macros::datetime!(2026-11-23 00:00 UTC),
    }
}

impl Fixture {
    /// The subscriptions as stored, to compare before and after a request.
    async fn stored(&self) -> Vec<SubscriptionRecord> {
        self.state.list_subscriptions().await.unwrap()
    }
}

/// The statuses the webhook documents (shared/src/push/webhook.rs): 200 for the validation
/// handshake, 202 for an accepted batch, 400/404/405/413/415 for malformed requests (503 only
/// when the store or queue fails, which the memory adapters never do).
const DOCUMENTED: &[u16] = &[200, 202, 400, 404, 405, 413, 415];

/// What the webhook answers to `request`, from its documentation: the status, and for 200 the
/// echoed token.
fn expected_answer(request: &WebhookRequest<'_>) -> (u16, Option<String>) {
    let path = request.path.trim_end_matches('/');
    if !path.ends_with("/notifications") && !path.ends_with("/lifecycle") {
        return (404, None);
    }
    if let Some(query) = request.query
        && let Some((_, token)) =
            url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "validationToken")
    {
        return if token.is_empty() || token.len() > 8 * 1024 {
            (400, None)
        } else {
            (200, Some(token.into_owned()))
        };
    }
    if !request.method.eq_ignore_ascii_case("POST") {
        return (405, None);
    }
    if request.body.len() > MAX_BODY_BYTES {
        return (413, None);
    }
    let json = request
        .content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|c| c.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return (415, None);
    }
    match serde_json::from_slice::<NotificationCollection>(request.body) {
        Ok(_) => (202, None),
        Err(_) => (400, None),
    }
}

/// The jobs a parsed batch calls for (docs/push.md): a known subscription with its own
/// clientState; `created` → sync; `reauthorizationRequired` → resubscribe;
/// `subscriptionRemoved` → resubscribe and full resync; `missed` → full resync; once each per
/// folder and kind.
fn expected_jobs(batch: &Value) -> Vec<(String, JobKind)> {
    let mut jobs: Vec<(String, JobKind)> = Vec::new();
    let Some(items) = batch.get("value").and_then(Value::as_array) else {
        return jobs;
    };
    for item in items {
        let Some(item) = item_fields(item) else {
            continue;
        };
        let text = |name: &str| item.get(name).and_then(Value::as_str);
        let Some((_, folder, secret)) = SUBSCRIPTIONS
            .iter()
            .find(|(id, _, _)| Some(*id) == text("subscriptionId"))
        else {
            continue;
        };
        if text("clientState") != Some(*secret) {
            continue;
        }
        let kinds: &[JobKind] = match (text("lifecycleEvent"), text("changeType")) {
            (Some(e), _) if e.eq_ignore_ascii_case("reauthorizationRequired") => {
                &[JobKind::Resubscribe]
            }
            (Some(e), _) if e.eq_ignore_ascii_case("subscriptionRemoved") => {
                &[JobKind::Resubscribe, JobKind::FullResync]
            }
            (Some(e), _) if e.eq_ignore_ascii_case("missed") => &[JobKind::FullResync],
            (Some(_), _) => &[],
            (None, Some(c)) if c.eq_ignore_ascii_case("created") => &[JobKind::Sync],
            (None, _) => &[],
        };
        for kind in kinds {
            let job = ((*folder).to_owned(), *kind);
            if !jobs.contains(&job) {
                jobs.push(job);
            }
        }
    }
    jobs
}

/// The fields of a notification: an object's, or an array's by position. serde reads a struct
/// from a JSON array too (`["id", "clientState", "created"]`); Graph never sends one, and such
/// a notification meets the same subscription and clientState checks, so it is accepted like
/// the object form. Its validity is serde's own here.
fn item_fields(item: &Value) -> Option<Map<String, Value>> {
    match item {
        Value::Object(fields) => Some(fields.clone()),
        Value::Array(_) => {
            let n: Notification = serde_json::from_value(item.clone()).ok()?;
            let fields = json!({
                "subscriptionId": n.subscription_id,
                "clientState": n.client_state,
                "changeType": n.change_type,
                "lifecycleEvent": n.lifecycle_event,
                "tenantId": n.tenant_id,
            });
            fields.as_object().cloned()
        }
        _ => None,
    }
}

/// Whether a batch deserialises (`shared/src/push/notification.rs`): `value` an array of objects
/// whose `subscriptionId` is a string and whose optional text fields are strings or null (or of
/// arrays serde reads by position, see [`item_fields`]).
fn batch_is_valid(batch: &Value) -> bool {
    let Some(items) = batch.get("value").and_then(Value::as_array) else {
        return false;
    };
    items.iter().all(|item| {
        if item.is_array() {
            return item_fields(item).is_some();
        }
        let Some(item) = item.as_object() else {
            return false;
        };
        let optional_text =
            |name: &str| item.get(name).is_none_or(|v| v.is_null() || v.is_string());
        item.get("subscriptionId").is_some_and(Value::is_string)
            && ["clientState", "changeType", "lifecycleEvent", "tenantId"]
                .into_iter()
                .all(optional_text)
    })
}

fn jobs_of(queue: &MemoryJobQueue) -> Vec<(String, JobKind)> {
    queue
        .jobs()
        .into_iter()
        .map(|SyncJob { folder, kind, .. }| (folder, kind))
        .collect()
}

fn event_name() -> BoxedStrategy<Value> {
    prop_oneof![
        prop::sample::select(vec![
            "created",
            "CREATED",
            "Created",
            "updated",
            "deleted",
            "missed",
            "MISSED",
            "reauthorizationRequired",
            "REAUTHORIZATIONREQUIRED",
            "subscriptionRemoved",
            "subscriptionremoved",
            "somethingNew",
            "created ",
            "creat\u{0}ed",
        ])
        .prop_map(Value::from),
        text_value(),
    ]
    .boxed()
}

/// One notification, near valid: a known or unknown subscription, its clientState or another,
/// each field possibly of the wrong type or missing, and unknown fields.
fn near_notification() -> BoxedStrategy<Value> {
    let subscription = prop_oneof![
        4 => (0..SUBSCRIPTIONS.len()).prop_map(|i| Value::from(SUBSCRIPTIONS[i].0)),
        1 => text_value(),
    ];
    let client_state = prop_oneof![
        4 => (0..SUBSCRIPTIONS.len()).prop_map(|i| Value::from(SUBSCRIPTIONS[i].2)),
        1 => Just(Value::from("")),
        1 => text_value(),
    ];
    (
        field(subscription),
        field(client_state),
        prop_oneof![1 => Just(None), 2 => field(event_name())],
        prop_oneof![2 => Just(None), 1 => field(event_name())],
        prop_oneof![2 => Just(None), 1 => field(text_value())],
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    "resource",
                    "resourceData",
                    "subscriptionExpirationDateTime",
                    "x-extra",
                    "SubscriptionId",
                ]),
                json_value(),
            ),
            0..3,
        ),
    )
        .prop_map(|(id, state, change, lifecycle, tenant, extra)| {
            object(
                vec![
                    ("subscriptionId", id),
                    ("clientState", state),
                    ("changeType", change),
                    ("lifecycleEvent", lifecycle),
                    ("tenantId", tenant),
                ],
                extra.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            )
        })
        .boxed()
}

/// A notification Graph could send for a known subscription: its own clientState, a known or
/// unknown event in any case, optional fields as strings or null, unknown fields of any kind.
fn valid_notification() -> BoxedStrategy<Value> {
    let optional_text = || {
        prop_oneof![
            2 => Just(None),
            1 => Just(Some(Value::Null)),
            2 => event_name().prop_map(Some),
        ]
    };
    (
        0..SUBSCRIPTIONS.len(),
        optional_text(),
        optional_text(),
        prop::option::of(text_value()),
        prop::collection::vec((Just("resourceData"), json_value()), 0..2),
    )
        .prop_map(|(i, change, lifecycle, tenant, extra)| {
            let (id, _, state) = SUBSCRIPTIONS[i];
            object(
                vec![
                    ("subscriptionId", Some(Value::from(id))),
                    ("clientState", Some(Value::from(state))),
                    ("changeType", change),
                    ("lifecycleEvent", lifecycle),
                    ("tenantId", tenant),
                ],
                extra.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            )
        })
        .boxed()
}

/// `notification` with only the fields the webhook reads, an array or object among them
/// emptied (still of the wrong type), a string cut to 64 characters.
fn known_fields(notification: Value) -> Value {
    match notification {
        Value::Object(mut fields) => {
            fields.retain(|k, _| {
                matches!(
                    k.as_str(),
                    "subscriptionId" | "clientState" | "changeType" | "lifecycleEvent" | "tenantId"
                )
            });
            for value in fields.values_mut() {
                match value {
                    Value::Array(items) => items.clear(),
                    Value::Object(inner) => inner.clear(),
                    Value::String(text) => *text = text.chars().take(64).collect(),
                    _ => {}
                }
            }
            Value::Object(fields)
        }
        other => other,
    }
}

/// A batch of near-valid notifications: a few, or a huge array of repeats; `value` sometimes of
/// the wrong type; sometimes a huge padding field.
fn near_batch() -> BoxedStrategy<Value> {
    let notification = prop_oneof![
        3 => valid_notification(),
        1 => near_notification(),
    ];
    let items = prop_oneof![
        3 => prop::collection::vec(valid_notification(), 1..12),
        3 => prop::collection::vec(notification, 0..12),
        3 => prop::collection::vec(near_notification(), 0..12),
        // Huge arrays: one notification repeated, kept small (20,000 copies of a 16 KB string
        // or of a nested value took hundreds of MB of the test's own memory).
        1 => (valid_notification(), 1000..20_000usize)
            .prop_map(|(n, count)| vec![known_fields(n); count]),
        1 => (near_notification(), 1000..20_000usize)
            .prop_map(|(n, count)| vec![known_fields(n); count]),
    ];
    (
        prop_oneof![10 => items.prop_map(|v| Some(Value::Array(v))), 1 => field(json_leaf())],
        prop_oneof![
            8 => Just(None),
            1 => (0..(2 * MAX_BODY_BYTES)).prop_map(|n| Some(Value::from("x".repeat(n)))),
        ],
    )
        .prop_map(|(value, pad)| object(vec![("value", value), ("pad", pad)], vec![]))
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Properties: the webhook.

/// Any request (method, path, query, content type, raw bytes or arbitrary JSON) gets the
/// documented answer and has no side effect: nothing queued, no subscription changed.
#[test]
fn webhook_any_request_gets_a_documented_answer_and_changes_nothing() {
    let rt = runtime();
    let method = prop_oneof![
        4 => Just("POST".to_owned()),
        1 => prop::sample::select(vec!["GET", "post", "PUT", "DELETE", "OPTIONS", "HEAD", "PoSt", ""])
            .prop_map(str::to_owned),
        1 => nasty_string(8),
    ];
    let path = prop_oneof![
        4 => prop::sample::select(vec![
            "/notifications",
            "/lifecycle",
            "/prefix/notifications/",
            "/notifications//",
            "/lifecycle/extra",
            "/",
            "",
            "/../notifications",
            "/%6Eotifications",
        ])
        .prop_map(str::to_owned),
        1 => nasty_string(32),
    ];
    let query = prop_oneof![
        3 => Just(None),
        1 => nasty_string(64).prop_map(Some),
        1 => nasty_string(64).prop_map(|t| Some(format!("validationToken={t}"))),
    ];
    let content_type = prop_oneof![
        4 => Just(Some("application/json".to_owned())),
        1 => prop::sample::select(vec![
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "text/plain",
            "application/jsonx",
            " application/json ;",
            "",
        ])
        .prop_map(|c| Some(c.to_owned())),
        1 => Just(None),
        1 => nasty_string(32).prop_map(Some),
    ];
    let body = raw(prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..2048),
        3 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => json_value().prop_map(|v| serde_json::to_vec(&json!({"value": v})).unwrap()),
        1 => nasty_string(256).prop_map(String::into_bytes),
    ]);
    check(
        "webhook: any request",
        1,
        (method, path, query, content_type, body),
        |(method, path, query, content_type, Raw(body))| {
            rt.block_on(async {
                let f = fixture().await;
                let before = f.stored().await;
                let request = WebhookRequest {
                    method: &method,
                    path: &path,
                    query: query.as_deref(),
                    content_type: content_type.as_deref(),
                    body: &body,
                };
                let answer = f.webhook.handle(request).await;
                let (status, token) = expected_answer(&request);
                prop_assert!(DOCUMENTED.contains(&answer.status), "{answer:?}");
                prop_assert_eq!(answer.status, status);
                if let Some(token) = token {
                    prop_assert_eq!(&answer.body, &token);
                    prop_assert!(answer.content_type.starts_with("text/plain"));
                }
                prop_assert_eq!(jobs_of(&f.queue), vec![]);
                prop_assert_eq!(f.stored().await, before);
                Ok(())
            })
        },
    );
}

/// Near-valid batches: valid ones are accepted (202) and queue exactly the jobs of their known
/// subscriptions with the right clientState; a batch that does not deserialise is refused (400)
/// and queues nothing; one over the size limit is refused (413) before it is parsed.
#[test]
fn webhook_near_valid_batches_queue_exactly_what_they_should() {
    let rt = runtime();
    let path = prop::sample::select(vec!["/notifications", "/lifecycle"]);
    // How the inputs fell, so the mix is measured: refused, accepted, and accepted with jobs.
    let outcomes: [AtomicU64; 4] = Default::default();
    check(
        "webhook: near-valid batches",
        1,
        (path, near_batch()),
        |(path, batch)| {
            rt.block_on(async {
                let f = fixture().await;
                let before = f.stored().await;
                let body = serde_json::to_vec(&batch).unwrap();
                let answer = f
                    .webhook
                    .handle(WebhookRequest {
                        method: "POST",
                        path,
                        query: None,
                        content_type: Some("application/json; charset=utf-8"),
                        body: &body,
                    })
                    .await;
                let (status, jobs) = if body.len() > MAX_BODY_BYTES {
                    (413, vec![])
                } else if batch_is_valid(&batch) {
                    (202, expected_jobs(&batch))
                } else {
                    (400, vec![])
                };
                prop_assert_eq!(answer.status, status, "{}", answer.body);
                let outcome = match (status, jobs.is_empty()) {
                    (413, _) => 0,
                    (400, _) => 1,
                    (_, true) => 2,
                    (_, false) => 3,
                };
                outcomes[outcome].fetch_add(1, Ordering::Relaxed);
                prop_assert_eq!(jobs_of(&f.queue), jobs);
                prop_assert_eq!(f.stored().await, before);
                Ok(())
            })
        },
    );
    let [too_large, malformed, nothing, queued] = outcomes.map(AtomicU64::into_inner);
    eprintln!(
        "hostile: webhook: near-valid batches: {too_large} too large (413), {malformed} malformed (400), {nothing} accepted with no job, {queued} accepted with jobs"
    );
}

/// The validation handshake echoes the decoded token exactly, whatever it holds (controls,
/// bidi marks, emoji, `&`, `=`, `%`), as plain text, between other parameters; an empty or
/// over-long token is refused; nothing is queued.
#[test]
fn webhook_validation_echoes_any_token_exactly() {
    let rt = runtime();
    let token = prop_oneof![
        8 => nasty_string(128),
        1 => (nasty_char(), 2000..3000usize).prop_map(|(c, n)| c.to_string().repeat(n)),
    ];
    let other = prop::collection::vec((nasty_string(8), nasty_string(8)), 0..3);
    check(
        "webhook: validation tokens",
        1,
        (token, other.clone(), other, any::<bool>()),
        |(token, before, after, post)| {
            rt.block_on(async {
                let f = fixture().await;
                let mut query = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in &before {
                    if k != "validationToken" {
                        query.append_pair(k, v);
                    }
                }
                query.append_pair("validationToken", &token);
                for (k, v) in &after {
                    query.append_pair(k, v);
                }
                let query = query.finish();
                let answer = f
                    .webhook
                    .handle(WebhookRequest {
                        method: if post { "POST" } else { "GET" },
                        path: "/notifications",
                        query: Some(&query),
                        content_type: Some("text/plain"),
                        body: b"",
                    })
                    .await;
                if token.is_empty() || token.len() > 8 * 1024 {
                    prop_assert_eq!(answer.status, 400);
                } else {
                    prop_assert_eq!(answer.status, 200);
                    prop_assert_eq!(&answer.body, &token);
                    prop_assert!(answer.content_type.starts_with("text/plain"));
                }
                prop_assert_eq!(jobs_of(&f.queue), vec![]);
                Ok(())
            })
        },
    );
}

// ---------------------------------------------------------------------------------------------
// The webhook over HTTP (shared/src/push/server.rs), on loopback.

struct Served {
    base: String,
    addr: std::net::SocketAddr,
    queue: Arc<MemoryJobQueue>,
}

async fn serve_webhook() -> Served {
    let f = fixture().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = mailroom::push::server::router(f.webhook.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    Served {
        base: format!("http://{addr}"),
        addr,
        queue: f.queue,
    }
}

/// Over real HTTP: arbitrary methods, paths, queries, content-type bytes and bodies get a
/// documented answer and queue nothing.
#[test]
fn webhook_over_http_answers_any_request_as_documented() {
    let rt = runtime();
    let served = rt.block_on(serve_webhook());
    let http = reqwest::Client::new();
    let method = prop::sample::select(vec!["POST", "GET", "PUT", "PATCH", "DELETE", "OPTIONS"]);
    let path = prop_oneof![
        2 => prop::sample::select(vec!["/notifications", "/lifecycle", "/x/notifications/", "/nope"])
            .prop_map(str::to_owned),
        1 => nasty_string(24).prop_map(|p| {
            format!("/{}", url::form_urlencoded::byte_serialize(p.as_bytes()).collect::<String>())
        }),
    ];
    let query = prop_oneof![
        3 => Just(String::new()),
        1 => nasty_string(48).prop_map(|t| {
            format!("?validationToken={}", url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>())
        }),
    ];
    // Header values may hold visible ASCII, spaces, tabs and bytes 0x80-0xFF (not UTF-8).
    let content_type = raw(prop_oneof![
        3 => Just(b"application/json".to_vec()),
        1 => prop::collection::vec(
            prop_oneof![0x20u8..0x7f, Just(b'\t'), 0x80u8..=0xff],
            0..40,
        ),
    ]);
    let body = raw(prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..4096),
        3 => near_batch().prop_map(|b| serde_json::to_vec(&b).unwrap()),
    ]);
    check(
        "webhook over HTTP: any request",
        8,
        (method, path, query, content_type, body),
        |(method, path, query, Raw(content_type), Raw(body))| {
            rt.block_on(async {
                let before = served.queue.jobs().len();
                let url = format!("{}{path}{query}", served.base);
                let answer = http
                    .request(method.parse().unwrap(), &url)
                    .header(
                        "content-type",
                        reqwest::header::HeaderValue::from_bytes(&content_type).unwrap(),
                    )
                    .body(body.clone())
                    .send()
                    .await;
                let status = match answer {
                    Ok(answer) => answer.status().as_u16(),
                    // Over the limit, the server answers 413 as soon as it knows and closes the
                    // connection: the client may see the reset before the answer.
                    Err(_) if body.len() > MAX_BODY_BYTES => 413,
                    Err(e) => return Err(TestCaseError::fail(format!("no answer: {e}"))),
                };
                prop_assert!(DOCUMENTED.contains(&status), "{status}");
                let parsed: Option<Value> = serde_json::from_slice(&body).ok();
                let valid = status == 202 && parsed.as_ref().is_some_and(batch_is_valid);
                let queued = served.queue.jobs().len() - before;
                if !valid {
                    prop_assert_eq!(queued, 0, "status {}", status);
                }
                Ok(())
            })
        },
    );
}

/// Reads an HTTP response head from `stream` (up to the blank line) and returns its status.
async fn read_status(stream: &mut tokio::net::tcp::OwnedReadHalf) -> Option<u16> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ').nth(1)?.parse().ok()
}

/// A body declared as 1 GiB is refused with 413 once the limit is passed: the server reads a
/// little over `MAX_BODY_BYTES`, not the body, so its memory stays bounded. The client keeps
/// writing until it hears the answer; what it managed to write by then is the limit plus what
/// the loopback socket buffers hold, far from the declared size.
#[test]
fn an_oversized_body_is_refused_without_being_read() {
    let rt = runtime();
    rt.block_on(async {
        let served = serve_webhook().await;
        let stream = tokio::net::TcpStream::connect(served.addr).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let declared: u64 = 1 << 30;
        write
            .write_all(
                format!(
                    "POST /notifications HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let written = Arc::new(AtomicU64::new(0));
        let counter = written.clone();
        let writer = tokio::spawn(async move {
            let chunk = vec![b' '; 64 * 1024];
            while counter.load(Ordering::Relaxed) < declared {
                if write.write_all(&chunk).await.is_err() {
                    break;
                }
                counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        });
        let status = tokio::time::timeout(Duration::from_secs(60), read_status(&mut read))
            .await
            .expect("an answer within a minute");
        let sent = written.load(Ordering::Relaxed);
        writer.abort();
        assert_eq!(status, Some(413));
        eprintln!("hostile: oversized body: 413 after the client wrote {sent} of {declared} bytes");
        assert!(
            sent < 64 * MAX_BODY_BYTES as u64,
            "the client wrote {sent} bytes before the answer"
        );
        assert!(served.queue.jobs().is_empty());
    });
}

/// The same without a declared length (chunked): refused once the limit is passed.
#[test]
fn an_oversized_chunked_body_is_refused() {
    let rt = runtime();
    rt.block_on(async {
        let served = serve_webhook().await;
        let stream = futures::stream::iter(
            (0..64).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 64 * 1024]))),
        );
        let answer = reqwest::Client::new()
            .post(format!("{}/notifications", served.base))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await;
        // The server may answer before the client finished sending, and close: either the 413
        // arrives or the connection is cut; never a 2xx.
        if let Ok(answer) = answer {
            assert_eq!(answer.status().as_u16(), 413);
        }
        assert!(served.queue.jobs().is_empty());
    });
}

/// A body that trickles in (a few bytes, then nothing) does not hold the connection for ever:
/// the server stops waiting after `BODY_READ_TIMEOUT` (Graph's 3 seconds, docs/graph.md §6) and
/// answers 408. Nothing is queued.
#[test]
fn a_slow_body_is_cut_off() {
    let rt = runtime();
    rt.block_on(async {
        let served = serve_webhook().await;
        let stream = tokio::net::TcpStream::connect(served.addr).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        write
            .write_all(
                b"POST /notifications HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"value\"",
            )
            .await
            .unwrap();
        // One more byte now and then, never the whole body.
        let writer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if write.write_all(b" ").await.is_err() {
                    break;
                }
            }
        });
        let status = tokio::time::timeout(BODY_READ_TIMEOUT * 10, read_status(&mut read))
            .await
            .expect("the server gave up on the body");
        writer.abort();
        assert_eq!(status, Some(408));
        assert!(served.queue.jobs().is_empty());
    });
}

/// Valid notifications still work over HTTP: the right clientState queues a sync job.
#[test]
fn a_valid_notification_over_http_is_queued() {
    let rt = runtime();
    rt.block_on(async {
        let served = serve_webhook().await;
        let (id, folder, state) = SUBSCRIPTIONS[1];
        let body = json!({"value": [{"subscriptionId": id, "clientState": state, "changeType": "created"}]});
        let answer = reqwest::Client::new()
            .post(format!("{}/notifications", served.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 202);
        assert_eq!(jobs_of(&served.queue), [(folder.to_owned(), JobKind::Sync)]);
    });
}

// ---------------------------------------------------------------------------------------------
// Graph responses: parsing.

/// Arbitrary JSON and near-valid pages parse into Graph's types or fail with an error; the
/// accessors of what parsed never panic.
#[test]
fn graph_payloads_parse_or_fail_cleanly() {
    let payload = prop_oneof![
        2 => json_value(),
        3 => near_page(near_message()),
        2 => near_page(near_folder()),
        1 => near_folder(),
        1 => near_error(),
        1 => (field(text_value()), field(date_time().prop_map(Value::String)), field(text_value()))
            .prop_map(|(id, at, resource)| object(
                vec![("id", id), ("expirationDateTime", at), ("resource", resource)],
                vec![],
            )),
    ];
    check("graph: payloads", 1, payload, |value| {
        let text = serde_json::to_vec(&value).unwrap();
        if let Ok(page) = serde_json::from_slice::<Page<MessageSummary>>(&text) {
            for m in &page.value {
                let _ = (
                    m.from_address(),
                    m.to_addresses(),
                    m.cc_addresses(),
                    m.is_removed(),
                );
            }
        }
        if let Ok(page) = serde_json::from_slice::<Page<MailFolder>>(&text) {
            for f in &page.value {
                let _ = f.is_search_folder();
            }
        }
        let _ = serde_json::from_slice::<MailFolder>(&text);
        let _ = serde_json::from_slice::<GraphSubscription>(&text);
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Graph responses: through the client, from a fake Graph on loopback.

/// What the fake Graph answers: the token endpoint's reply and every Graph request's.
#[derive(Clone)]
struct Scripted {
    token_status: u16,
    token_body: Vec<u8>,
    status: u16,
    retry_after: Option<String>,
    body: Vec<u8>,
}

impl Debug for Scripted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scripted")
            .field("token_status", &self.token_status)
            .field("token_body", &String::from_utf8_lossy(&self.token_body))
            .field("status", &self.status)
            .field("retry_after", &self.retry_after)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

type Script = Arc<Mutex<Option<Scripted>>>;

async fn fake_graph(script: Script) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let own = base.clone();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let script = script.clone();
        let own = own.clone();
        async move {
            let scripted = script.lock().unwrap().clone().unwrap();
            let token = request.uri().path().ends_with("/oauth2/v2.0/token");
            let (status, body) = if token {
                (scripted.token_status, scripted.token_body)
            } else {
                (scripted.status, scripted.body)
            };
            let body = String::from_utf8_lossy(&body)
                .replace("{SELF}", &own)
                .into_bytes();
            let mut response = axum::response::Response::new(axum::body::Body::from(body));
            *response.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
            response.headers_mut().insert(
                "content-type",
                axum::http::HeaderValue::from_static("application/json"),
            );
            if let Some(value) = scripted.retry_after.filter(|_| !token)
                && let Ok(value) = axum::http::HeaderValue::from_str(&value)
            {
                response.headers_mut().insert("retry-after", value);
            }
            response
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    base
}

/// A client of the fake Graph that never sleeps: no retries, no pacing, no CA bundle to read.
fn fake_client(base: &str) -> GraphClient {
    let url = url::Url::parse(base).unwrap();
    let mut config = GraphConfig::new(url.clone(), url);
    config.retry = RetryPolicy {
        max_retries: 0,
        ..RetryPolicy::default()
    };
    config.request_budget = None;
    config.ca_bundle = None;
    config.request_timeout = Duration::from_secs(10);
    config.read_timeout = Duration::from_secs(10);
    GraphClient::new(config).unwrap()
}

fn credential() -> AppCredential {
    AppCredential::new(
        "contoso.onmicrosoft.com",
        "11111111-2222-3333-4444-555555555555",
        ClientAuth::Secret("hunter2-secret-value".to_owned().into()),
    )
}

/// The token endpoint's replies: usually a good token with any lifetime, sometimes junk.
fn token_reply() -> BoxedStrategy<(u16, Vec<u8>)> {
    prop_oneof![
        6 => prop_oneof![
            any::<u64>(),
            prop::sample::select(vec![0u64, 1, 3599, u64::MAX, u64::MAX / 2, 1 << 40]),
        ]
        .prop_map(|expires_in| {
            (200, serde_json::to_vec(&json!({"access_token": "t", "expires_in": expires_in, "token_type": "Bearer"})).unwrap())
        }),
        1 => json_value().prop_map(|v| (200, serde_json::to_vec(&v).unwrap())),
        1 => (prop::sample::select(vec![400u16, 401, 500, 503]), json_value())
            .prop_map(|(s, v)| (s, serde_json::to_vec(&v).unwrap())),
    ]
    .boxed()
}

/// Graph's replies: a page, a folder or an error body, any status, any `Retry-After`.
fn graph_reply() -> BoxedStrategy<Scripted> {
    let status = prop_oneof![
        6 => Just(200u16),
        1 => prop::sample::select(vec![400u16, 401, 403, 404, 409, 410, 429, 500, 502, 503, 504]),
        1 => 100u16..600,
    ];
    let retry_after = prop_oneof![
        2 => Just(None),
        1 => prop::sample::select(vec![
            "0", "1", "2.5", "-1", "1e300", "1e20", "18446744073709551616", "inf", "NaN", "1e-300",
            "Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "junk", "",
        ])
        .prop_map(|s| Some(s.to_owned())),
        1 => any::<f64>().prop_map(|f| Some(f.to_string())),
    ];
    let body = prop_oneof![
        3 => near_page(near_message()).prop_map(|v| serde_json::to_vec(&v).unwrap()),
        2 => near_page(near_folder()).prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => near_folder().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        2 => near_error().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ];
    (token_reply(), status, retry_after, body)
        .prop_map(
            |((token_status, token_body), status, retry_after, body)| Scripted {
                token_status,
                token_body,
                status,
                retry_after,
                body,
            },
        )
        .boxed()
}

/// Every reading call of the mailbox client, on any reply: Ok or an error, within a deadline
/// (no loop on a paging link that leads back to itself, no folder tree that never ends), never a
/// panic.
#[test]
fn graph_client_survives_any_reply() {
    let rt = runtime();
    let script: Script = Arc::default();
    let base = rt.block_on(fake_graph(script.clone()));
    let call = 0..8u8;
    let succeeded = AtomicU64::new(0);
    check(
        "graph client: any reply",
        4,
        (graph_reply(), call, nasty_string(32)),
        |(scripted, call, text)| {
            *script.lock().unwrap() = Some(scripted);
            let outcome = rt.block_on(async {
                // A fresh client per case: the token cache must not carry a reply over.
                let graph = fake_client(&base);
                let mailbox = graph.mailbox(
                    credential(),
                    MailboxAddress::parse("ops@contoso.com").unwrap(),
                );
                let id = MessageId::new(text.clone());
                let run = async {
                    match call {
                        0 => mailbox.first_messages(&text, 50).await.map(drop),
                        1 => mailbox
                            .delta_page(DeltaStart::Initial { folder_id: &text }, 50)
                            .await
                            .map(drop),
                        2 => {
                            let link = format!("{base}/v1.0/users/x/delta?{text}");
                            mailbox
                                .delta_page(DeltaStart::Link(&link), 50)
                                .await
                                .map(drop)
                        }
                        3 => mailbox.child_folders(None).await.map(drop),
                        4 => mailbox.folder_tree().await.map(drop),
                        5 => mailbox.get_folder(&text).await.map(drop),
                        6 => mailbox.attachments(&id).await.map(drop),
                        _ => {
                            use futures::StreamExt;
                            match mailbox.mime(&id).await {
                                Ok(mut stream) => {
                                    while let Some(chunk) = stream.next().await {
                                        if chunk.is_err() {
                                            break;
                                        }
                                    }
                                    Ok(())
                                }
                                Err(e) => Err(e),
                            }
                        }
                    }
                };
                tokio::time::timeout(Duration::from_secs(10), run).await
            });
            match outcome {
                Err(_) => Err(TestCaseError::fail("no answer within 10 s: a loop?")),
                Ok(Ok(())) => {
                    succeeded.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Ok(Err(e)) => {
                    prop_assert!(!e.to_string().is_empty());
                    Ok(())
                }
            }
        },
    );
    eprintln!(
        "hostile: graph client: any reply: {} calls succeeded, the rest failed with an error",
        succeeded.into_inner()
    );
}

// ---------------------------------------------------------------------------------------------
// Environment configuration (shared/src/config.rs).

/// Values for environment variables: numbers in and out of range, huge, negative, fractional,
/// URLs, addresses, flags, and anything else.
fn env_value() -> BoxedStrategy<Option<String>> {
    prop_oneof![
        2 => Just(None),
        2 => any::<u64>().prop_map(|n| Some(n.to_string())),
        2 => (0u64..2000).prop_map(|n| Some(n.to_string())),
        1 => prop::sample::select(vec![
            "-1", "0", "1.5", "1e3", "99999999999999999999999", " 15 ", "true", "FALSE", "yes",
            "none", "https://graph.microsoft.com", "http://[::1]:8080/", "https://x.com/?a=1",
            "ftp://x", "https://", "a@b.com", "a@b.com, c@d.com", ",,,", "30,14,7", "0,1",
            "arn:aws:sns:eu-west-1:123456789012:t", "https://abc.lambda-url.eu-west-1.on.aws/",
        ])
        .prop_map(|s| Some(s.to_owned())),
        2 => nasty_string(48).prop_map(Some),
    ]
    .boxed()
}

const ENV_NAMES: &[&str] = &[
    "MAILROOM_TABLE",
    "MAILROOM_BUCKET",
    "MAILROOM_S3_PATH_STYLE",
    "MAILROOM_SECRET_CACHE_SECONDS",
    "MAILROOM_GRAPH_URL",
    "MAILROOM_LOGIN_URL",
    "MAILROOM_GRAPH_MAX_IN_FLIGHT",
    "MAILROOM_GRAPH_BUDGET_REQUESTS",
    "MAILROOM_GRAPH_BUDGET_SECONDS",
    "MAILROOM_MAILBOX_PARALLELISM",
    "MAILROOM_STOP_MARGIN_SECONDS",
    "MAILROOM_WEBHOOK_URL",
    "MAILROOM_SUBSCRIPTION_MINUTES",
    "MAILROOM_SUBSCRIPTION_RENEW_HOURS",
    "MAILROOM_QUEUE_URL",
    "MAILROOM_DISCOVER_HOURS",
    "MAILROOM_JOB_SLICE_SECONDS",
    "MAILROOM_EVENT_BUS",
    "MAILROOM_OUTBOX_DLQ_URL",
    "MAILROOM_OUTBOX_MAX_RECEIVES",
    "MAILROOM_ALERT_TOPIC_ARN",
    "MAILROOM_ALERT_MAIL_FROM",
    "MAILROOM_ALERT_MAIL_TO",
    "MAILROOM_ALERT_MAIL_CREDENTIAL",
    "MAILROOM_EXPIRY_THRESHOLDS",
    "MAILROOM_ROTATION_SECRET_DAYS",
];

/// Any environment: every settings type of the functions parses or fails with problems that
/// each name the variable at fault.
#[test]
fn env_config_parses_or_names_the_variable() {
    use mailroom::config::{
        AwsSettings, ExpirySettings, ImportSettings, OutboxSettings, WebhookSettings,
    };
    let env = prop::collection::vec(env_value(), ENV_NAMES.len()..=ENV_NAMES.len());
    check("config: environment", 1, env, |values| {
        let vars: BTreeMap<&str, String> = ENV_NAMES
            .iter()
            .zip(values)
            .filter_map(|(name, value)| Some((*name, value?)))
            .collect();
        let lookup = |name: &str| vars.get(name).cloned();
        let problems = [
            AwsSettings::from_lookup(lookup).err(),
            ImportSettings::from_lookup(lookup).err(),
            OutboxSettings::from_lookup(lookup).err(),
            WebhookSettings::from_lookup(lookup).err(),
            ExpirySettings::from_lookup(lookup).err(),
        ];
        for error in problems.into_iter().flatten() {
            prop_assert!(!error.problems.is_empty());
            for problem in &error.problems {
                prop_assert!(
                    ENV_NAMES.iter().any(|name| problem.contains(name)),
                    "a problem that names no variable: {problem}"
                );
            }
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Text from mail: addresses, message ids, subjects, folder names in keys, file names and
// previews.

fn is_bidi_control(c: char) -> bool {
    // Unicode's Bidi_Control property (PropList.txt).
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Mailbox-address candidates: hostile text around a valid skeleton, and hostile text alone.
fn address_candidate() -> BoxedStrategy<String> {
    prop_oneof![
        3 => (nasty_string(24), nasty_string(24), nasty_string(8)).prop_map(|(local, domain, tld)| {
            format!("{local}@{domain}.{tld}")
        }),
        1 => (1usize..400).prop_map(|n| format!("{}@contoso.com", "a".repeat(n))),
        1 => nasty_string(64),
    ]
    .boxed()
}

/// Message ids: Graph's base64-ish ids, and anything else Graph (or something posing as it)
/// could send.
fn message_id() -> BoxedStrategy<String> {
    prop_oneof![
        2 => proptest::string::string_regex("[A-Za-z0-9+/=_-]{1,200}").unwrap(),
        3 => nasty_string(300),
        1 => (1usize..2000).prop_map(|n| "A".repeat(n)),
    ]
    .boxed()
}

/// Times as Graph sends them (RFC 3339, years 0001 to 9998 once in UTC), in any offset.
fn received_at() -> impl Strategy<Value = time::OffsetDateTime> {
    (-62_135_596_800i64..253_370_764_800, -86_399i32..86_399).prop_map(|(at, offset)| {
        time::OffsetDateTime::from_unix_timestamp(at)
            .unwrap()
            .to_offset(time::UtcOffset::from_whole_seconds(offset).unwrap_or(time::UtcOffset::UTC))
    })
}

/// Mailbox addresses accept no text that would be unsafe in a key or on a terminal: what
/// parses is lowercase, at most 254 bytes (RFC 5321's path limit), without whitespace, control
/// or bidi characters, `/`, `\` or `#`.
#[test]
fn mailbox_addresses_that_parse_are_safe_in_keys() {
    check("text: mailbox addresses", 1, address_candidate(), |raw| {
        if let Ok(address) = MailboxAddress::parse(&raw) {
            let s = address.as_str();
            prop_assert!(s.len() <= 254, "{} bytes", s.len());
            prop_assert!(
                !s.chars().any(|c| c.is_whitespace()
                    || c.is_control()
                    || is_bidi_control(c)
                    || matches!(c, '/' | '\\' | '#')),
                "{s:?}"
            );
            prop_assert_eq!(address.to_string(), s);
        }
        Ok(())
    });
}

/// The blob key of any message is safe as an S3 key and as a path: five segments
/// (`mailbox/yyyy/mm/dd/id.eml`), none empty, `.` or `..`; no control or bidi character, `\`
/// or NUL; at most 1,024 bytes (S3's limit) and 255 bytes a segment (a file name's limit); and
/// the same message always gets the same key.
#[test]
fn blob_keys_are_safe_for_any_message_id() {
    check(
        "text: blob keys",
        1,
        (address_candidate(), message_id(), received_at()),
        |(address, id, at)| {
            let Ok(mailbox) = MailboxAddress::parse(&address) else {
                return Ok(());
            };
            let id = MessageId::new(id);
            let key = blob_key(&mailbox, &id, at);
            prop_assert!(key.len() <= 1024, "{} bytes", key.len());
            let segments: Vec<&str> = key.split('/').collect();
            prop_assert_eq!(segments.len(), 5, "{:?}", key);
            for segment in &segments {
                prop_assert!(!matches!(*segment, "" | "." | ".."), "{key:?}");
                prop_assert!(segment.len() <= 255, "a {} byte segment", segment.len());
            }
            // The local store's temporary name, `.{name}.tmp-{32 hex}`, must fit too.
            prop_assert!(
                segments[4].len() + 38 <= 255,
                "a {} byte file name",
                segments[4].len()
            );
            prop_assert!(
                !key.chars()
                    .any(|c| c.is_control() || is_bidi_control(c) || c == '\\'),
                "{key:?}"
            );
            prop_assert!(segments[4].ends_with(".eml"));
            prop_assert_eq!(key.clone(), blob_key(&mailbox, &id, at));
            Ok(())
        },
    );
}

/// Two different message ids never share a key (but for the `/`→`_` and `+`→`-` spelling that
/// keys have always had, which Graph's ids, in one alphabet or the other, never mix).
#[test]
fn blob_keys_of_different_ids_differ() {
    let mailbox = MailboxAddress::parse("ops@contoso.com").unwrap();
    let at = time::macros::datetime!(2025-03-05 01:31 UTC);
    check(
        "text: blob keys differ",
        1,
        (message_id(), message_id()),
        |(a, b)| {
            let same_spelling = |s: &str| s.replace('/', "_").replace('+', "-");
            if a != b && same_spelling(&a) != same_spelling(&b) {
                prop_assert_ne!(
                    blob_key(&mailbox, &MessageId::new(a), at),
                    blob_key(&mailbox, &MessageId::new(b), at)
                );
            }
            Ok(())
        },
    );
}

/// The local blob store writes any message's key as a file under its root, at the path the key
/// names, and nowhere else.
#[test]
fn the_local_blob_store_keeps_any_key_under_its_root() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = DirBlobStore::new(dir.path());
    check(
        "text: local blob files",
        8,
        (address_candidate(), message_id(), received_at()),
        |(address, id, at)| {
            let Ok(mailbox) = MailboxAddress::parse(&address) else {
                return Ok(());
            };
            let key = blob_key(&mailbox, &MessageId::new(id), at);
            let body: ByteStream = Box::pin(futures::stream::iter([Ok(
                bytes::Bytes::from_static(b"Subject: x\r\n\r\nbody"),
            )]));
            rt.block_on(store.put(&key, body))
                .map_err(|e| TestCaseError::fail(format!("{key:?}: {e}")))?;
            let path = dir.path().join(&key);
            prop_assert!(path.is_file(), "{}", path.display());
            prop_assert!(path.starts_with(dir.path()));
            Ok(())
        },
    );
}

/// Records keep any text exactly: a subject, sender, folder, Internet message id and message id
/// with controls, NUL, bidi marks, emoji or separators are stored in SQLite and read back
/// unchanged (they are data; only keys, file names and terminal output are encoded).
#[test]
fn records_store_any_text_exactly() {
    use mailroom::adapters::local::SqliteStateStore;
    use mailroom::domain::{MessageRecord, RecordState};
    use mailroom::ports::{CreateOutcome, MessageRecords};
    let rt = runtime();
    let store = SqliteStateStore::in_memory().unwrap();
    let text = || prop::option::of(nasty_string(128));
    check(
        "text: records",
        1,
        (
            message_id(),
            nasty_string(64),
            text(),
            text(),
            text(),
            received_at(),
        ),
        |(id, folder, subject, from, internet_message_id, at)| {
            let mailbox = MailboxAddress::parse("ops@contoso.com").unwrap();
            let id = MessageId::new(id);
            let record = MessageRecord {
                blob_key: blob_key(&mailbox, &id, at),
                mailbox: mailbox.clone(),
                message_id: id.clone(),
                folder,
                internet_message_id,
                subject,
                from,
                received_at: at.replace_nanosecond(0).unwrap(),
                size: 1,
                sha256: "ab".repeat(32),
                imported_at: time::macros::datetime!(2025-03-05 01:31 UTC),
                state: RecordState::Stored,
            };
            rt.block_on(async {
                let stored = match store.create_record(&record).await.unwrap() {
                    // Two generated ids can be equal: the first record stays.
                    CreateOutcome::AlreadyStored(_) => return Ok(()),
                    CreateOutcome::Created => store.get_record(&mailbox, &id).await.unwrap(),
                };
                prop_assert_eq!(stored, Some(record));
                Ok(())
            })
        },
    );
}

/// An event's preview of any text has no control or bidi character, no leading, trailing or
/// repeated whitespace, and at most `PREVIEW_CHARS` characters; ordinary characters (emoji
/// among them) survive.
#[test]
fn previews_of_any_text_are_safe_to_show() {
    check("text: previews", 1, nasty_string(512), |text| {
        let shown = preview(&text);
        prop_assert!(shown.chars().count() <= PREVIEW_CHARS);
        prop_assert!(
            !shown.chars().any(|c| c.is_control() || is_bidi_control(c)),
            "{shown:?}"
        );
        prop_assert_eq!(shown.trim(), shown.as_str());
        prop_assert!(!shown.contains("  "));
        let kept: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && !c.is_control() && !is_bidi_control(*c))
            .take(PREVIEW_CHARS / 2)
            .collect();
        let shown_kept: String = shown.chars().filter(|c| !c.is_whitespace()).collect();
        prop_assert!(shown_kept.starts_with(&kept), "{shown:?} lost {kept:?}");
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Regressions: each bug the properties found, with its minimal input.

/// Any text is shown (`mailroom::domain::shown`) without a control or bidi character; text that
/// has none is shown as it is.
#[test]
fn shown_text_has_no_control_or_bidi_character() {
    check("text: shown", 1, nasty_string(256), |text| {
        let shown = mailroom::domain::shown(&text);
        prop_assert!(
            !shown.chars().any(|c| c.is_control() || is_bidi_control(c)),
            "{shown:?}"
        );
        if !text.chars().any(|c| c.is_control() || is_bidi_control(c)) {
            prop_assert_eq!(shown.as_ref(), text.as_str());
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Regressions: each bug the properties found, with its minimal input.

fn good_token() -> Vec<u8> {
    br#"{"access_token":"t","expires_in":3599,"token_type":"Bearer"}"#.to_vec()
}

/// Runs `call` against a fake Graph answering `scripted` to everything.
fn against<T>(
    scripted: Scripted,
    call: impl AsyncFnOnce(&mailroom::graph::MailboxClient) -> T,
) -> T {
    let rt = runtime();
    rt.block_on(async {
        let script: Script = Arc::new(Mutex::new(Some(scripted)));
        let base = fake_graph(script).await;
        let graph = fake_client(&base);
        let mailbox = graph.mailbox(
            credential(),
            MailboxAddress::parse("ops@contoso.com").unwrap(),
        );
        tokio::time::timeout(Duration::from_secs(10), call(&mailbox))
            .await
            .expect("an answer within 10 s")
    })
}

fn ok_reply(body: Value) -> Scripted {
    Scripted {
        token_status: 200,
        token_body: good_token(),
        status: 200,
        retry_after: None,
        body: serde_json::to_vec(&body).unwrap(),
    }
}

/// `expires_in` of u64::MAX made the token's refresh time overflow an Instant: a panic
/// (shared/src/graph/auth.rs).
#[test]
fn regression_a_huge_token_lifetime_does_not_panic() {
    let scripted = Scripted {
        token_body: format!(r#"{{"access_token":"t","expires_in":{}}}"#, u64::MAX).into_bytes(),
        ..ok_reply(json!({"value": []}))
    };
    let page = against(scripted, async |m| m.first_messages("inbox", 10).await);
    assert!(page.unwrap().value.is_empty());
}

/// `Retry-After: 1e300` made `Duration::from_secs_f64` panic (shared/src/graph/error.rs); it is
/// now the longest wait, capped by the retry policy.
#[test]
fn regression_a_huge_retry_after_does_not_panic() {
    let scripted = Scripted {
        status: 429,
        retry_after: Some("1e300".into()),
        ..ok_reply(json!({"error": {"code": "ApplicationThrottled", "message": "slow down"}}))
    };
    let err = against(scripted, async |m| m.first_messages("inbox", 10).await).unwrap_err();
    assert!(err.is_throttled(), "{err}");
}

/// A nextLink leading back to the page just read was followed for ever
/// (shared/src/graph/folders.rs, messages.rs, directory.rs): now an error.
#[test]
fn regression_a_paging_link_back_to_itself_ends_the_listing() {
    let body = json!({"@odata.nextLink": "{SELF}/v1.0/next?$skiptoken=1", "value": []});
    let err = against(ok_reply(body.clone()), async |m| {
        m.child_folders(None).await
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("leads back to a page already read"),
        "{err}"
    );
    let err = against(ok_reply(body), async |m| {
        m.attachments(&MessageId::new("AAMk")).await
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("leads back to a page already read"),
        "{err}"
    );
}

/// A folder listed among its own children made the folder tree grow for ever
/// (shared/src/graph/folders.rs): each folder is now placed once.
#[test]
fn regression_a_folder_among_its_own_descendants_is_listed_once() {
    // One body answers every request: the root is `root`, and every listing (the top level and
    // each folder's children) holds `f1`, which says it has a child.
    let body = json!({
        "id": "root",
        "value": [{"id": "f1", "displayName": "Loop", "childFolderCount": 1}]
    });
    let tree = against(ok_reply(body), async |m| m.folder_tree().await).unwrap();
    let paths: Vec<&str> = tree.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(paths, ["Loop"]);
}

/// Message ids went into keys raw: NUL, `\`, `..` and controls reached S3 keys and file names,
/// and a long id made a file name (or the local store's temporary name beside it, 38 bytes
/// longer) over 255 bytes (shared/src/domain/mod.rs).
#[test]
fn regression_blob_keys_encode_what_is_not_base64_and_stay_short() {
    let mailbox = MailboxAddress::parse("a@contoso.com").unwrap();
    let at = time::macros::datetime!(1970-01-01 00:00 UTC);
    let key = |id: &str| blob_key(&mailbox, &MessageId::new(id), at);
    assert_eq!(key("\0"), "a@contoso.com/1970/01/01/%00.eml");
    assert_eq!(key(".."), "a@contoso.com/1970/01/01/%2E%2E.eml");
    assert_eq!(key("a\\b"), "a@contoso.com/1970/01/01/a%5Cb.eml");
    assert_eq!(key("\u{202E}"), "a@contoso.com/1970/01/01/%E2%80%AE.eml");
    // Graph's ids keep the keys they always had.
    assert_eq!(key("AAMk/a+b="), "a@contoso.com/1970/01/01/AAMk_a-b=.eml");
    // The local store's temporary name is the file name plus 38 bytes: both within 255.
    let long = key(&"A".repeat(201));
    let name = long.rsplit('/').next().unwrap();
    assert_eq!(name.len(), 160 + 1 + 32 + 4, "{name}");
    assert!(
        name.starts_with(&"A".repeat(160)) && name.contains('~'),
        "{name}"
    );
    assert_eq!(key(&"A".repeat(200)).rsplit('/').next().unwrap().len(), 204);
}

/// A mailbox address of any length was accepted; over 255 bytes it made a directory name the
/// local store cannot create (shared/src/domain/mod.rs). RFC 5321 allows 254.
#[test]
fn regression_addresses_over_254_bytes_are_refused() {
    let at = |n: usize| format!("{}@contoso.com", "a".repeat(n));
    assert!(MailboxAddress::parse(&at(254 - 12)).is_ok());
    let err = MailboxAddress::parse(&at(255 - 12)).unwrap_err();
    assert_eq!(err.field, "mailbox address");
}

/// Previews kept U+061C (ARABIC LETTER MARK, a bidi control) and could end with a space when
/// cut at `PREVIEW_CHARS` (shared/src/domain/event.rs).
#[test]
fn regression_previews_drop_every_bidi_control_and_end_without_a_space() {
    assert_eq!(preview("\u{061C}"), "");
    let cut = format!("{} b", "a".repeat(PREVIEW_CHARS - 1));
    assert_eq!(preview(&cut), "a".repeat(PREVIEW_CHARS - 1));
}
