//! The SAM template (`infra/template.yaml`) against the code it deploys: each function's
//! environment is what it reads at start-up, its role allows exactly the AWS calls its code
//! makes, nothing grants a wildcard, the schedule is every 15 minutes, the job queue is FIFO with
//! a dead-letter queue and partial batch failures, and the table is the one
//! `DynamoStateStore::create_table` builds (compared on moto). `cfn-lint` checks the rest of the
//! template against CloudFormation's schemas in `scripts/test`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // rust-clippy#13981

use std::collections::BTreeSet;
use std::time::Duration;

use mailroom::adapters::aws::{
    BY_RECEIVED_INDEX, DELEGATED_TAG, DelegatedSecretTag, DynamoStateStore, EventBridgePublisher,
    PENDING_INDEX, S3Attachments, S3BlobStore, SecretsManagerSignIns, SecretsManagerSource,
    SecretsManagerVersions, SnsAlerter, SqsDeadLetters, SqsJobQueue,
};
use mailroom::config::{ExpirySettings, ImportSettings, OutboxSettings, WebhookSettings};
use mailroom::engine::EngineOptions;
use mailroom::expiry::ExpiryChecker;
use mailroom::push::Webhook;
use mailroom_tests::moto::Moto;
use serde_json::{Map, Value, json};

const TEMPLATE: &str = include_str!("../../infra/template.yaml");

/// The template as JSON, short-form intrinsics (`!Ref X`, `!GetAtt A.B`, `!Sub s`) turned into
/// their long form (`{"Ref": "X"}`, `{"Fn::GetAtt": ["A", "B"]}`, `{"Fn::Sub": "s"}`).
fn template() -> Value {
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(TEMPLATE).unwrap();
    long_form(yaml)
}

fn long_form(yaml: serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Yaml;
    match yaml {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(n) => serde_json::to_value(n).unwrap(),
        Yaml::String(s) => Value::String(s),
        Yaml::Sequence(items) => Value::Array(items.into_iter().map(long_form).collect()),
        Yaml::Mapping(mapping) => Value::Object(
            mapping
                .into_iter()
                .map(|(k, v)| (k.as_str().unwrap().to_owned(), long_form(v)))
                .collect(),
        ),
        Yaml::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let value = long_form(tagged.value);
            let (key, value) = match (name, value) {
                ("Ref" | "Condition", value) => (name.to_owned(), value),
                ("GetAtt", Value::String(dotted)) => {
                    let (resource, attribute) = dotted.split_once('.').unwrap();
                    ("Fn::GetAtt".to_owned(), json!([resource, attribute]))
                }
                (name, value) => (format!("Fn::{name}"), value),
            };
            Value::Object(Map::from_iter([(key, value)]))
        }
    }
}

fn resource<'a>(template: &'a Value, name: &str) -> &'a Value {
    template["Resources"]
        .get(name)
        .unwrap_or_else(|| panic!("the template has no resource {name}"))
}

fn resources_of_type<'a>(template: &'a Value, kind: &str) -> Vec<&'a str> {
    template["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(name, _)| name.as_str())
        .collect()
}

/// A string or a list of strings, as IAM allows for `Action` and `Resource`.
fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().map(|v| v.as_str().unwrap()).collect(),
        other => panic!("expected a string or a list of strings, not {other}"),
    }
}

fn import_function(template: &Value) -> &Value {
    let function = resource(template, "ImportFunction");
    assert_eq!(function["Type"], "AWS::Serverless::Function");
    function
}

/// The import function's role, with its inline policies by name.
fn import_policies(template: &Value) -> Map<String, Value> {
    function_policies(template, "Import")
}

/// The role of function `{name}Function` (`{name}FunctionRole`), with its inline policies by name.
fn function_policies(template: &Value, name: &str) -> Map<String, Value> {
    let properties = &resource(template, &format!("{name}Function"))["Properties"];
    // SAM's `Policies` would add AWSLambdaBasicExecutionRole (logs on `Resource: "*"`).
    assert!(properties.get("Policies").is_none());
    assert_eq!(
        properties["Role"],
        json!({"Fn::GetAtt": [format!("{name}FunctionRole"), "Arn"]})
    );
    let role = resource(template, &format!("{name}FunctionRole"));
    assert_eq!(role["Type"], "AWS::IAM::Role");
    assert!(role["Properties"].get("ManagedPolicyArns").is_none());
    assert!(role["Properties"].get("PermissionsBoundary").is_none());
    assert_eq!(
        role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"],
        json!({"Service": "lambda.amazonaws.com"})
    );
    role["Properties"]["Policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["PolicyName"].as_str().unwrap().to_owned(),
                p["PolicyDocument"].clone(),
            )
        })
        .collect()
}

