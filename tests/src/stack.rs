//! The whole stack for an end-to-end test: the Graph sandbox on loopback, a fresh DynamoDB table,
//! S3 bucket and Secrets Manager secret on moto, and an [`Engine`] wired to them through the real
//! adapters and the real Graph client.
//!
//! Test support: a failed set-up step panics with what failed, like an assertion.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use graph_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_SECRET, DEFAULT_TENANT, MessageInfo, Sandbox, World,
};
use mailroom::adapters::aws::{DynamoStateStore, S3BlobStore, SecretsManagerSource};
use mailroom::clock::{Clock, ManualClock};
use mailroom::credentials::Credentials;
use mailroom::domain::{AfterImport, MailboxAddress, MailboxConfig, MessageRecord, RecordState};
use mailroom::engine::{Engine, EngineOptions, ImportObserver, NoObserver, RunReport};
use mailroom::graph::{GraphClient, GraphConfig, RetryPolicy};
use mailroom::ports::{BlobStore, MailboxConfigs, MessageRecords};
use mailroom::rotation::{RotationEvent, RotationOptions, RotationStep, Rotator, SecretVersions};
use sha2::{Digest, Sha256};

use crate::moto::Moto;

/// How far ahead of the test clock a run's deadline is.
pub const RUN_BUDGET: time::Duration = time::Duration::minutes(10);

pub struct Stack {
    pub sandbox: Sandbox,
    pub moto: &'static Moto,
    pub state: Arc<DynamoStateStore>,
    pub blobs: Arc<S3BlobStore>,
    pub bucket: String,
    pub table: String,
    /// Where the stack's clients send their requests: moto, or a proxy in front of it.
    pub aws_endpoint: String,
    pub s3: aws_sdk_s3::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    /// The engine's clock: leases and deadlines. Advance it to expire a crashed run's lease.
    pub clock: Arc<ManualClock>,
    /// Name of the Secrets Manager secret holding the sandbox app's credential.
    pub credential: String,
    /// How long the SDK waits for one attempt of a call (see [`Self::via_timing_out`]).
    pub attempt_timeout: Duration,
}

impl Stack {
    /// Starts the sandbox with `world` and creates fresh AWS resources, with the sandbox's
    /// default app credential stored as a secret.
    pub async fn start(world: World) -> Stack {
        let sandbox = Sandbox::start(world).await.expect("sandbox starts");
        // Quick retries keep throttling tests short; the client still honours Retry-After.
        sandbox.set_throttle_retry_after(0.05);
        let moto = Moto::shared();
        let (state, table) = moto.fresh_table().await;
        let (blobs, bucket) = moto.fresh_bucket().await;
        let clients = moto.clients();
        let credential = format!("mailroom/test/{}", uuid::Uuid::new_v4().simple());
        let stack = Stack {
            sandbox,
            moto,
            state: Arc::new(state),
            blobs: Arc::new(blobs),
            bucket,
            table,
            aws_endpoint: moto.endpoint(),
            s3: clients.s3,
            secrets: clients.secrets,
            clock: Arc::new(ManualClock::default()),
            credential,
            attempt_timeout: mailroom::adapters::aws::ATTEMPT_TIMEOUT,
        };
        stack.put_secret(DEFAULT_SECRET).await;
        stack
    }

    /// The same resources, reached through `endpoint` (a proxy in front of moto, such as
    /// [`crate::awsproxy::AwsProxy`]) by every client and store of the stack.
    pub fn via(self, endpoint: &str) -> Stack {
        let attempt = self.attempt_timeout;
        self.via_timing_out(endpoint, attempt)
    }

    /// [`Self::via`], with the SDK abandoning each attempt of a call after `attempt` instead of
    /// the functions' [`mailroom::adapters::aws::ATTEMPT_TIMEOUT`].
    pub fn via_timing_out(mut self, endpoint: &str, attempt: Duration) -> Stack {
        self.aws_endpoint = endpoint.to_owned();
        self.attempt_timeout = attempt;
        let clients = self.clients();
        self.state = Arc::new(DynamoStateStore::new(clients.dynamodb, &self.table));
        self.blobs = Arc::new(S3BlobStore::new(clients.s3.clone(), &self.bucket));
        self.s3 = clients.s3;
        self.secrets = clients.secrets;
        self
    }

    /// Clients for the stack's endpoint ([`Self::via`]).
    pub fn clients(&self) -> mailroom::adapters::aws::AwsClients {
        let config = crate::moto::sdk_config_timing_out(&self.aws_endpoint, self.attempt_timeout);
        mailroom::adapters::aws::AwsClients::from_sdk_config(&config, true)
    }

