//! Both HTTP stacks trust exactly the CA bundle they are given (shared/src/tls.rs): the Graph
//! client reaches the sandbox and the AWS SDK reaches moto over HTTPS through a TLS front whose
//! certificate the bundle's CA signed, and neither connects when the bundle lacks that CA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
use graph_sandbox::{DEFAULT_CLIENT_ID, DEFAULT_SECRET, DEFAULT_TENANT, Mailbox, Sandbox, World};
use mailroom::adapters::aws::trusting;
use mailroom::credentials::{AppCredential, ClientAuth};
use mailroom::domain::MailboxAddress;
use mailroom::graph::{GraphClient, GraphConfig, RetryPolicy};
use mailroom::tls::CaBundle;
use mailroom_tests::moto::Moto;
use mailroom_tests::tls::{CA_PEM, TlsFront};

const MAILBOX: &str = "reports@contoso.com";

/// A bundle holding the test CA, and one holding an unrelated certificate (the front's own,
/// which is no CA).
fn bundles(dir: &std::path::Path) -> (CaBundle, CaBundle) {
    let ours = dir.join("ca.pem");
    std::fs::write(&ours, CA_PEM).unwrap();
    let other = dir.join("other.pem");
    std::fs::write(&other, include_str!("../fixtures/tls/server.pem")).unwrap();
    (
        CaBundle::read(&ours).unwrap(),
        CaBundle::read(&other).unwrap(),
    )
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

async fn find_inbox(front: &TlsFront, bundle: CaBundle) -> Result<String, String> {
    let url = url::Url::parse(&front.url()).unwrap();
    let mut config = GraphConfig::new(url.clone(), url);
    config.ca_bundle = Some(bundle);
    config.retry = RetryPolicy {
        max_retries: 1,
        base: Duration::from_millis(10),
        ..RetryPolicy::default()
    };
    let graph = GraphClient::new(config).unwrap();
    let credential = AppCredential::new(
        DEFAULT_TENANT,
        DEFAULT_CLIENT_ID,
        ClientAuth::Secret(DEFAULT_SECRET.to_owned().into()),
    );
    graph
        .mailbox(credential, MailboxAddress::parse(MAILBOX).unwrap())
        .resolve_folder("Inbox")
        .await
        .map(|folder| folder.display_name)
        .map_err(|e| format!("{e:#}"))
}

#[tokio::test]
async fn the_graph_client_trusts_exactly_its_bundle() {
    let world = World::default_test().mailbox(DEFAULT_TENANT, Mailbox::new(MAILBOX));
    let sandbox = Sandbox::start(world).await.unwrap();
    let front = TlsFront::start(&host_port(&sandbox.url())).await;
    let dir = tempfile::tempdir().unwrap();
    let (ours, other) = bundles(dir.path());

    assert_eq!(find_inbox(&front, ours).await.unwrap(), "Inbox");
    let refused = find_inbox(&front, other).await.unwrap_err();
    assert!(refused.contains("certificate"), "{refused}");
}

#[tokio::test]
async fn the_aws_sdk_trusts_exactly_its_bundle() {
    let moto = Moto::shared();
    let front = TlsFront::start(&host_port(&moto.endpoint())).await;
    let dir = tempfile::tempdir().unwrap();
    let (ours, other) = bundles(dir.path());
    let list_tables = |bundle: CaBundle| {
        let endpoint = front.url();
        async move {
            let loader = aws_config::defaults(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                    "testing", "testing", None, None, "moto",
                )))
                .endpoint_url(endpoint);
            let config = trusting(loader, &bundle).load().await;
            aws_sdk_dynamodb::Client::new(&config)
                .list_tables()
                .send()
                .await
                .map_err(|e| format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(e)))
        }
    };

    list_tables(ours).await.unwrap();
    let refused = list_tables(other).await.unwrap_err();
    assert!(refused.contains("certificate"), "{refused}");
}