#[test]
fn the_import_function_is_built_by_cargo_lambda_for_the_chosen_architecture() {
    let template = template();
    // arm64 by default; x86_64 for a toolchain without the arm64 standard library.
    let architecture = &template["Parameters"]["Architecture"];
    assert_eq!(architecture["Default"], "arm64");
    assert_eq!(architecture["AllowedValues"], json!(["arm64", "x86_64"]));
    assert_eq!(template["Transform"], "AWS::Serverless-2016-10-31");
    let function = import_function(&template);
    assert_eq!(function["Metadata"]["BuildMethod"], "rust-cargolambda");
    // The `[[bin]]` of functions/import.
    assert_eq!(
        function["Metadata"]["BuildProperties"]["Binary"],
        "mailroom-import"
    );
    assert!(
        include_str!("../../functions/import/Cargo.toml")
            .contains("[[bin]]\nname = \"mailroom-import\"\n")
    );
    let properties = &function["Properties"];
    assert_eq!(properties["Runtime"], "provided.al2023");
    assert_eq!(
        properties["Architectures"],
        json!([{"Ref": "Architecture"}])
    );
    assert_eq!(properties["Handler"], "bootstrap");
    // CodeUri is the workspace root, relative to infra/.
    assert_eq!(properties["CodeUri"], "..");
    assert_eq!(
        properties["LoggingConfig"]["LogGroup"],
        json!({"Ref": "ImportLogGroup"})
    );
}

#[test]
fn the_import_environment_is_exactly_what_the_function_reads() {
    let template = template();
    assert!(
        template.get("Globals").is_none(),
        "Globals would set variables for every function"
    );
    let variables = import_function(&template)["Properties"]["Environment"]["Variables"]
        .as_object()
        .unwrap();
    let set: BTreeSet<&str> = variables.keys().map(String::as_str).collect();
    let read: BTreeSet<&str> = ImportSettings::env_vars().map(|v| v.name).collect();
    let required: BTreeSet<&str> = ImportSettings::env_vars()
        .filter(|v| v.required)
        .map(|v| v.name)
        .collect();
    let unread: Vec<_> = set.difference(&read).collect();
    assert!(
        unread.is_empty(),
        "the template sets variables the function never reads: {unread:?}"
    );
    let missing: Vec<_> = required.difference(&set).collect();
    assert!(
        missing.is_empty(),
        "the template leaves required variables unset: {missing:?}"
    );
    assert_eq!(variables["MAILROOM_TABLE"], json!({"Ref": "MailroomTable"}));
    assert_eq!(
        variables["MAILROOM_BUCKET"],
        json!({"Ref": "MessageBucket"})
    );
    // Subscriptions point Graph at the webhook's Function URL.
    assert_eq!(
        variables["MAILROOM_WEBHOOK_URL"],
        json!({"Fn::GetAtt": ["WebhookFunctionUrl", "FunctionUrl"]})
    );
    assert_eq!(
        variables["MAILROOM_EVENT_BUS"],
        json!({"Ref": "EventBusName"})
    );
    // Lambda passes every value as a string; a number in YAML would be one only by accident.
    for (name, value) in variables {
        assert!(
            value.is_string() || value.is_object(),
            "{name} must be a string, not {value}"
        );
    }
}

#[test]
fn a_runs_lease_ends_before_the_next_scheduled_run() {
    let template = template();
    let properties = &import_function(&template)["Properties"];
    let timeout = Duration::from_secs(properties["Timeout"].as_u64().unwrap());
    let stop_margin = ImportSettings::from_lookup(|name| {
        properties["Environment"]["Variables"]
            .get(name)
            // An intrinsic (a Ref, a GetAtt) stands for a value only AWS knows; any valid one
            // does here.
            .map(|v| {
                v.as_str()
                    .unwrap_or("https://placeholder.example/")
                    .to_owned()
            })
    })
    .unwrap()
    .stop_margin;
    // The engine's lease lasts until `lease_margin` after new work stops, i.e. after
    // `deadline - stop_margin`; the next tick must find it expired even if the run was killed.
    let lease_ends = timeout - stop_margin + EngineOptions::default().lease_margin;
    assert!(
        lease_ends <= Duration::from_secs(15 * 60),
        "a lease ending {lease_ends:?} after the tick outlives the 15-minute schedule"
    );
    assert!(timeout > stop_margin);
}

/// What Lambda's SQS event source mapping needs from the function's role.
const SQS_POLLER_ACTIONS: &[&str] = &[
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
];

