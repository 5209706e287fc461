//! The set-up both binary tests share: a configured mailbox whose credential (with its key id)
//! expires in a given number of days according to its app registration, which the app may read,
//! an SNS topic with a queue to read alerts back, and the function's environment for them.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)] // each test file uses its part

use graph_sandbox::{
    DEFAULT_CLIENT_ID, DEFAULT_SECRET, DEFAULT_SECRET_ID, DEFAULT_TENANT, Mailbox, World,
};
use mailroom::domain::AfterImport;
use mailroom_tests::stack::Stack;

pub struct Expiring {
    pub stack: Stack,
    /// When the app registration says the secret expires (whole seconds).
    pub expires_at: time::OffsetDateTime,
    /// A queue subscribed to the alert topic.
    pub alerts: String,
    /// The function's environment.
    pub env: Vec<(&'static str, String)>,
}

pub async fn credential_expiring_in(days: i64) -> Expiring {
    let mailbox = "reports@contoso.com";
    let world =
        World::default_test().mailbox(DEFAULT_TENANT, Mailbox::new(mailbox).messages("Inbox", 1));
    let stack = Stack::start(world).await;
    stack.configure(mailbox, "Inbox", AfterImport::None).await;
    stack.sandbox.set_app_permissions(
        DEFAULT_CLIENT_ID,
        &["Mail.ReadWrite", "Application.Read.All"],
    );
    let expires_at = (time::OffsetDateTime::now_utc() + time::Duration::days(days))
        .replace_nanosecond(0)
        .unwrap();
    stack
        .sandbox
        .set_password_expiry(DEFAULT_CLIENT_ID, DEFAULT_SECRET_ID, expires_at);
    let json = serde_json::json!({
        "tenant_id": DEFAULT_TENANT,
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_SECRET,
        "key_id": DEFAULT_SECRET_ID,
    })
    .to_string();
    stack.store_secret(&stack.credential, &json).await;
    let (topic, alerts) = stack.moto.fresh_topic().await;
    let env = vec![
        ("MAILROOM_TABLE", stack.state.table().to_owned()),
        ("MAILROOM_ALERT_TOPIC_ARN", topic),
        ("MAILROOM_GRAPH_URL", stack.sandbox.url()),
        ("MAILROOM_LOGIN_URL", stack.sandbox.url()),
        ("AWS_ENDPOINT_URL", stack.moto.endpoint()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("RUST_LOG", "info".into()),
    ];
    Expiring {
        stack,
        expires_at,
        alerts,
        env,
    }
}
