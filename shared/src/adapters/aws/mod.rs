//! AWS adapters: [`DynamoStateStore`], [`S3BlobStore`], [`SecretsManagerSource`], [`SqsJobQueue`],
//! [`SnsAlerter`], [`EventBridgePublisher`], and the SDK clients they are built from.

#[cfg(feature = "aws-s3")]
mod attachments;
#[cfg(feature = "aws-sqs")]
mod deadletters;
#[cfg(feature = "aws-dynamodb")]
mod dynamodb;
#[cfg(feature = "aws-eventbridge")]
mod eventbridge;
#[cfg(feature = "aws-secretsmanager")]
mod rotation;
#[cfg(feature = "aws-s3")]
mod s3;
#[cfg(feature = "aws-secretsmanager")]
mod secrets;
#[cfg(feature = "aws-secretsmanager")]
mod signins;
#[cfg(feature = "aws-sns")]
mod sns;
#[cfg(feature = "aws-sqs")]
mod sqs;
#[cfg(feature = "aws-secretsmanager")]
mod tagging;

#[cfg(feature = "aws-s3")]
pub use attachments::S3Attachments;
#[cfg(feature = "aws-sqs")]
pub use deadletters::{REASON_ATTRIBUTE, SqsDeadLetters};
#[cfg(feature = "aws-dynamodb")]
pub use dynamodb::{BY_RECEIVED_INDEX, DynamoStateStore, PENDING_INDEX};
#[cfg(feature = "aws-eventbridge")]
pub use eventbridge::EventBridgePublisher;
#[cfg(feature = "aws-secretsmanager")]
pub use rotation::SecretsManagerVersions;
#[cfg(feature = "aws-s3")]
pub use s3::{DEFAULT_PART_SIZE, MIN_PART_SIZE, S3BlobStore};
#[cfg(feature = "aws-secretsmanager")]
pub use secrets::SecretsManagerSource;
#[cfg(feature = "aws-secretsmanager")]
pub use signins::{DELEGATED_TAG, SecretsManagerSignIns};
#[cfg(feature = "aws-sns")]
pub use sns::SnsAlerter;
#[cfg(feature = "aws-sqs")]
pub use sqs::SqsJobQueue;
#[cfg(feature = "aws-secretsmanager")]
pub use tagging::DelegatedSecretTag;

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};

use crate::tls::CaBundle;

/// The SDK clients the AWS adapters need, built once per process (cold start) and cloned into
/// the adapters: clients share their connection pool when cloned. Only the clients of the enabled
/// `aws-*` features exist, so a function builds (and links) only the SDKs it calls.
#[derive(Clone, Debug)]
pub struct AwsClients {
    #[cfg(feature = "aws-dynamodb")]
    pub dynamodb: aws_sdk_dynamodb::Client,
    #[cfg(feature = "aws-s3")]
    pub s3: aws_sdk_s3::Client,
    #[cfg(feature = "aws-secretsmanager")]
    pub secrets: aws_sdk_secretsmanager::Client,
    #[cfg(feature = "aws-sqs")]
    pub sqs: aws_sdk_sqs::Client,
    #[cfg(feature = "aws-sns")]
    pub sns: aws_sdk_sns::Client,
    #[cfg(feature = "aws-eventbridge")]
    pub eventbridge: aws_sdk_eventbridge::Client,
}

/// How long one attempt of an AWS call may take, sent and answered, before the SDK abandons it
/// and retries (its retry policy decides how often). The SDK sets no such limit by default, so a
/// call whose answer never comes would hold the function until Lambda's own timeout. DynamoDB,
/// SQS and Secrets Manager answer in milliseconds; the longest attempt Mailroom makes is an 8 MiB
/// S3 part, seconds even on a slow link.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

/// The SDK's connect timeout (aws-config's default too): a refused or black-holed connection
/// fails fast and is retried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// Mailroom's timeouts for every AWS client: `attempt` per attempt ([`ATTEMPT_TIMEOUT`] in the
/// functions and the CLI; tests shorten it to show the retry).
pub fn timeouts(attempt: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(attempt)
        .build()
}

/// `loader` with aws-config's default HTTP client (rustls with aws-lc, the connector settings
/// and proxy of each client) trusting `bundle`, instead of looking for the system's certificates
/// itself.
pub fn trusting(loader: ConfigLoader, bundle: &CaBundle) -> ConfigLoader {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
    use aws_smithy_http_client::{Builder, ConnectorBuilder};
    let trust = TrustStore::empty().with_pem_certificate(bundle.pem().to_vec());
    let Ok(context) = TlsContext::builder().with_trust_store(trust).build() else {
        return loader;
    };
    loader.http_client(
        Builder::new().build_with_connector_fn(move |settings, components| {
            let mut connector = ConnectorBuilder::default()
                .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
                .tls_context(context.clone());
            connector.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                connector.set_sleep_impl(components.sleep_impl());
            }
            connector.set_proxy_config(Some(ProxyConfig::from_env()));
            connector.build()
        }),
    )
}