    /// Stores (or replaces) the credential secret with `client_secret` as its secret value.
    pub async fn put_secret(&self, client_secret: &str) {
        let json = serde_json::json!({
            "tenant_id": DEFAULT_TENANT,
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": client_secret,
        })
        .to_string();
        let exists = self
            .secrets
            .describe_secret()
            .secret_id(&self.credential)
            .send()
            .await
            .is_ok();
        if exists {
            self.secrets
                .put_secret_value()
                .secret_id(&self.credential)
                .secret_string(json)
                .send()
                .await
                .expect("put secret value");
        } else {
            self.moto.put_secret(&self.credential, &json).await;
        }
    }

    /// Creates the secret `name` holding `json`, or gives it that value if it exists.
    pub async fn store_secret(&self, name: &str, json: &str) {
        let exists = self
            .secrets
            .describe_secret()
            .secret_id(name)
            .send()
            .await
            .is_ok();
        if exists {
            self.secrets
                .put_secret_value()
                .secret_id(name)
                .secret_string(json)
                .send()
                .await
                .expect("put secret value");
        } else {
            self.moto.put_secret(name, json).await;
        }
    }

    pub fn graph_config(&self) -> GraphConfig {
        let url = url::Url::parse(&self.sandbox.url()).expect("sandbox URL");
        let mut config = GraphConfig::new(url.clone(), url);
        config.retry = RetryPolicy {
            max_retries: 8,
            base: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
            max_retry_after: Duration::from_secs(5),
            ..RetryPolicy::default()
        };
        config
    }

    /// The rotation function's logic for this stack's secrets, writing through `versions` (a
    /// [`mailroom::adapters::aws::SecretsManagerVersions`] on the stack's client, or a wrapper
    /// that fails on purpose), and waiting for a new password to propagate with quick retries
    /// (30 attempts, 50 ms apart at first).
    pub fn rotator(&self, versions: Arc<dyn SecretVersions>) -> Rotator {
        Rotator {
            versions,
            graph: GraphClient::new(self.graph_config()).expect("graph client"),
            clock: self.clock.clone(),
            options: RotationOptions {
                lifetime: time::Duration::days(90),
                test_attempts: 30,
                test_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(200),
            },
        }
    }

    /// The event Secrets Manager sends the rotation function for `step` of the rotation
    /// `token` of the stack's credential secret.
    pub fn rotation_event(&self, token: &str, step: RotationStep) -> RotationEvent {
        serde_json::from_value(serde_json::json!({
            "SecretId": self.credential,
            "ClientRequestToken": token,
            "Step": step.name(),
        }))
        .expect("a rotation event")
    }

    /// An engine on this stack, as a fresh process would build it (its own lease owner, token
    /// cache and credential cache).
    pub fn engine_with(&self, observer: Arc<dyn ImportObserver>, options: EngineOptions) -> Engine {
        self.engine_with_graph(observer, options, self.graph_config())
    }

    /// [`Self::engine_with`], with its Graph client configured by `graph` (start from
    /// [`Self::graph_config`]).
    pub fn engine_with_graph(
        &self,
        observer: Arc<dyn ImportObserver>,
        options: EngineOptions,
        graph: GraphConfig,
    ) -> Engine {
        let options = EngineOptions {
            owner: EngineOptions::default().owner,
            ..options
        };
        let secrets = SecretsManagerSource::new(self.secrets.clone())
            .with_sign_ins((*self.sign_ins()).clone());
        Engine {
            state: self.state.clone(),
            blobs: self.blobs.clone(),
            credentials: Arc::new(Credentials::new(
                Arc::new(secrets),
                Credentials::DEFAULT_TTL,
            )),
            graph: GraphClient::new(graph).expect("graph client"),
            clock: self.clock.clone(),
            observer,
            events: None,
            options,
            stop: Default::default(),
        }
    }

    pub fn engine(&self) -> Engine {
        self.engine_with(Arc::new(NoObserver), EngineOptions::default())
    }

    /// Configures a mailbox folder to import.
    pub async fn configure(
        &self,
        address: &str,
        folder: &str,
        action: AfterImport,
    ) -> MailboxConfig {
        let config = MailboxConfig {
            address: MailboxAddress::parse(address).expect("address"),
            folder: folder.to_owned(),
            action,
            credential: self.credential.clone(),
            enabled: true,
            discovered_by: None,
        };
        self.state.put_mailbox(&config).await.expect("put mailbox");
        config
    }

    /// One run with a fresh engine and the default options.
    pub async fn run(&self) -> RunReport {
        self.run_with(self.engine()).await
    }

    pub async fn run_with(&self, engine: Engine) -> RunReport {
        engine
            .run(self.clock.now() + RUN_BUDGET, None)
            .await
            .expect("state store reachable")
    }

