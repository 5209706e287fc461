//! What a command works with: the configuration, the state and blob stores, the credentials and
//! the Graph client, for local mode or for the AWS deployment.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use anyhow::{Context as _, anyhow, bail};
use mailroom::adapters::aws::{
    AwsClients, DynamoStateStore, EventBridgePublisher, S3BlobStore, SecretsManagerSource,
};
use mailroom::adapters::local::{
    DirBlobStore, FileSecretSource, HttpEventPublisher, LocalSignIns, SecretRef, SqliteStateStore,
};
use mailroom::clock::SystemClock;
use mailroom::config::Env;
use mailroom::credentials::Credentials;
use mailroom::domain::{MailboxAddress, MailboxConfig};
use mailroom::engine::{Engine, EngineOptions, ImportObserver};
use mailroom::graph::{GraphClient, GraphConfig};
use mailroom::ports::{BlobStore, EventPublisher, SecretSource, StateStore};

use crate::args::{Backend, Global};
use crate::config::LocalConfig;

/// The stores, credentials and Graph settings of one backend.
pub struct Context {
    pub backend: Backend,
    pub state: Arc<dyn StateStore>,
    blobs: Option<Arc<dyn BlobStore>>,
    pub secrets: Arc<dyn SecretSource>,
    pub graph: GraphConfig,
    /// Local mode's configuration file.
    pub local: Option<LocalConfig>,
    /// Where state and messages live, for people.
    pub location: String,
    /// Local mode's outbox: send requests as JSON files, sent by `serve` (docs/sending.md).
    pub outbox_dir: Option<std::path::PathBuf>,
    /// Where the event of each stored message goes: EventBridge on AWS
    /// (`MAILROOM_EVENT_BUS`), the `[events]` URL locally.
    events: Events,
}

/// How a backend publishes events; read when an engine is built, so a command that imports
/// nothing never needs the signing secret.
enum Events {
    None,
    Ready(Arc<dyn EventPublisher>),
    Http(crate::config::EventsConfig),
}

impl Context {
    /// Builds the context of `global.backend`. Local mode mirrors the mailboxes of mailroom.toml
    /// into its database, so the engine reads them from one place in both modes.
    pub async fn open(global: &Global) -> anyhow::Result<Context> {
        let graph = graph_config()?;
        match global.backend {
            Backend::Local => {
                let local = LocalConfig::load(&global.config)?;
                Self::local(local, &global.data_dir, graph).await
            }
            Backend::Aws => Self::aws(graph).await,
        }
    }

    pub async fn local(
        local: LocalConfig,
        data_dir: &Path,
        graph: GraphConfig,
    ) -> anyhow::Result<Context> {
        let db = data_dir.join("state.db");
        let state = SqliteStateStore::open(&db)?;
        let blobs = DirBlobStore::new(data_dir.join("messages"));
        let credentials: HashMap<_, _> = local
            .credentials
            .iter()
            .map(|(name, c)| (name.clone(), c.local.clone()))
            .collect();
        let context = Context {
            backend: Backend::Local,
            state: Arc::new(state),
            blobs: Some(Arc::new(blobs)),
            secrets: Arc::new(
                FileSecretSource::new(credentials).with_sign_ins(LocalSignIns::new(data_dir)),
            ),
            graph,
            location: format!(
                "{} (database) and {} (messages)",
                db.display(),
                data_dir.join("messages").display()
            ),
            outbox_dir: Some(data_dir.join("outbox")),
            events: match &local.events {
                Some(events) => Events::Http(events.clone()),
                None => Events::None,
            },
            local: Some(local),
        };
        context.mirror_config().await?;
        Ok(context)
    }

    async fn aws(graph: GraphConfig) -> anyhow::Result<Context> {
        let mut env = Env::new(|name| std::env::var(name).ok());
        let table = env.required(
            "MAILROOM_TABLE",
            "the deployment's DynamoDB table (a stack output)",
        );
        let path_style = env.flag("MAILROOM_S3_PATH_STYLE", false);
        let bucket = std::env::var("MAILROOM_BUCKET")
            .ok()
            .filter(|b| !b.trim().is_empty());
        // As the import function: every message stored here is announced too.
        let bus = mailroom::config::event_bus(env.optional("MAILROOM_EVENT_BUS"));
        env.finish(())?;
        let clients = AwsClients::from_env(path_style).await;
        let blobs = bucket
            .as_ref()
            .map(|b| Arc::new(S3BlobStore::new(clients.s3.clone(), b)) as Arc<dyn BlobStore>);
        Ok(Context {
            backend: Backend::Aws,
            state: Arc::new(DynamoStateStore::new(clients.dynamodb, &table)),
            blobs,
            secrets: Arc::new(SecretsManagerSource::new(clients.secrets)),
            outbox_dir: None,
            events: match bus {
                Some(bus) => Events::Ready(Arc::new(EventBridgePublisher::new(
                    clients.eventbridge,
                    bus,
                ))),
                None => Events::None,
            },
            graph,
            local: None,
            location: match &bucket {
                Some(b) => format!("DynamoDB table {table} and S3 bucket {b}"),
                None => format!("DynamoDB table {table}"),
            },
        })
    }

