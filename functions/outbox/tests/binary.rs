//! The built `mailroom-outbox` binary, run as Lambda runs it (a Runtime API on loopback), against
//! the Graph sandbox and moto (docs/sending.md): what cannot be sent goes to the dead-letter queue
//! with its reason, what may succeed later goes back to the queue, and a request sends once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use graph_sandbox::{DEFAULT_CLIENT_ID, DEFAULT_TENANT, Mailbox, World};
use mailroom::domain::AfterImport;
use mailroom_tests::lambda::{Outcome, RuntimeApi, sqs_event, sqs_record};
use mailroom_tests::stack::Stack;
use serde_json::{Value, json};

const FROM: &str = "ops@contoso.com";
const TO: &str = "someone@contoso.com";

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mailroom-outbox"))
}

fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mailroom-outbox-{name}-{}.log", std::process::id()))
}

struct Rig {
    stack: Stack,
    dead_letters: String,
}

impl Rig {
    async fn start() -> Rig {
        let world = World::default_test()
            .mailbox(DEFAULT_TENANT, Mailbox::new(FROM).folder("Inbox/Alerts"))
            .mailbox(DEFAULT_TENANT, Mailbox::new(TO));
        let stack = Stack::start(world).await;
        stack
            .sandbox
            .set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.ReadWrite", "Mail.Send"]);
        stack
            .configure(FROM, "Inbox/Alerts", AfterImport::None)
            .await;
        let (_, dead_letters) = stack.moto.fresh_fifo_queue().await;
        Rig {
            stack,
            dead_letters,
        }
    }

