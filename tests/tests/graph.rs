//! The Graph client's own etiquette, end to end against the Graph sandbox over HTTP: the base URL
//! in the form Microsoft's SDKs use, one token refresh for many requests that met 401 together,
//! and which requests are retried (docs/graph.md §7). No AWS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use graph_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_SECRET, DEFAULT_TENANT, FaultKind, FaultRule, Mailbox, Sandbox,
    World,
};
use mailroom::credentials::{AppCredential, ClientAuth};
use mailroom::domain::MailboxAddress;
use mailroom::graph::{GraphClient, GraphConfig, MailboxClient, RetryPolicy};

const MAILBOX: &str = "alerts@contoso.com";

async fn sandbox() -> Sandbox {
    let world = World::default_test().mailbox(DEFAULT_TENANT, Mailbox::new(MAILBOX));
    let sandbox = Sandbox::start(world).await.expect("sandbox");
    sandbox.set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.ReadWrite", "Mail.Send"]);
    sandbox
}

fn client(graph_url: &str, login_url: &str) -> GraphClient {
    let mut config = GraphConfig::new(
        url::Url::parse(graph_url).expect("graph URL"),
        url::Url::parse(login_url).expect("login URL"),
    );
    config.retry = RetryPolicy {
        max_retries: 4,
        base: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(1),
        ..RetryPolicy::default()
    };
    GraphClient::new(config).expect("graph client")
}

fn mailbox(graph: &GraphClient) -> MailboxClient {
    let credential = AppCredential::new(
        DEFAULT_TENANT,
        DEFAULT_CLIENT_ID,
        ClientAuth::Secret(DEFAULT_SECRET.to_owned().into()),
    );
    graph.mailbox(credential, MailboxAddress::parse(MAILBOX).expect("address"))
}

fn requests_to(sandbox: &Sandbox, method: &str, path_end: &str) -> usize {
    sandbox
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path.ends_with(path_end))
        .count()
}

#[tokio::test]
async fn a_graph_url_with_the_version_reaches_the_same_api() {
    let sandbox = sandbox().await;
    for base in [
        sandbox.url(),
        format!("{}/v1.0", sandbox.url()),
        format!("{}/v1.0/", sandbox.url()),
    ] {
        let folder = mailbox(&client(&base, &sandbox.url()))
            .get_folder("inbox")
            .await
            .unwrap_or_else(|e| panic!("{base}: {e}"));
        assert_eq!(folder.display_name, "Inbox", "{base}");
    }
}

#[tokio::test]
async fn requests_that_meet_401_together_share_one_token_refresh() {
    let sandbox = sandbox().await;
    sandbox.set_token_lifetime(3600);
    let graph = client(&sandbox.url(), &sandbox.url());
    let mailbox = mailbox(&graph);
    mailbox.get_folder("inbox").await.expect("first request");
    assert_eq!(sandbox.token_requests(), 1);

    // The sandbox's clock jumps past the token's expiry; ours still holds it as valid, so every
    // request in flight meets 401 with the same token.
    sandbox.advance_clock(Duration::from_secs(2 * 3600));
    let requests = (0..16).map(|_| mailbox.get_folder("inbox"));
    for result in futures::future::join_all(requests).await {
        result.expect("each request succeeds after the refresh");
    }
    assert_eq!(
        sandbox.token_requests(),
        2,
        "one refresh serves every request that met 401 with the old token"
    );
}

#[tokio::test]
async fn send_mail_is_not_repeated_after_graph_may_have_acted() {
    let sandbox = sandbox().await;
    let mailbox = mailbox(&client(&sandbox.url(), &sandbox.url()));
    let to = [MailboxAddress::parse("ops@contoso.com").expect("address")];

    // A 503 may come after the message was queued: sending again could send it twice.
    sandbox.inject(
        FaultRule::new(FaultKind::Status(503, None))
            .method("POST")
            .path_contains("/sendMail"),
    );
    let err = mailbox
        .send_mail(&to, "expiry", "the secret expires soon")
        .await
        .expect_err("a 503 on sendMail is reported, not retried");
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(requests_to(&sandbox, "POST", "/sendMail"), 1);

    // A 429 is a request Graph refused without acting on it: it is retried.
    sandbox.inject(
        FaultRule::new(FaultKind::Throttle(0.01))
            .method("POST")
            .path_contains("/sendMail"),
    );
    mailbox
        .send_mail(&to, "expiry", "the secret expires soon")
        .await
        .expect("a throttled sendMail is retried");
    assert_eq!(requests_to(&sandbox, "POST", "/sendMail"), 3);
    assert_eq!(sandbox.sent_mail().len(), 1, "sent exactly once");
}

#[tokio::test]
async fn a_read_is_retried_after_a_server_error() {
    let sandbox = sandbox().await;
    let mailbox = mailbox(&client(&sandbox.url(), &sandbox.url()));
    sandbox.inject(
        FaultRule::new(FaultKind::Status(503, None))
            .method("GET")
            .path_contains("/mailFolders/inbox")
            .times(2),
    );
    mailbox.get_folder("inbox").await.expect("retried");
    assert_eq!(requests_to(&sandbox, "GET", "/mailFolders/inbox"), 3);
}

#[tokio::test]
async fn no_retry_starts_past_the_time_budget() {
    let sandbox = sandbox().await;
    let mut config = GraphConfig::new(
        url::Url::parse(&sandbox.url()).expect("URL"),
        url::Url::parse(&sandbox.url()).expect("URL"),
    );
    config.retry = RetryPolicy {
        max_retries: 100,
        max_retry_after: Duration::from_secs(60),
        // Graph asks for 30 s; the budget allows no such wait.
        max_elapsed: Duration::from_secs(10),
        ..RetryPolicy::default()
    };
    let mailbox = mailbox(&GraphClient::new(config).expect("client"));
    sandbox.inject(
        FaultRule::new(FaultKind::Status(503, Some(30.0)))
            .method("GET")
            .path_contains("/mailFolders/inbox"),
    );
    let started = std::time::Instant::now();
    let err = mailbox
        .get_folder("inbox")
        .await
        .expect_err("gives up instead of waiting past its budget");
    assert!(err.to_string().contains("503"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "did not wait");
    assert_eq!(requests_to(&sandbox, "GET", "/mailFolders/inbox"), 1);
}