    /// Makes the database's configuration equal to mailroom.toml's: the mailbox folders configured
    /// by hand and the discovery rules. Folders that discovery added stay (a rule that is gone
    /// disables its folders at the next discovery, keeping their mail). A new or changed rule
    /// loses its latest run, so the next discovery applies it at once.
    async fn mirror_config(&self) -> anyhow::Result<()> {
        let Some(local) = &self.local else {
            return Ok(());
        };
        for stale in self.state.list_mailboxes().await? {
            if stale.discovered_by.is_none() && !local.mailboxes.contains(&stale) {
                self.state.remove_mailbox(&stale.key()).await?;
            }
        }
        for config in &local.mailboxes {
            self.state.put_mailbox(config).await?;
        }
        let stored = self.state.list_discover_rules().await?;
        for rule in &stored {
            if !local.discover.iter().any(|r| r.id() == rule.id()) {
                self.state.remove_discover_rule(&rule.id()).await?;
            }
        }
        for rule in &local.discover {
            if !stored.contains(rule) {
                self.state.remove_discover_rule(&rule.id()).await?;
                self.state.put_discover_rule(rule).await?;
            }
        }
        Ok(())
    }

    /// The configured folders (of one mailbox, if given), with a clear error for an unknown one.
    pub async fn mailboxes(
        &self,
        only: Option<&MailboxAddress>,
    ) -> anyhow::Result<Vec<MailboxConfig>> {
        let all = self.state.list_mailboxes().await?;
        let Some(address) = only else { return Ok(all) };
        let found: Vec<_> = all
            .iter()
            .filter(|m| &m.address == address)
            .cloned()
            .collect();
        if found.is_empty() {
            let mut known: Vec<_> = all.iter().map(|m| m.address.to_string()).collect();
            known.dedup();
            bail!(
                "mailbox {address} is not configured; configured: {}",
                crate::config::names_or(known, "none (add one with `mailroom mailbox add`)")
            );
        }
        Ok(found)
    }

    pub fn blobs(&self) -> anyhow::Result<Arc<dyn BlobStore>> {
        self.blobs.clone().ok_or_else(|| {
            anyhow!("MAILROOM_BUCKET is not set (the deployment's S3 bucket, a stack output)")
        })
    }

    /// The publisher of stored messages' events, if the backend has one.
    fn event_publisher(&self) -> anyhow::Result<Option<Arc<dyn EventPublisher>>> {
        Ok(match &self.events {
            Events::None => None,
            Events::Ready(publisher) => Some(publisher.clone()),
            Events::Http(config) => {
                let secret = match &config.secret {
                    SecretRef::Env(var) => std::env::var(var).map_err(|_| {
                        anyhow!("[events] secret_env: the environment variable {var} is not set; set it to the signing secret the receiver checks")
                    })?,
                    SecretRef::File(path) => std::fs::read_to_string(path).map_err(|e| {
                        anyhow!("[events] secret_file: cannot read {}: {e}", path.display())
                    })?,
                    SecretRef::Certificate { .. } | SecretRef::None => {
                        bail!("[events] takes a secret: secret_env or secret_file")
                    }
                };
                let secret = secret.trim();
                if secret.is_empty() {
                    bail!("[events]: the signing secret is empty");
                }
                let publisher =
                    HttpEventPublisher::new(config.url.clone(), secret.to_owned().into())
                        .map_err(|e| anyhow!("[events]: {e}"))?;
                Some(Arc::new(publisher))
            }
        })
    }

    /// The engine over this context.
    pub fn engine(
        &self,
        observer: Arc<dyn ImportObserver>,
        stop: CancellationToken,
    ) -> anyhow::Result<Engine> {
        Ok(Engine {
            state: self.state.clone(),
            blobs: self.blobs()?,
            credentials: Arc::new(Credentials::new(
                self.secrets.clone(),
                Credentials::DEFAULT_TTL,
            )),
            graph: GraphClient::new(self.graph.clone())?,
            clock: Arc::new(SystemClock),
            observer,
            events: self.event_publisher()?,
            options: EngineOptions::default(),
            stop,
        })
    }
}

/// `MAILROOM_GRAPH_URL` / `MAILROOM_LOGIN_URL`, as in the Lambda functions.
pub fn graph_config() -> anyhow::Result<GraphConfig> {
    let mut env = Env::new(|name| std::env::var(name).ok());
    let config = env.graph();
    env.finish(config).context("reading the Graph settings")
}

pub fn parse_address(raw: &str) -> anyhow::Result<MailboxAddress> {
    Ok(MailboxAddress::parse(raw)?)
}