#[test]
fn the_import_role_allows_exactly_the_calls_the_adapters_make() {
    let template = template();
    let policies = import_policies(&template);
    assert_eq!(
        policies.keys().map(String::as_str).collect::<Vec<_>>(),
        ["lambda-logs", "mailroom-import"]
    );

    // The Lambda runtime's own log writes, to the function's log group only.
    let logs = policies["lambda-logs"]["Statement"].as_array().unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["Effect"], "Allow");
    assert_eq!(
        strings(&logs[0]["Action"]),
        ["logs:CreateLogStream", "logs:PutLogEvents"]
    );
    assert_eq!(
        logs[0]["Resource"],
        json!({"Fn::GetAtt": ["ImportLogGroup", "Arn"]})
    );

    // Mailroom's calls: every action an adapter's IAM_ACTIONS lists, and nothing else; plus what
    // Lambda's SQS poller does with the function's role (receive a batch, delete the successes,
    // read the queue's attributes), as the Lambda developer guide lists for SQS triggers.
    let needed: BTreeSet<&str> = [
        DynamoStateStore::IAM_ACTIONS,
        S3BlobStore::IAM_ACTIONS,
        SecretsManagerSource::IAM_ACTIONS,
        // A delegated credential's refreshed sign-in (on delegated secrets only: below).
        SecretsManagerSignIns::IAM_ACTIONS,
        SqsJobQueue::CONSUMER_IAM_ACTIONS,
        // The fan-out and continuations send to the queue it consumes.
        SqsJobQueue::IAM_ACTIONS,
        EventBridgePublisher::IAM_ACTIONS,
    ]
    .into_iter()
    .flatten()
    .map(|(_, action)| *action)
    .chain(SQS_POLLER_ACTIONS.iter().copied())
    .collect();
    let mut granted = BTreeSet::new();
    for statement in policies["mailroom-import"]["Statement"].as_array().unwrap() {
        assert_eq!(statement["Effect"], "Allow", "{statement}");
        assert!(statement.get("NotAction").is_none() && statement.get("NotResource").is_none());
        let actions = strings(&statement["Action"]);
        // Each statement is about one service and names that service's resource.
        let resources = statement["Resource"].to_string();
        for action in &actions {
            assert!(granted.insert(*action), "{action} is granted twice");
            let (service, _) = action.split_once(':').unwrap();
            let expected = match service {
                "dynamodb" => "MailroomTable",
                "s3" => "MessageBucket",
                "secretsmanager" => "${CredentialSecretPrefix}",
                "sqs" => "JobQueue",
                // The one bus named, never every bus.
                "events" => ":event-bus/${EventBusName}",
                other => panic!("the import function calls no {other} API"),
            };
            assert!(
                resources.contains(expected),
                "{action} must be on {expected}, not {resources}"
            );
        }
    }
    assert_eq!(granted, needed);

    // The table and the one index the store queries; no other index.
    let state = policies["mailroom-import"]["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "State")
        .unwrap();
    assert_eq!(
        state["Resource"],
        json!([
            {"Fn::GetAtt": ["MailroomTable", "Arn"]},
            {"Fn::Sub": format!("${{MailroomTable.Arn}}/index/{PENDING_INDEX}")},
        ])
    );
    // Object actions on objects, s3:ListBucket on the bucket.
    for statement in policies["mailroom-import"]["Statement"].as_array().unwrap() {
        let actions = strings(&statement["Action"]);
        if actions.iter().any(|a| a.starts_with("s3:")) {
            let expected = if actions == ["s3:ListBucket"] {
                json!({"Fn::GetAtt": ["MessageBucket", "Arn"]})
            } else {
                json!({"Fn::Sub": "${MessageBucket.Arn}/*"})
            };
            assert_eq!(statement["Resource"], expected, "{statement}");
        }
    }
}