    fn env(&self, graph_url: &str) -> Vec<(&'static str, String)> {
        vec![
            ("MAILROOM_TABLE", self.stack.state.table().to_owned()),
            ("MAILROOM_BUCKET", self.stack.bucket.clone()),
            ("MAILROOM_S3_PATH_STYLE", "true".into()),
            ("MAILROOM_OUTBOX_DLQ_URL", self.dead_letters.clone()),
            ("MAILROOM_OUTBOX_MAX_RECEIVES", "3".into()),
            ("MAILROOM_GRAPH_URL", graph_url.to_owned()),
            ("MAILROOM_LOGIN_URL", graph_url.to_owned()),
            ("AWS_ENDPOINT_URL", self.stack.moto.endpoint()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("RUST_LOG", "info".into()),
        ]
    }

    /// One invocation with `records`: the batch response and the log.
    async fn invoke(
        &self,
        env: &[(&'static str, String)],
        records: Vec<Value>,
        name: &str,
    ) -> (Value, String) {
        let runtime = RuntimeApi::start().await;
        let log = log_path(name);
        let mut function = runtime.spawn(binary(), env, &log);
        let id = runtime.invoke(sqs_event(records), Duration::from_secs(120));
        let outcome = runtime.outcome(&id, Duration::from_secs(90)).await;
        function.kill().ok();
        function.wait().ok();
        let logs = std::fs::read_to_string(&log).unwrap();
        let Outcome::Response(response) = outcome else {
            panic!("the function failed: {outcome:?}\n{logs}");
        };
        (response, logs)
    }

    /// The dead letters: (body, reason), removed from the queue.
    async fn dead_letters(&self) -> Vec<(String, String)> {
        let sqs = self.stack.moto.clients().sqs;
        let mut letters = Vec::new();
        loop {
            let received = sqs
                .receive_message()
                .queue_url(&self.dead_letters)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .send()
                .await
                .unwrap();
            if received.messages().is_empty() {
                return letters;
            }
            for message in received.messages() {
                let reason = message
                    .message_attributes()
                    .and_then(|a| a.get(mailroom::adapters::aws::REASON_ATTRIBUTE))
                    .and_then(|v| v.string_value())
                    .unwrap_or_default()
                    .to_owned();
                letters.push((message.body().unwrap_or_default().to_owned(), reason));
                sqs.delete_message()
                    .queue_url(&self.dead_letters)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

fn request(key: &str, to: &[&str]) -> String {
    json!({
        "from": FROM,
        "to": to,
        "subject": format!("Notice {key}"),
        "body": { "contentType": "text", "content": "Hello" },
        "idempotencyKey": key,
    })
    .to_string()
}

fn failures(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_cannot_be_sent_go_to_the_dead_letter_queue_with_their_reason() {
    let rig = Rig::start().await;
    let unknown = request("k-unknown", &[TO]).replace(FROM, "nobody@contoso.com");
    let missing = json!({
        "from": FROM, "to": [TO], "subject": "S",
        "body": { "contentType": "text", "content": "x" },
        "attachments": ["outbox/missing.pdf"],
        "idempotencyKey": "k-missing",
    })
    .to_string();
    let records = vec![
        sqs_record("m-1", FROM, "not json"),
        sqs_record("m-2", FROM, &request("k-none", &[])),
        sqs_record("m-3", FROM, &unknown),
        sqs_record("m-4", FROM, &missing),
    ];
    let (response, logs) = rig
        .invoke(&rig.env(&rig.stack.sandbox.url()), records, "dead")
        .await;
    assert!(failures(&response).is_empty(), "{response}\n{logs}");
    let letters = rig.dead_letters().await;
    let reasons: Vec<&str> = letters.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(letters.len(), 4, "{letters:?}");
    assert!(reasons[0].contains("not a send request"), "{reasons:?}");
    assert!(reasons[1].contains("at least one address"), "{reasons:?}");
    assert!(
        reasons[2].contains("nobody@contoso.com is not a configured mailbox"),
        "{reasons:?}"
    );
    assert!(reasons[3].contains("outbox/missing.pdf"), "{reasons:?}");
    // The body is the request as it came, for whoever fixes and resends it.
    assert_eq!(letters[1].0, request("k-none", &[]));
    assert!(logs.contains("outbox batch finished"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_a_retry_can_pass_goes_back_to_the_queue_until_the_last_attempt() {
    let rig = Rig::start().await;
    // Graph cannot be reached: the request is handed back, and the one after it with it.
    let env = rig.env("http://127.0.0.1:9");
    let records = vec![
        sqs_record("m-1", FROM, &request("k-1", &[TO])),
        sqs_record("m-2", FROM, &request("k-2", &[TO])),
    ];
    let (response, logs) = rig.invoke(&env, records, "retry").await;
    assert_eq!(failures(&response), ["m-1", "m-2"], "{response}\n{logs}");
    assert!(rig.dead_letters().await.is_empty());

    // Its last attempt (the third): dead-lettered with the error.
    let mut last = sqs_record("m-1", FROM, &request("k-1", &[TO]));
    last["attributes"]["ApproximateReceiveCount"] = json!("3");
    let (response, logs) = rig.invoke(&env, vec![last], "last").await;
    assert!(failures(&response).is_empty(), "{response}\n{logs}");
    let letters = rig.dead_letters().await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(letters[0].1.contains("could not connect"), "{letters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_delivered_twice_is_sent_once_with_its_attachment_from_the_bucket() {
    let rig = Rig::start().await;
    rig.stack
        .s3
        .put_object()
        .bucket(&rig.stack.bucket)
        .key("outbox/q-1/report.csv")
        .body(b"a,b\n1,2\n".to_vec().into())
        .send()
        .await
        .unwrap();
    let body = json!({
        "from": FROM, "to": [TO], "subject": "Quarterly",
        "body": { "contentType": "html", "content": "<p>Attached.</p>" },
        "attachments": ["outbox/q-1/report.csv"],
        "idempotencyKey": "q-1",
    })
    .to_string();
    // SQS delivers at least once: the same request twice, in one batch and in the next.
    let records = vec![
        sqs_record("m-1", FROM, &body),
        sqs_record("m-2", FROM, &body),
    ];
    let env = rig.env(&rig.stack.sandbox.url());
    let (response, logs) = rig.invoke(&env, records, "twice").await;
    assert!(failures(&response).is_empty(), "{response}\n{logs}");
    let (response, logs) = rig
        .invoke(&env, vec![sqs_record("m-3", FROM, &body)], "again")
        .await;
    assert!(failures(&response).is_empty(), "{response}\n{logs}");
    let sent = rig
        .stack
        .sandbox
        .sent_mail_with_property(&mailroom::graph::DraftMark::Key.property_id(), "q-1");
    assert_eq!(sent.len(), 1, "{logs}");
    assert_eq!(sent[0].attachments[0].name, "report.csv");
    assert_eq!(sent[0].content_type.to_ascii_lowercase(), "html");
    assert!(rig.dead_letters().await.is_empty());
}
