//! The secret-expiry Lambda function, with two triggers:
//! - its daily EventBridge schedule: check every credential the configured mailboxes use: when
//!   it expires (from the app registration in Graph, else the stored `expires_at`), days left as
//!   a CloudWatch metric (embedded metric format, one line per credential on standard output),
//!   and an alert through SNS and/or mail at each threshold, once. It answers with the report;
//! - Secrets Manager, as a secret's rotation function: `{"SecretId", "ClientRequestToken",
//!   "Step"}` runs that step of the rotation protocol (`mailroom::rotation`). A failed step
//!   fails the invocation with what happened; AWSCURRENT keeps a working secret.
//!
//! Glue only: configuration from the environment, clients built once per cold start, the
//! `mailroom::expiry` and `mailroom::rotation` modules do the work.

use std::sync::Arc;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use mailroom::adapters::alerts::{FanOutAlerter, GraphMailAlerter};
use mailroom::adapters::aws::{
    AwsClients, DynamoStateStore, SecretsManagerSource, SecretsManagerVersions, SnsAlerter,
};
use mailroom::clock::SystemClock;
use mailroom::config::ExpirySettings;
use mailroom::credentials::Credentials;
use mailroom::expiry::{ExpiryChecker, ExpiryReport, metric_line};
use mailroom::graph::GraphClient;
use mailroom::lambda::{Trigger, init_tracing, to_json};
use mailroom::ports::Alerter;
use mailroom::rotation::{RotationOptions, Rotator};
use serde_json::Value;

const TRIGGERS: &str = "the secret-expiry function is invoked by its EventBridge schedule and by Secrets Manager as a rotation function";

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
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
        let (from, to, credential) = (mail.from.clone(), mail.to.clone(), mail.credential.clone());
        let alerter =
            GraphMailAlerter::new(graph.clone(), credentials.clone(), from, to, credential);
        channels.push(Arc::new(alerter));
    }
    if channels.is_empty() {
        tracing::warn!(
            "no alert channel: set MAILROOM_ALERT_TOPIC_ARN and/or MAILROOM_ALERT_MAIL_FROM with MAILROOM_ALERT_MAIL_TO; until then the check only reports and publishes the metric"
        );
    }
    let store = Arc::new(DynamoStateStore::new(clients.dynamodb, &settings.table));
    let checker = ExpiryChecker {
        mailboxes: store.clone(),
        alerts: store,
        credentials,
        graph: graph.clone(),
        alerter: (!channels.is_empty())
            .then(|| Arc::new(FanOutAlerter::new(channels)) as Arc<dyn Alerter>),
        clock: Arc::new(SystemClock),
        thresholds: settings.thresholds.clone(),
        probe_rotation: false,
    };
    let rotator = Rotator {
        versions: Arc::new(SecretsManagerVersions::new(clients.secrets.clone())),
        graph,
        clock: Arc::new(SystemClock),
        options: RotationOptions {
            lifetime: time::Duration::days(settings.rotation_secret_days as i64),
            ..RotationOptions::default()
        },
    };
    let (checker, rotator) = (&checker, &rotator);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        match Trigger::parse(event.payload, TRIGGERS)? {
            Trigger::Schedule => to_json(&scheduled_check(checker).await?),
            Trigger::Rotation(event) => to_json(&rotator.run(&event).await.inspect_err(|e| {
                tracing::error!(secret = %event.secret_id, step = e.step, error = %e, "rotation step failed");
            })?),
            other => Err(other.unexpected(TRIGGERS)),
        }
    }))
    .await
}

/// One check of every credential: the report, and one metric line per credential whose expiry
/// is known. Per-credential trouble is in the report; only an unreadable mailbox configuration
/// fails the invocation.
async fn scheduled_check(checker: &ExpiryChecker) -> Result<ExpiryReport, Diagnostic> {
    let report = checker.run().await?;
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
