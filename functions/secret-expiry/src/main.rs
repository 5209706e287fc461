//! The secret-expiry Lambda function. On its daily EventBridge schedule it checks every
//! credential the configured mailboxes use: when it expires (from the app registration in Graph,
//! else the stored `expires_at`), days left as a CloudWatch metric (embedded metric format, one
//! line per credential on standard output), and an alert through SNS and/or mail at each
//! threshold, once. It answers with the report.
//!
//! Glue only: configuration from the environment, clients built once per cold start, the
//! `mailroom::expiry` module does the work.

use std::sync::Arc;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use mailroom::adapters::alerts::{FanOutAlerter, GraphMailAlerter};
use mailroom::adapters::aws::{AwsClients, DynamoStateStore, SecretsManagerSource, SnsAlerter};
use mailroom::clock::SystemClock;
use mailroom::config::ExpirySettings;
use mailroom::credentials::Credentials;
use mailroom::expiry::{ExpiryChecker, ExpiryReport, metric_line};
use mailroom::graph::GraphClient;
use mailroom::ports::Alerter;
use serde_json::Value;

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

    let settings = ExpirySettings::from_env()?;
    let clients = AwsClients::from_env(false).await;
    let credentials = Arc::new(Credentials::new(
        Arc::new(SecretsManagerSource::new(clients.secrets.clone())),
        settings.secret_cache_ttl,
    ));
    let graph = GraphClient::new(settings.graph.clone())?;
    let mut channels: Vec<Arc<dyn Alerter>> = Vec::new();
    if let Some(topic) = &settings.alert_topic_arn {
        channels.push(Arc::new(SnsAlerter::new(clients.sns.clone(), topic)));
    }
    if let Some(mail) = &settings.alert_mail {
        channels.push(Arc::new(GraphMailAlerter::new(
            graph.clone(),
            credentials.clone(),
            mail.from.clone(),
            mail.to.clone(),
            mail.credential.clone(),
        )));
    }
    if channels.is_empty() {
        tracing::warn!(
            "no alert channel: set MAILROOM_ALERT_TOPIC_ARN and/or MAILROOM_ALERT_MAIL_FROM with MAILROOM_ALERT_MAIL_TO; until then the check only reports and publishes the metric"
        );
    }
    let checker = ExpiryChecker {
        state: Arc::new(DynamoStateStore::new(clients.dynamodb, &settings.table)),
        credentials,
        graph,
        alerter: (!channels.is_empty())
            .then(|| Arc::new(FanOutAlerter::new(channels)) as Arc<dyn Alerter>),
        clock: Arc::new(SystemClock),
        thresholds: settings.thresholds.clone(),
    };
    let checker = &checker;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        match Trigger::parse(event.payload)? {
            Trigger::Schedule => to_json(&scheduled_check(checker).await?),
        }
    }))
    .await
}

/// What invoked the function.
enum Trigger {
    /// The daily schedule's tick.
    Schedule,
}

impl Trigger {
    fn parse(payload: Value) -> Result<Self, Diagnostic> {
        serde_json::from_value::<EventBridgeEvent>(payload)
            .map(|_| Self::Schedule)
            .map_err(|e| Diagnostic {
                error_type: "InvalidEvent".into(),
                error_message: format!(
                    "the event is not an EventBridge event ({e}); this function is invoked by its EventBridge schedule"
                ),
            })
    }
}

fn to_json(value: &impl serde::Serialize) -> Result<Value, Diagnostic> {
    serde_json::to_value(value).map_err(|e| Diagnostic {
        error_type: "ResponseNotSerializable".into(),
        error_message: e.to_string(),
    })
}

/// One check of every credential: the report, and one metric line per credential whose expiry
/// is known. Per-credential trouble is in the report; only an unreadable mailbox configuration
/// fails the invocation.
async fn scheduled_check(checker: &ExpiryChecker) -> Result<ExpiryReport, Diagnostic> {
    let report = checker.run().await.map_err(|e| Diagnostic {
        error_type: "StateStoreUnavailable".into(),
        error_message: e.to_string(),
    })?;
    for credential in &report.credentials {
        if let Some(days) = credential.days_left {
            println!("{}", metric_line(&credential.name, days, report.checked_at));
        }
    }
    let needs_attention = report
        .credentials
        .iter()
        .filter(|c| c.needs_attention(&checker.thresholds))
        .count();
    tracing::info!(
        credentials = report.credentials.len(),
        needs_attention,
        "credential expiry check finished"
    );
    Ok(report)
}