/// Every IAM statement in the template, wherever it is (role policies, bucket policy).
fn statements(value: &Value, found: &mut Vec<Value>) {
    match value {
        Value::Object(map) => {
            if map.contains_key("Effect") && map.contains_key("Action") {
                found.push(value.clone());
            }
            map.values().for_each(|v| statements(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| statements(v, found)),
        _ => {}
    }
}

#[test]
fn nothing_is_granted_on_wildcard_actions_or_resources() {
    let mut found = Vec::new();
    statements(&template(), &mut found);
    assert!(found.len() >= 6, "{found:?}");
    for statement in found {
        assert!(statement.get("NotAction").is_none(), "{statement}");
        // A Deny only takes access away: the bucket's TLS-only statement denies `s3:*`.
        if statement["Effect"] == "Allow" {
            for action in strings(&statement["Action"]) {
                assert!(!action.contains('*'), "wildcard action in {statement}");
            }
        }
        if let Some(resource) = statement.get("Resource") {
            for resource in resource
                .as_array()
                .cloned()
                .unwrap_or(vec![resource.clone()])
            {
                assert_ne!(resource, "*", "Resource \"*\" in {statement}");
            }
        }
    }
}

#[test]
fn the_import_function_runs_every_15_minutes() {
    let template = template();
    let events = import_function(&template)["Properties"]["Events"]
        .as_object()
        .unwrap();
    let schedules: Vec<&Value> = events
        .values()
        .filter(|e| e["Type"] == "Schedule")
        .collect();
    assert_eq!(schedules.len(), 1, "{events:?}");
    let event = schedules[0];
    // An EventBridge rule (its scheduled-event shape is what the function deserialises), not
    // EventBridge Scheduler (`ScheduleV2`), which sends a different payload.
    assert_eq!(event["Type"], "Schedule");
    assert_eq!(event["Properties"]["Schedule"], "rate(15 minutes)");
    assert!(event["Properties"].get("Enabled").is_none_or(|e| e == true));
    assert!(
        event["Properties"]
            .get("State")
            .is_none_or(|s| s == "ENABLED")
    );
    // Nothing else schedules anything.
    assert!(resources_of_type(&template, "AWS::Events::Rule").is_empty());
    assert!(resources_of_type(&template, "AWS::Scheduler::Schedule").is_empty());
    let mut functions = resources_of_type(&template, "AWS::Serverless::Function");
    functions.sort();
    assert_eq!(
        functions,
        [
            "ImportFunction",
            "OutboxFunction",
            "SecretExpiryFunction",
            "WebhookFunction"
        ]
    );
}

#[test]
fn jobs_go_through_a_fifo_queue_with_a_dead_letter_queue_to_the_import_function() {
    let template = template();
    let queue = &resource(&template, "JobQueue")["Properties"];
    let dlq = &resource(&template, "JobDeadLetterQueue")["Properties"];
    // FIFO (group = mailbox), with the code's own deduplication ids rather than content hashes.
    assert_eq!(queue["FifoQueue"], true);
    assert_eq!(queue["ContentBasedDeduplication"], false);
    // A FIFO queue's dead-letter queue must be FIFO too.
    assert_eq!(dlq["FifoQueue"], true);
    assert_eq!(
        queue["RedrivePolicy"]["deadLetterTargetArn"],
        json!({"Fn::GetAtt": ["JobDeadLetterQueue", "Arn"]})
    );
    assert!(queue["RedrivePolicy"]["maxReceiveCount"].as_u64().unwrap() >= 3);
    // A job must not become visible again while the function still runs it.
    let timeout = import_function(&template)["Properties"]["Timeout"]
        .as_u64()
        .unwrap();
    assert!(queue["VisibilityTimeout"].as_u64().unwrap() >= timeout);
    // The DLQ outlives the queue's retention, so nothing expires before someone looks.
    assert!(
        dlq["MessageRetentionPeriod"].as_u64().unwrap()
            > queue["MessageRetentionPeriod"].as_u64().unwrap()
    );

    // The import function consumes it, reporting partial batch failures.
    let events = import_function(&template)["Properties"]["Events"]
        .as_object()
        .unwrap();
    let sqs: Vec<&Value> = events.values().filter(|e| e["Type"] == "SQS").collect();
    assert_eq!(sqs.len(), 1, "{events:?}");
    let properties = &sqs[0]["Properties"];
    assert_eq!(
        properties["Queue"],
        json!({"Fn::GetAtt": ["JobQueue", "Arn"]})
    );
    assert_eq!(
        properties["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    assert!(
        properties["BatchSize"].as_u64().unwrap() <= 10,
        "FIFO batches hold at most 10"
    );
    // The fan-out's consumers are bounded by a parameter, within what Lambda accepts (2 to
    // 1,000 for MaximumConcurrency).
    assert_eq!(
        properties["ScalingConfig"]["MaximumConcurrency"],
        json!({"Ref": "ImportConcurrency"})
    );
    let concurrency = &template["Parameters"]["ImportConcurrency"];
    assert_eq!(concurrency["Type"], "Number");
    assert!(concurrency["MinValue"].as_u64().unwrap() >= 2);
    assert!(concurrency["MaxValue"].as_u64().unwrap() <= 1000);

    // A job in the dead-letter queue raises the alarm.
    let alarm = &resource(&template, "JobDeadLetterAlarm")["Properties"];
    assert_eq!(alarm["Namespace"], "AWS/SQS");
    assert_eq!(
        alarm["Dimensions"][0]["Value"],
        json!({"Fn::GetAtt": ["JobDeadLetterQueue", "QueueName"]})
    );
    assert_eq!(alarm["AlarmActions"], json!([{"Ref": "AlertTopic"}]));
}

#[test]
fn the_webhook_reads_exactly_its_environment_and_may_only_look_up_and_enqueue() {
    let template = template();
    let function = resource(&template, "WebhookFunction");
    assert_eq!(function["Metadata"]["BuildMethod"], "rust-cargolambda");
    assert_eq!(
        function["Metadata"]["BuildProperties"]["Binary"],
        "mailroom-webhook"
    );
    assert!(
        include_str!("../../functions/webhook/Cargo.toml")
            .contains("[[bin]]\nname = \"mailroom-webhook\"\n")
    );
    let properties = &function["Properties"];
    assert_eq!(properties["Runtime"], "provided.al2023");
    assert_eq!(
        properties["Architectures"],
        json!([{"Ref": "Architecture"}])
    );
    // Graph cannot sign requests: a public URL, protected by clientState.
    assert_eq!(properties["FunctionUrlConfig"]["AuthType"], "NONE");
    // Graph waits 3 s for a notification and 10 s for a validation; the timeout is no longer.
    assert!(properties["Timeout"].as_u64().unwrap() <= 10);

    let variables = properties["Environment"]["Variables"].as_object().unwrap();
    let set: BTreeSet<&str> = variables.keys().map(String::as_str).collect();
    let read: BTreeSet<&str> = WebhookSettings::ENV_VARS.iter().map(|v| v.name).collect();
    assert_eq!(set, read);
    assert_eq!(variables["MAILROOM_TABLE"], json!({"Ref": "MailroomTable"}));
    assert_eq!(variables["MAILROOM_QUEUE_URL"], json!({"Ref": "JobQueue"}));

    let policies = function_policies(&template, "Webhook");
    assert_eq!(
        policies.keys().map(String::as_str).collect::<Vec<_>>(),
        ["lambda-logs", "mailroom-webhook"]
    );
    let logs = &policies["lambda-logs"]["Statement"][0];
    assert_eq!(
        logs["Resource"],
        json!({"Fn::GetAtt": ["WebhookLogGroup", "Arn"]})
    );
    let mut granted = BTreeSet::new();
    for statement in policies["mailroom-webhook"]["Statement"]
        .as_array()
        .unwrap()
    {
        assert_eq!(statement["Effect"], "Allow");
        for action in strings(&statement["Action"]) {
            granted.insert(action.to_owned());
            let expected = match action.split_once(':').unwrap().0 {
                "dynamodb" => json!({"Fn::GetAtt": ["MailroomTable", "Arn"]}),
                "sqs" => json!({"Fn::GetAtt": ["JobQueue", "Arn"]}),
                other => panic!("the webhook calls no {other} API"),
            };
            assert_eq!(statement["Resource"], expected, "{statement}");
        }
    }
    let needed: BTreeSet<String> = Webhook::IAM_ACTIONS.iter().map(|a| a.to_string()).collect();
    assert_eq!(granted, needed);
}

/// An index: its name, key schema (attribute, key type) and projection type.
type Index = (String, Vec<(String, String)>, String);

/// The parts of a table definition `create_table` decides, in the template's shape.
fn table_shape(
    attributes: Vec<(String, String)>,
    keys: Vec<(String, String)>,
    mut indexes: Vec<Index>,
    stream_view: String,
    ttl_attribute: String,
) -> Value {
    let key_schema = |keys: Vec<(String, String)>| -> Value {
        keys.into_iter()
            .map(|(name, kind)| json!({"AttributeName": name, "KeyType": kind}))
            .collect()
    };
    let mut attributes = attributes;
    attributes.sort();
    indexes.sort();
    json!({
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": attributes
            .into_iter()
            .map(|(name, kind)| json!({"AttributeName": name, "AttributeType": kind}))
            .collect::<Value>(),
        "KeySchema": key_schema(keys),
        "GlobalSecondaryIndexes": indexes
            .into_iter()
            .map(|(name, keys, projection)| json!({
                "IndexName": name,
                "KeySchema": key_schema(keys),
                "Projection": {"ProjectionType": projection},
            }))
            .collect::<Value>(),
        "StreamSpecification": {"StreamViewType": stream_view},
        "TimeToLiveSpecification": {"AttributeName": ttl_attribute, "Enabled": true},
    })
}

fn pairs(items: &Value, first: &str, second: &str) -> Vec<(String, String)> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i[first].as_str().unwrap().to_owned(),
                i[second].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_table_is_the_one_create_table_builds() {
    let template = template();
    let table = resource(&template, "MailroomTable");
    assert_eq!(table["Type"], "AWS::DynamoDB::Table");
    assert_eq!(table["DeletionPolicy"], "Retain");
    let p = &table["Properties"];
    assert_eq!(
        p["PointInTimeRecoverySpecification"],
        json!({"PointInTimeRecoveryEnabled": true})
    );
    // A generated name: the stack's outputs give it, and two stacks never collide.
    assert!(p.get("TableName").is_none());
    let in_template = table_shape(
        pairs(&p["AttributeDefinitions"], "AttributeName", "AttributeType"),
        pairs(&p["KeySchema"], "AttributeName", "KeyType"),
        p["GlobalSecondaryIndexes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["IndexName"].as_str().unwrap().to_owned(),
                    pairs(&i["KeySchema"], "AttributeName", "KeyType"),
                    i["Projection"]["ProjectionType"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                )
            })
            .collect(),
        p["StreamSpecification"]["StreamViewType"]
            .as_str()
            .unwrap()
            .to_owned(),
        p["TimeToLiveSpecification"]["AttributeName"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    assert_eq!(p["TimeToLiveSpecification"]["Enabled"], true);

    // What `create_table` builds, read back from moto.
    let moto = Moto::shared();
    let (_, name) = moto.fresh_table().await;
    let client = moto.clients().dynamodb;
    let described = client
        .describe_table()
        .table_name(&name)
        .send()
        .await
        .unwrap();
    let t = described.table().unwrap();
    let keys = |schema: &[aws_sdk_dynamodb::types::KeySchemaElement]| {
        schema
            .iter()
            .map(|k| {
                (
                    k.attribute_name().to_owned(),
                    k.key_type().as_str().to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let ttl = client
        .describe_time_to_live()
        .table_name(&name)
        .send()
        .await
        .unwrap();
    let stream = t.stream_specification().unwrap();
    assert!(stream.stream_enabled());
    let created = table_shape(
        t.attribute_definitions()
            .iter()
            .map(|a| {
                (
                    a.attribute_name().to_owned(),
                    a.attribute_type().as_str().to_owned(),
                )
            })
            .collect(),
        keys(t.key_schema()),
        t.global_secondary_indexes()
            .iter()
            .map(|i| {
                (
                    i.index_name().unwrap().to_owned(),
                    keys(i.key_schema()),
                    i.projection()
                        .and_then(|p| p.projection_type())
                        .unwrap()
                        .as_str()
                        .to_owned(),
                )
            })
            .collect(),
        stream.stream_view_type().unwrap().as_str().to_owned(),
        ttl.time_to_live_description()
            .and_then(|d| d.attribute_name())
            .unwrap()
            .to_owned(),
    );
    assert_eq!(
        t.billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .unwrap()
            .as_str(),
        "PAY_PER_REQUEST"
    );
    assert_eq!(in_template, created);
    let index_names: Vec<&str> = p["GlobalSecondaryIndexes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["IndexName"].as_str().unwrap())
        .collect();
    assert_eq!(index_names, [BY_RECEIVED_INDEX, PENDING_INDEX]);
}

#[test]
fn the_bucket_is_private_encrypted_tls_only_and_cleans_up_uploads() {
    let template = template();
    let bucket = &resource(&template, "MessageBucket")["Properties"];
    assert_eq!(
        bucket["PublicAccessBlockConfiguration"],
        json!({"BlockPublicAcls": true, "BlockPublicPolicy": true,
               "IgnorePublicAcls": true, "RestrictPublicBuckets": true})
    );
    assert_eq!(
        bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
            ["SSEAlgorithm"],
        "AES256"
    );
    let rules = bucket["LifecycleConfiguration"]["Rules"].to_string();
    assert!(rules.contains(r#""AbortIncompleteMultipartUpload":{"DaysAfterInitiation":1}"#));
    assert!(rules.contains(r#""ExpirationInDays":{"Ref":"MessageRetentionDays"}"#));

    let policy = &resource(&template, "MessageBucketPolicy")["Properties"];
    assert_eq!(policy["Bucket"], json!({"Ref": "MessageBucket"}));
    let statement = &policy["PolicyDocument"]["Statement"][0];
    assert_eq!(statement["Effect"], "Deny");
    assert_eq!(
        statement["Condition"],
        json!({"Bool": {"aws:SecureTransport": "false"}})
    );
}

#[test]
fn the_outputs_are_what_the_readme_tells_users_to_use() {
    let template = template();
    let outputs: BTreeSet<&str> = template["Outputs"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        outputs,
        BTreeSet::from([
            "AlertTopicArn",
            "BucketName",
            "ImportFunctionName",
            "ImportLogGroupName",
            "JobDeadLetterQueueUrl",
            "JobQueueUrl",
            "OutboxDeadLetterQueueUrl",
            "OutboxQueueUrl",
            "SecretExpiryFunctionArn",
            "TableName",
            "WebhookUrl",
        ])
    );
    let readme = include_str!("../../README.md");
    let section = readme
        .split("## Deploy to AWS")
        .nth(1)
        .expect("README has a 'Deploy to AWS' section")
        .split("\n## ")
        .next()
        .unwrap();
    for name in outputs.iter().chain(
        template["Parameters"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .iter(),
    ) {
        assert!(
            section.contains(name),
            "the README's deploy section does not mention {name}"
        );
    }
}

#[test]
fn the_secret_expiry_function_runs_daily_reads_its_environment_and_may_do_only_its_calls() {
    let template = template();
    let function = resource(&template, "SecretExpiryFunction");
    assert_eq!(function["Metadata"]["BuildMethod"], "rust-cargolambda");
    assert_eq!(
        function["Metadata"]["BuildProperties"]["Binary"],
        "mailroom-secret-expiry"
    );
    assert!(
        include_str!("../../functions/secret-expiry/Cargo.toml")
            .contains("[[bin]]\nname = \"mailroom-secret-expiry\"\n")
    );
    let properties = &function["Properties"];
    assert_eq!(properties["Runtime"], "provided.al2023");
    assert_eq!(
        properties["Architectures"],
        json!([{"Ref": "Architecture"}])
    );

    // Daily, by an EventBridge rule (its event shape is what the function parses).
    let events = properties["Events"].as_object().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let event = events.values().next().unwrap();
    assert_eq!(event["Type"], "Schedule");
    assert_eq!(event["Properties"]["Schedule"], "rate(1 day)");

    // Environment: only variables it reads, every required one set.
    let variables = properties["Environment"]["Variables"].as_object().unwrap();
    let set: BTreeSet<&str> = variables.keys().map(String::as_str).collect();
    let read: BTreeSet<&str> = ExpirySettings::ENV_VARS.iter().map(|v| v.name).collect();
    let required: BTreeSet<&str> = ExpirySettings::ENV_VARS
        .iter()
        .filter(|v| v.required)
        .map(|v| v.name)
        .collect();
    assert!(set.is_subset(&read), "unread: {:?}", set.difference(&read));
    assert!(
        required.is_subset(&set),
        "unset: {:?}",
        required.difference(&set)
    );
    assert_eq!(
        variables["MAILROOM_ALERT_TOPIC_ARN"],
        json!({"Ref": "AlertTopic"})
    );

    // Its role: exactly the calls its code makes, each on its own resource.
    let policies = function_policies(&template, "SecretExpiry");
    assert_eq!(
        policies.keys().map(String::as_str).collect::<Vec<_>>(),
        ["lambda-logs", "mailroom-secret-expiry"]
    );
    let needed: BTreeSet<&str> = ExpiryChecker::IAM_ACTIONS
        .iter()
        .copied()
        .chain(
            [
                SecretsManagerSource::IAM_ACTIONS,
                // The check redeems a delegated credential's sign-in and stores its successor.
                SecretsManagerSignIns::IAM_ACTIONS,
                SecretsManagerVersions::IAM_ACTIONS,
                SnsAlerter::IAM_ACTIONS,
            ]
            .into_iter()
            .flatten()
            .map(|(_, action)| *action),
        )
        .collect();
    let mut granted = BTreeSet::new();
    for statement in policies["mailroom-secret-expiry"]["Statement"]
        .as_array()
        .unwrap()
    {
        assert_eq!(statement["Effect"], "Allow");
        let resources = statement["Resource"].to_string();
        for action in strings(&statement["Action"]) {
            assert!(granted.insert(action), "{action} is granted twice");
            let expected = match action.split_once(':').unwrap().0 {
                "dynamodb" => "MailroomTable",
                "secretsmanager" => "${CredentialSecretPrefix}",
                "sns" => "AlertTopic",
                other => panic!("the secret-expiry function calls no {other} API"),
            };
            assert!(resources.contains(expected), "{action} on {resources}");
        }
    }
    assert_eq!(granted, needed);

    // Secrets Manager may invoke it (rotation), for this account's secrets only.
    let permission = &resource(&template, "SecretExpiryRotationPermission")["Properties"];
    assert_eq!(permission["Principal"], "secretsmanager.amazonaws.com");
    assert_eq!(
        permission["SourceAccount"],
        json!({"Ref": "AWS::AccountId"})
    );

    // The days-left alarm watches the dimensionless metric the function prints, against the
    // first threshold.
    let alarm = &resource(&template, "SecretDaysLeftAlarm")["Properties"];
    assert_eq!(alarm["Namespace"], "Mailroom");
    assert_eq!(alarm["MetricName"], "SecretDaysLeft");
    assert!(alarm.get("Dimensions").is_none());
    assert_eq!(alarm["ComparisonOperator"], "LessThanThreshold");
    let line: Value = serde_json::from_str(&mailroom::expiry::metric_line(
        "main",
        12,
        time::OffsetDateTime::now_utc(),
    ))
    .unwrap();
    let directive = &line["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], alarm["Namespace"]);
    assert_eq!(directive["Metrics"][0]["Name"], alarm["MetricName"]);
    assert!(
        directive["Dimensions"]
            .as_array()
            .unwrap()
            .contains(&json!([])),
        "the metric must also be published without dimensions: {directive}"
    );
}

#[test]
fn the_outbox_sends_from_its_fifo_queue_dead_letters_with_a_reason_and_may_do_only_its_calls() {
    let template = template();
    let function = resource(&template, "OutboxFunction");
    assert_eq!(function["Metadata"]["BuildMethod"], "rust-cargolambda");
    assert_eq!(
        function["Metadata"]["BuildProperties"]["Binary"],
        "mailroom-outbox"
    );
    assert!(
        include_str!("../../functions/outbox/Cargo.toml")
            .contains("[[bin]]\nname = \"mailroom-outbox\"\n")
    );
    let properties = &function["Properties"];
    assert_eq!(properties["Runtime"], "provided.al2023");
    assert_eq!(
        properties["Architectures"],
        json!([{"Ref": "Architecture"}])
    );

    // Its environment: exactly variables it reads, the required ones set; its last attempt is
    // the queue's last delivery.
    let variables = properties["Environment"]["Variables"].as_object().unwrap();
    let set: BTreeSet<&str> = variables.keys().map(String::as_str).collect();
    let read: BTreeSet<&str> = OutboxSettings::env_vars().map(|v| v.name).collect();
    assert!(set.is_subset(&read), "{set:?} not all read: {read:?}");
    for required in OutboxSettings::env_vars().filter(|v| v.required) {
        assert!(set.contains(required.name), "{} unset", required.name);
    }
    assert_eq!(
        variables["MAILROOM_OUTBOX_DLQ_URL"],
        json!({"Ref": "OutboxDeadLetterQueue"})
    );
    let queue = &resource(&template, "OutboxQueue")["Properties"];
    assert_eq!(queue["FifoQueue"], true);
    assert_eq!(
        queue["RedrivePolicy"]["deadLetterTargetArn"],
        json!({"Fn::GetAtt": ["OutboxDeadLetterQueue", "Arn"]})
    );
    assert_eq!(
        variables["MAILROOM_OUTBOX_MAX_RECEIVES"],
        json!(queue["RedrivePolicy"]["maxReceiveCount"].to_string())
    );
    assert_eq!(
        resource(&template, "OutboxDeadLetterQueue")["Properties"]["FifoQueue"],
        true
    );
    // A request is not delivered again while the function may still be sending it.
    assert!(
        queue["VisibilityTimeout"].as_u64().unwrap() >= properties["Timeout"].as_u64().unwrap()
    );
    let trigger = &properties["Events"]["Requests"];
    assert_eq!(trigger["Type"], "SQS");
    assert_eq!(
        trigger["Properties"]["Queue"],
        json!({"Fn::GetAtt": ["OutboxQueue", "Arn"]})
    );
    assert_eq!(
        trigger["Properties"]["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    let alarm = &resource(&template, "OutboxDeadLetterAlarm")["Properties"];
    assert_eq!(
        alarm["Dimensions"][0]["Value"],
        json!({"Fn::GetAtt": ["OutboxDeadLetterQueue", "QueueName"]})
    );
    assert_eq!(alarm["AlarmActions"], json!([{"Ref": "AlertTopic"}]));

    // Its role: what sending calls, each on its own resource. The state store is only read for
    // the mailbox's configuration (a Query: shared/src/adapters/aws/dynamodb/tests.rs).
    let policies = function_policies(&template, "Outbox");
    assert_eq!(
        policies.keys().map(String::as_str).collect::<Vec<_>>(),
        ["lambda-logs", "mailroom-outbox"]
    );
    let mut granted = BTreeSet::new();
    for statement in policies["mailroom-outbox"]["Statement"].as_array().unwrap() {
        assert_eq!(statement["Effect"], "Allow");
        let resources = statement["Resource"].to_string();
        for action in strings(&statement["Action"]) {
            assert!(granted.insert(action), "{action} is granted twice");
            let expected = match action {
                "dynamodb:Query" => "MailroomTable",
                "secretsmanager:GetSecretValue" | "secretsmanager:PutSecretValue" => {
                    "${CredentialSecretPrefix}"
                }
                "s3:GetObject" => "${MessageBucket.Arn}/outbox/*",
                "sqs:SendMessage" => "OutboxDeadLetterQueue",
                _ => "OutboxQueue",
            };
            assert!(
                resources.contains(expected),
                "{action} must be on {expected}, not {resources}"
            );
        }
    }
    let needed: BTreeSet<&str> = [
        SecretsManagerSource::IAM_ACTIONS,
        // A delegated credential's refreshed sign-in (on delegated secrets only).
        SecretsManagerSignIns::IAM_ACTIONS,
        S3Attachments::IAM_ACTIONS,
        SqsDeadLetters::IAM_ACTIONS,
    ]
    .into_iter()
    .flatten()
    .map(|(_, action)| *action)
    .chain(["dynamodb:Query"])
    .chain(SQS_POLLER_ACTIONS.iter().copied())
    .collect();
    assert_eq!(granted, needed);
    assert_eq!(
        OutboxSettings::ATTACHMENT_PREFIX,
        "outbox/",
        "the role's s3:GetObject is on outbox/*"
    );
}

/// The roles' statements, by role: (role, statement).
fn role_statements(template: &Value) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for role in resources_of_type(template, "AWS::IAM::Role") {
        let mut statements_of_role = Vec::new();
        statements(
            &resource(template, role)["Properties"]["Policies"],
            &mut statements_of_role,
        );
        found.extend(statements_of_role.into_iter().map(|s| (role.to_owned(), s)));
    }
    found
}

/// The functions that get Graph tokens for mailboxes store a delegated credential's refreshed
/// sign-in in its secret (`SecretsManagerSignIns`), so they may `PutSecretValue`, but only on
/// secrets tagged `mailroom:kind = delegated`: an app credential's secret stays read-only to
/// them. The tag is put on by the operator's `credentials login` (`DelegatedSecretTag`); no
/// function may tag or untag, which would make any secret writable. The rotation function keeps
/// its own unconditioned grant: rotating an app credential writes its secret.
#[test]
fn put_secret_value_is_granted_on_delegated_secrets_only_except_for_rotation() {
    let template = template();
    let (key, value) = DELEGATED_TAG;
    let delegated_only =
        json!({"StringEquals": {format!("secretsmanager:ResourceTag/{key}"): value}});
    let prefix = json!({"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${CredentialSecretPrefix}*"});
    let put = SecretsManagerSignIns::IAM_ACTIONS
        .iter()
        .find(|(call, _)| *call == "put_secret_value")
        .map(|(_, action)| *action)
        .unwrap();
    // Tagging is the operator's (`DelegatedSecretTag`), never a function's.
    let tagging: Vec<&str> = DelegatedSecretTag::IAM_ACTIONS
        .iter()
        .map(|(_, action)| *action)
        .filter(|action| *action != "secretsmanager:DescribeSecret")
        .chain(["secretsmanager:UntagResource"])
        .collect();
    assert_eq!(
        tagging,
        ["secretsmanager:TagResource", "secretsmanager:UntagResource"]
    );
    let mut conditioned = BTreeSet::new();
    let mut unconditioned = BTreeSet::new();
    for (role, statement) in role_statements(&template) {
        let actions = strings(&statement["Action"]);
        for action in &tagging {
            assert!(
                !actions.contains(action),
                "{role} may {action}: {statement}"
            );
        }
        if !actions.contains(&put) {
            continue;
        }
        assert_eq!(statement["Effect"], "Allow", "{statement}");
        assert_eq!(statement["Resource"], prefix, "{role}: {statement}");
        match statement.get("Condition") {
            Some(condition) => {
                // The condition holds for this one action: nothing else is narrowed by it.
                assert_eq!(actions, [put], "{role}: {statement}");
                assert_eq!(condition, &delegated_only, "{role}: {statement}");
                conditioned.insert(role);
            }
            None => {
                unconditioned.insert(role);
            }
        }
    }
    assert_eq!(
        conditioned,
        BTreeSet::from([
            "ImportFunctionRole".to_owned(),
            "OutboxFunctionRole".to_owned()
        ]),
        "the roles that get Graph tokens for mailboxes"
    );
    assert_eq!(
        unconditioned,
        BTreeSet::from(["SecretExpiryFunctionRole".to_owned()]),
        "only rotation writes any credential secret"
    );
    // The webhook holds no Graph credentials: no secret at all.
    let webhook = function_policies(&template, "Webhook");
    assert!(
        !serde_json::to_string(&webhook)
            .unwrap()
            .contains("secretsmanager:"),
        "{webhook:?}"
    );
}
