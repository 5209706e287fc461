//! The scheduled import Lambda function: on each EventBridge tick, import every enabled mailbox
//! folder until shortly before the invocation's deadline.
//!
//! Glue only: configuration from the environment, clients built once per cold start, the engine
//! does the work.

use std::sync::Arc;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use mailroom::adapters::aws::{AwsClients, DynamoStateStore, S3BlobStore, SecretsManagerSource};
use mailroom::clock::SystemClock;
use mailroom::config::ImportSettings;
use mailroom::credentials::Credentials;
use mailroom::engine::{Engine, EngineOptions, NoObserver, RunReport};
use mailroom::graph::GraphClient;
use time::OffsetDateTime;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AWS_LAMBDA_LOG_LEVEL")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .without_time()
        .init();

    let settings = ImportSettings::from_env()?;
    let clients = AwsClients::from_env(settings.aws.s3_path_style).await;
    let engine = Engine {
        state: Arc::new(DynamoStateStore::new(clients.dynamodb, &settings.aws.table)),
        blobs: Arc::new(S3BlobStore::new(clients.s3, &settings.aws.bucket)),
        credentials: Arc::new(Credentials::new(
            Arc::new(SecretsManagerSource::new(clients.secrets)),
            settings.aws.secret_cache_ttl,
        )),
        graph: GraphClient::new(settings.aws.graph.clone())?,
        clock: Arc::new(SystemClock),
        observer: Arc::new(NoObserver),
        options: EngineOptions {
            mailbox_parallelism: settings.mailbox_parallelism,
            ..EngineOptions::default()
        },
        stop: Default::default(),
    };
    let engine = &engine;
    let stop_margin = settings.stop_margin;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent>| async move {
            let deadline = OffsetDateTime::from(event.context.deadline());
            scheduled_import(engine, deadline - stop_margin).await
        },
    ))
    .await
}

/// One scheduled run. Per-mailbox failures are in the report (and logged by the engine); only a
/// failure to read the configuration fails the invocation.
async fn scheduled_import(
    engine: &Engine,
    stop_at: OffsetDateTime,
) -> Result<RunReport, Diagnostic> {
    let report = engine.run(stop_at, None).await.map_err(|e| Diagnostic {
        error_type: "StateStoreUnavailable".into(),
        error_message: e.to_string(),
    })?;
    tracing::info!(
        mailboxes = report.mailboxes.len(),
        imported = report.imported(),
        failed_mailboxes = report.failed_mailboxes(),
        "scheduled import finished"
    );
    Ok(report)
}