    /// Every object key in the bucket.
    pub async fn bucket_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.expect("list objects");
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        keys.sort();
        keys
    }

    pub async fn records(&self, mailbox: &str) -> Vec<MessageRecord> {
        let mailbox = MailboxAddress::parse(mailbox).expect("address");
        self.state
            .list_records(&mailbox)
            .await
            .expect("list records")
    }

    /// What `folder = "*"` archives of `mailbox`: every message but those in Deleted Items,
    /// Junk Email and Recoverable Items.
    pub fn every_folder_messages(&self, mailbox: &str) -> Vec<MessageInfo> {
        self.sandbox
            .messages(mailbox)
            .into_iter()
            .filter(|m| {
                !["Deleted Items", "Junk Email", "Recoverable Items"]
                    .iter()
                    .any(|f| m.folder_path.starts_with(f))
            })
            .collect()
    }

    /// The invariant of every end-to-end test: the store holds exactly the messages `expected`
    /// (what the mailbox held), each once — one record per message, in state `done`, with its
    /// MIME in the bucket byte for byte — and nothing else.
    pub async fn assert_stored_exactly_once(&self, mailbox: &str, expected: &[MessageInfo]) {
        self.assert_each_stored_exactly_once(&[(mailbox, expected.to_vec())])
            .await;
    }

    /// [`Self::assert_stored_exactly_once`] for several mailboxes at once: the bucket holds the
    /// objects of all their records and nothing else.
    pub async fn assert_each_stored_exactly_once(&self, mailboxes: &[(&str, Vec<MessageInfo>)]) {
        let mut all = Vec::new();
        for (mailbox, expected) in mailboxes {
            all.extend(self.assert_records_match(mailbox, expected).await);
        }
        let keys = self.bucket_keys().await;
        let record_keys: BTreeSet<&str> = all.iter().map(|r| r.blob_key.as_str()).collect();
        assert_eq!(
            keys.iter().map(String::as_str).collect::<BTreeSet<_>>(),
            record_keys,
            "the bucket holds exactly one object per record"
        );
        // Byte for byte, on a sample (every message is checked by size and record checksum).
        for record in all.iter().step_by((all.len() / 10).max(1)) {
            assert_eq!(
                self.blob_sha256(&record.blob_key).await,
                record.sha256,
                "object {} differs from the mailbox's MIME",
                record.blob_key
            );
        }
    }

    /// One record per message of `expected`, done, matching it; none other. Returns the records.
    async fn assert_records_match(
        &self,
        mailbox: &str,
        expected: &[MessageInfo],
    ) -> Vec<MessageRecord> {
        let records = self.records(mailbox).await;
        let by_id: BTreeMap<&str, &MessageRecord> =
            records.iter().map(|r| (r.message_id.as_str(), r)).collect();
        assert_eq!(by_id.len(), records.len(), "two records share a message id");
        let expected_ids: BTreeSet<&str> =
            expected.iter().map(|m| m.immutable_id.as_str()).collect();
        let stored_ids: BTreeSet<&str> = by_id.keys().copied().collect();
        let missing: Vec<_> = expected_ids.difference(&stored_ids).collect();
        let extra: Vec<_> = stored_ids.difference(&expected_ids).collect();
        assert!(
            missing.is_empty(),
            "{} messages not stored: {missing:?}",
            missing.len()
        );
        assert!(
            extra.is_empty(),
            "{} records for messages the mailbox did not hold: {extra:?}",
            extra.len()
        );

        let internet_ids: BTreeSet<_> = records
            .iter()
            .map(|r| r.internet_message_id.clone())
            .collect();
        assert_eq!(
            internet_ids.len(),
            records.len(),
            "a message was stored twice under two ids"
        );

        for message in expected {
            let record = by_id[message.immutable_id.as_str()];
            assert_eq!(
                record.state,
                RecordState::Done,
                "record of '{}' not done",
                message.subject
            );
            assert_eq!(record.size, message.size, "size of '{}'", message.subject);
            assert_eq!(
                record.sha256, message.sha256,
                "checksum of '{}'",
                message.subject
            );
            assert_eq!(
                record.internet_message_id.as_deref(),
                Some(message.internet_message_id.as_str())
            );
        }
        records
    }

    /// SHA-256 of an object, streamed.
    pub async fn blob_sha256(&self, key: &str) -> String {
        let mut body = self.blobs.get(key).await.expect("object exists");
        let mut sha = Sha256::new();
        while let Some(chunk) = body.next().await {
            sha.update(chunk.expect("object readable"));
        }
        hex::encode(sha.finalize())
    }
}