impl AwsClients {
    /// Clients from the environment: region, credentials and `AWS_ENDPOINT_URL` (for an
    /// emulator) as the AWS SDK reads them. `s3_path_style` addresses buckets as
    /// `endpoint/bucket` instead of `bucket.endpoint`, which emulators on localhost need.
    ///
    /// On Linux the HTTP client trusts the system's CA bundle, read once ([`crate::tls`]).
    pub async fn from_env(s3_path_style: bool) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(timeouts(ATTEMPT_TIMEOUT));
        if let Some(bundle) = CaBundle::system() {
            loader = trusting(loader, &bundle);
        }
        Self::from_sdk_config(&loader.load().await, s3_path_style)
    }

    /// Clients from an already loaded SDK configuration.
    #[cfg_attr(not(feature = "aws-s3"), allow(unused_variables))]
    pub fn from_sdk_config(config: &SdkConfig, s3_path_style: bool) -> Self {
        Self {
            #[cfg(feature = "aws-dynamodb")]
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            #[cfg(feature = "aws-s3")]
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(config)
                    .force_path_style(s3_path_style)
                    .build(),
            ),
            #[cfg(feature = "aws-secretsmanager")]
            secrets: aws_sdk_secretsmanager::Client::new(config),
            #[cfg(feature = "aws-sqs")]
            sqs: aws_sdk_sqs::Client::new(config),
            #[cfg(feature = "aws-sns")]
            sns: aws_sdk_sns::Client::new(config),
            #[cfg(feature = "aws-eventbridge")]
            eventbridge: aws_sdk_eventbridge::Client::new(config),
        }
    }
}

/// The engine of a Lambda function: the state in DynamoDB, messages in S3, credentials from
/// Secrets Manager, Graph as `settings` say; no events and the default options, for the caller
/// to change.
#[cfg(all(
    feature = "aws-dynamodb",
    feature = "aws-s3",
    feature = "aws-secretsmanager"
))]
pub fn engine(
    settings: &crate::config::AwsSettings,
    clients: &AwsClients,
) -> Result<crate::engine::Engine, crate::graph::GraphError> {
    use std::sync::Arc;
    Ok(crate::engine::Engine {
        state: Arc::new(DynamoStateStore::new(
            clients.dynamodb.clone(),
            &settings.table,
        )),
        blobs: Arc::new(S3BlobStore::new(clients.s3.clone(), &settings.bucket)),
        credentials: Arc::new(crate::credentials::Credentials::new(
            Arc::new(SecretsManagerSource::new(clients.secrets.clone())),
            settings.secret_cache_ttl,
        )),
        graph: crate::graph::GraphClient::new(settings.graph.clone())?,
        clock: Arc::new(crate::clock::SystemClock),
        observer: Arc::new(crate::engine::NoObserver),
        events: None,
        options: crate::engine::EngineOptions::default(),
        stop: Default::default(),
    })
}

/// The AWS SDK operations an adapter's source calls: every `client` followed by `.operation(`,
/// outside the test module and outside the functions named in `skip` (their bodies end at the
/// first line that closes a method, `    }`). Backs each adapter's test that its `IAM_ACTIONS`
/// list is complete and no larger than needed.
#[cfg(test)]
pub(crate) fn sdk_calls(source: &str, skip: &[&str]) -> std::collections::BTreeSet<String> {
    let mut code = source
        .split("\n#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default()
        .to_owned();
    for function in skip {
        let start = code
            .find(function)
            .unwrap_or_else(|| panic!("no {function}"));
        let end = start
            + code[start..]
                .find("\n    }\n")
                .unwrap_or_else(|| panic!("no end of {function}"));
        code.replace_range(start..end, "");
    }
    let mut calls = std::collections::BTreeSet::new();
    // `self.client.put_item()` or, in a helper handed the client, `client.put_item()`.
    for (at, _) in code.match_indices("client") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = code[at + "client".len()..].trim_start();
        let Some(rest) = rest.strip_prefix('.') else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        // `client.clone()` hands the client on; it is not an operation.
        if rest[name.len()..].starts_with("()") && name != "clone" {
            calls.insert(name);
        }
    }
    calls
}

/// The SDK operations named in an adapter's `IAM_ACTIONS`.
#[cfg(test)]
pub(crate) fn listed_calls(actions: &[(&str, &str)]) -> std::collections::BTreeSet<String> {
    actions.iter().map(|(call, _)| (*call).to_owned()).collect()
}
