//! Secrets hygiene across the suite's scenarios (issue 16): one TRACE-level `tracing` subscriber
//! for every target (Mailroom, the AWS SDK, hyper-util…) and a `log` logger (reqwest and rustls
//! log through the `log` crate) write into memory while the scenarios of the other end-to-end
//! tests run against moto and the Graph sandbox: an import with events posted and signed, a
//! certificate credential, a wrong secret, an unknown app and tenant, an expired secret, Graph
//! answering 401 and 403, the token endpoint answering 503 and cutting its answer short, the
//! doctor, the expiry check with its alerts through SNS and mail, a rotation, and push
//! (subscriptions with their `clientState`, notifications with the right and a wrong one through
//! the webhook). Every error returned, every report, and the `Debug` and `Display` of every
//! credential, configuration and settings type are gathered too, with the alerts read back from
//! moto and the mail the sandbox recorded.
//!
//! The log is split by Mailroom's own log filter (`mailroom::redact::may_log`, which the Lambda
//! functions and the CLI install whatever level is asked for): what it lets through must hold no
//! secret; what it drops (the AWS SDK's response bodies at TRACE, which do hold every
//! `clientState`) is counted and printed.
//!
//! The secrets: the app's client secret, a wrong one, the certificate's private key, every access
//! token the sandbox issued, every `clientState`, the secret rotation created, the event-signing
//! secret and the signatures it made. None may appear, as is or in the forms a request body or
//! header would carry (form-urlencoded, JSON-escaped, hex, base64 at every alignment, a byte
//! list). With a delegated credential (a person's sign-in) every refresh token the sandbox
//! issued is searched for too.
//!
//! The `mailroom` binary's own output (doctor, credentials check, import) is checked by
//! `cli/tests/secrets.rs`: only the CLI crate's tests can run its binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use graph_sandbox::fixtures::{TEST_CERT_PEM, TEST_KEY_PEM};
use graph_sandbox::{
    App, AppSecret, DEFAULT_APP_OBJECT_ID, DEFAULT_CLIENT_ID, DEFAULT_DELEGATED_PERMISSIONS,
    DEFAULT_DOMAIN, DEFAULT_TENANT, FaultKind, FaultRule, Mailbox, NewMessage, Tenant, World,
};
use mailroom::adapters::alerts::{FanOutAlerter, GraphMailAlerter};
use mailroom::adapters::aws::{SecretsManagerSource, SecretsManagerVersions, SnsAlerter};
use mailroom::adapters::local::{FileSecretSource, HttpEventPublisher, LocalCredential, SecretRef};
use mailroom::clock::Clock;
use mailroom::credentials::{AppCredential, CertificateCredential, ClientAuth, Credentials};
use mailroom::domain::{AfterImport, ClientState, MailboxAddress, MailboxConfig};
use mailroom::engine::{EngineOptions, NoObserver};
use mailroom::expiry::{ExpiryChecker, Thresholds};
use mailroom::graph::GraphClient;
use mailroom::ports::{Alerter, MailboxConfigs, SecretSource, Subscriptions};
use mailroom::push::notification::NotificationCollection;
use mailroom::push::{Webhook, WebhookRequest};
use mailroom::redact::Redactor;
use mailroom::rotation::RotationStep;
use mailroom_tests::push::PushRig;
use mailroom_tests::secrets::{EventSink, distinctive_secret, forms, leaks};
use mailroom_tests::stack::Stack;
use secrecy::{ExposeSecret, SecretString};
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const MAILBOX: &str = "reports@contoso.com";
const CERT_MAILBOX: &str = "invoices@contoso.com";
const SENDER: &str = "alerts@contoso.com";
const FOLDER: &str = "Inbox/Backup Reports";
const PROCESSED: &str = "Inbox/Processed";
const KEY_ID: &str = "0b7c1e9a-3d4f-4e5a-9b6c-7d8e9f0a1b2c";
/// The person who signs in for a delegated credential.
const DELEGATE: &str = "alice@contoso.com";

// ---------------------------------------------------------------------------------------------
// The capture.

/// Bytes written by the subscriber, shared by every writer it makes.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;

    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

/// What the subscriber wrote: every event and span of every target at TRACE, split by
/// Mailroom's own log filter ([`mailroom::redact::may_log`], which the Lambda functions and the
/// CLI install on top of the level asked for) into what it lets through and what it drops.
struct Capture {
    kept: Buffer,
    dropped: Buffer,
}

/// `log` records (reqwest, rustls) into the kept text. Mailroom's binaries have no `log` bridge
/// (no `tracing-log` in the dependency graph), so these go nowhere in production; checked all
/// the same.
struct LogBridge(Buffer);

impl log::Log for LogBridge {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = format!(
            "{} {} (log): {}\n",
            record.level(),
            record.target(),
            record.args()
        );
        let _ = self.0.clone().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

fn dropped_by_mailroom(metadata: &tracing::Metadata<'_>) -> bool {
    !mailroom::redact::may_log(metadata)
}

/// The test binary's one subscriber, installed on first use.
fn capture() -> &'static Capture {
    use tracing_subscriber::filter::{LevelFilter, filter_fn};
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture {
            kept: Buffer::default(),
            dropped: Buffer::default(),
        };
        let kept = tracing_subscriber::fmt::layer()
            .with_writer(capture.kept.clone())
            .with_ansi(false)
            .with_filter(filter_fn(mailroom::redact::may_log));
        let dropped = tracing_subscriber::fmt::layer()
            .with_writer(capture.dropped.clone())
            .with_ansi(false)
            .with_filter(filter_fn(dropped_by_mailroom));
        tracing_subscriber::registry()
            .with(LevelFilter::TRACE)
            .with(kept)
            .with(dropped)
            .try_init()
            .expect("the only subscriber of this test binary");
        let bridge: &'static LogBridge = Box::leak(Box::new(LogBridge(capture.kept.clone())));
        log::set_logger(bridge).expect("the only logger of this test binary");
        log::set_max_level(log::LevelFilter::Trace);
        capture
    })
}

// ---------------------------------------------------------------------------------------------
// Known secrets and the text to search.

/// The secrets to look for, and every text gathered besides the log.
#[derive(Default)]
struct Evidence {
    secrets: BTreeMap<String, String>,
    texts: Vec<(String, String)>,
}

impl Evidence {
    fn secret(&mut self, label: impl Into<String>, value: impl Into<String>) {
        let value = value.into();
        assert!(value.len() >= 16, "a secret too short to search for");
        self.secrets.insert(label.into(), value);
    }

    /// `Debug` and `Display` of a value.
    fn shown<T: std::fmt::Debug + std::fmt::Display>(&mut self, label: &str, value: &T) {
        self.text(format!("{label} (Display)"), value.to_string());
        self.debug(label, value);
    }

    fn debug<T: std::fmt::Debug>(&mut self, label: &str, value: &T) {
        self.text(format!("{label} (Debug)"), format!("{value:?}"));
        self.text(format!("{label} (Debug, pretty)"), format!("{value:#?}"));
    }

    fn text(&mut self, label: impl Into<String>, text: impl Into<String>) {
        self.texts.push((label.into(), text.into()));
    }
}

// ---------------------------------------------------------------------------------------------
// The scenarios.

fn world(secret: &str) -> World {
    World::new().tenant(
        Tenant::new(DEFAULT_TENANT)
            .domain(DEFAULT_DOMAIN)
            .app(
                App::new(DEFAULT_CLIENT_ID)
                    .object_id(DEFAULT_APP_OBJECT_ID)
                    .secret(AppSecret::new(secret).key_id(KEY_ID))
                    .permissions(&[
                        "Mail.ReadWrite",
                        "Mail.Send",
                        "Application.ReadWrite.OwnedBy",
                    ])
                    // A person signs in with it too (a delegated credential).
                    .delegated_permissions(DEFAULT_DELEGATED_PERMISSIONS)
                    .allow_public_client_flows(true)
                    .public_client_redirect_uri("http://localhost"),
            )
            .mailbox(
                Mailbox::new(MAILBOX)
                    .folder(FOLDER)
                    .folder(PROCESSED)
                    .messages(FOLDER, 6),
            )
            .mailbox(Mailbox::new(CERT_MAILBOX).messages("Inbox", 3))
            .mailbox(Mailbox::new(SENDER))
            .mailbox(Mailbox::new(DELEGATE).messages("Inbox", 2)),
    )
}

fn secret_json(secret: &str) -> String {
    serde_json::json!({
        "tenant_id": DEFAULT_TENANT,
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": secret,
        "key_id": KEY_ID,
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_known_secret_appears_in_any_log_line_error_debug_output_or_alert() {
    let log = capture();
    let mut evidence = Evidence::default();
    let client_secret = distinctive_secret("Cs1");
    let wrong_secret = distinctive_secret("Wr0");
    let events_secret = format!("whsec-{}", uuid::Uuid::new_v4().simple());
    evidence.secret("client secret", &client_secret);
    evidence.secret("wrong client secret", &wrong_secret);
    evidence.secret("event-signing secret", &events_secret);
    let key_der = base64::engine::general_purpose::STANDARD
        .decode(
            TEST_KEY_PEM
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    for (n, line) in TEST_KEY_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .enumerate()
        .filter(|(_, l)| l.len() >= 60)
    {
        evidence.secret(format!("private key (PEM line {n})"), line);
    }
    evidence.secret(
        "private key (DER, hex)",
        hex::encode(&key_der[key_der.len() / 2..key_der.len() / 2 + 32]),
    );

    let stack = Stack::start(world(&client_secret)).await;
    stack.sandbox.set_password_propagation_delay(Duration::ZERO);
    stack
        .store_secret(&stack.credential, &secret_json(&client_secret))
        .await;
    stack
        .configure(
            MAILBOX,
            FOLDER,
            AfterImport::Move {
                processed_folder: PROCESSED.into(),
            },
        )
        .await;

    // A certificate credential for a second mailbox.
    let certificate_name = format!("{}-certificate", stack.credential);
    stack
        .sandbox
        .add_certificate(DEFAULT_CLIENT_ID, TEST_CERT_PEM)
        .unwrap();
    let certificate_json = serde_json::json!({
        "tenant_id": DEFAULT_TENANT,
        "client_id": DEFAULT_CLIENT_ID,
        "certificate_pem": TEST_CERT_PEM,
        "private_key_pem": TEST_KEY_PEM,
    })
    .to_string();
    stack
        .store_secret(&certificate_name, &certificate_json)
        .await;
    stack
        .state
        .put_mailbox(&MailboxConfig {
            address: MailboxAddress::parse(CERT_MAILBOX).unwrap(),
            folder: "Inbox".into(),
            action: AfterImport::None,
            credential: certificate_name.clone(),
            enabled: true,
            discovered_by: None,
        })
        .await
        .unwrap();

    // 1. A full import, with events signed and posted.
    let sink = EventSink::start().await;
    let mut engine = stack.engine_with(Arc::new(NoObserver), EngineOptions::default());
    let publisher =
        HttpEventPublisher::new(sink.url.clone(), SecretString::from(events_secret.clone()))
            .unwrap()
            .with_backoff(vec![Duration::from_millis(10)]);
    evidence.debug("HttpEventPublisher", &publisher);
    engine.events = Some(Arc::new(publisher));
    let report = stack.run_with(engine).await;
    assert_eq!(report.imported(), 6 + 3, "{report:#?}");
    evidence.debug("run report", &report);
    evidence.text("run report (JSON)", serde_json::to_string(&report).unwrap());
    assert!(
        !sink.signatures.lock().unwrap().is_empty(),
        "no event was delivered"
    );

    // 1b. A delegated credential: Alice signs in, her mailbox is imported with her token (the
    // refresh token redeemed and its successor stored), then her sign-in is revoked and the run
    // says to sign in again.
    let delegated = format!("{}-delegated", stack.credential);
    let scopes = ["Mail.ReadWrite", "offline_access"];
    let signed_in = mailroom_tests::delegated::sign_in(&stack.sandbox, DELEGATE, &scopes).await;
    evidence.debug("SignedIn", &signed_in);
    stack.put_delegated(&delegated, &scopes, &signed_in).await;
    let alice = MailboxConfig {
        address: MailboxAddress::parse(DELEGATE).unwrap(),
        folder: "Inbox".into(),
        action: AfterImport::MarkRead,
        credential: delegated.clone(),
        enabled: true,
        discovered_by: None,
    };
    stack.state.put_mailbox(&alice).await.unwrap();
    let report = stack.run().await;
    evidence.debug("delegated: run report", &report);
    assert!(
        report
            .mailboxes
            .iter()
            .any(|m| m.mailbox.as_str() == DELEGATE && m.imported() == 2),
        "{report:#?}"
    );
    let fetched = stack
        .engine()
        .credentials
        .refresh(&delegated)
        .await
        .unwrap();
    evidence.debug("delegated AppCredential", &fetched);
    assert!(stack.sandbox.revoke_refresh_tokens(DELEGATE));
    let report = stack.run().await;
    evidence.debug("delegated, revoked: run report", &report);
    let refused = GraphClient::new(stack.graph_config())
        .unwrap()
        .check_credential(&fetched)
        .await
        .unwrap_err();
    evidence.shown("delegated, revoked: token error", &refused);
    assert!(refused.to_string().contains("AADSTS50173"), "{refused}");
    stack.state.remove_mailbox(&alice.key()).await.unwrap();

    // 2. A wrong secret, an expired one, an unknown app: the errors say why, never the value.
    let graph = GraphClient::new(stack.graph_config()).unwrap();
    let wrong = AppCredential::new(
        DEFAULT_TENANT,
        DEFAULT_CLIENT_ID,
        ClientAuth::from(wrong_secret.clone()),
    );
    let refused = graph.check_credential(&wrong).await.unwrap_err();
    evidence.shown("wrong secret: token error", &refused);
    stack
        .store_secret(&stack.credential, &secret_json(&wrong_secret))
        .await;
    let report = stack.run().await;
    evidence.debug("wrong secret: run report", &report);
    assert!(
        report
            .mailboxes
            .iter()
            .any(|m| m.error.is_some() || m.folders.iter().any(|f| f.error.is_some())),
        "{report:#?}"
    );

    let unknown_app = AppCredential::new(
        DEFAULT_TENANT,
        "00000000-1111-2222-3333-444444444444",
        ClientAuth::from(client_secret.clone()),
    );
    let refused = graph.check_credential(&unknown_app).await.unwrap_err();
    evidence.shown("unknown app: token error", &refused);
    let unknown_tenant = AppCredential::new(
        "11111111-2222-3333-4444-555555555555",
        DEFAULT_CLIENT_ID,
        ClientAuth::from(client_secret.clone()),
    );
    let refused = graph.check_credential(&unknown_tenant).await.unwrap_err();
    evidence.shown("unknown tenant: token error", &refused);

    stack
        .store_secret(&stack.credential, &secret_json(&client_secret))
        .await;
    let right = AppCredential::new(
        DEFAULT_TENANT,
        DEFAULT_CLIENT_ID,
        ClientAuth::from(client_secret.clone()),
    );
    let expired_at = stack.sandbox.now() - time::Duration::hours(1);
    stack
        .sandbox
        .set_password_expiry(DEFAULT_CLIENT_ID, KEY_ID, expired_at);
    let refused = graph.check_credential(&right).await.unwrap_err();
    evidence.shown("expired secret: token error", &refused);
    let report = stack.run().await;
    evidence.debug("expired secret: run report", &report);
    let renewed = stack.sandbox.now() + time::Duration::days(5);
    stack
        .sandbox
        .set_password_expiry(DEFAULT_CLIENT_ID, KEY_ID, renewed);

    // 3. Graph answering 401, 403 and 5xx; the token endpoint failing.
    stack
        .sandbox
        .add_message(MAILBOX, FOLDER, NewMessage::new("After the faults"));
    stack.sandbox.inject(
        FaultRule::new(FaultKind::Status(401, None))
            .path_contains("/messages")
            .times(4),
    );
    let report = stack.run().await;
    evidence.debug("Graph 401: run report", &report);
    stack.sandbox.clear_faults();
    stack.sandbox.inject(
        FaultRule::new(FaultKind::Status(403, None))
            .path_contains("/mailFolders")
            .times(2),
    );
    let report = stack.run().await;
    evidence.debug("Graph 403: run report", &report);
    stack.sandbox.clear_faults();
    stack
        .sandbox
        .set_app_permissions(DEFAULT_CLIENT_ID, &["Application.ReadWrite.OwnedBy"]);
    let report = stack.run().await;
    evidence.debug("no Mail permission: run report", &report);
    stack.sandbox.set_app_permissions(
        DEFAULT_CLIENT_ID,
        &[
            "Mail.ReadWrite",
            "Mail.Send",
            "Application.ReadWrite.OwnedBy",
        ],
    );
    stack.sandbox.inject(
        FaultRule::new(FaultKind::Status(503, Some(0.01)))
            .path_contains("/oauth2/v2.0/token")
            .times(20),
    );
    let graph = GraphClient::new(stack.graph_config()).unwrap();
    let refused = graph.check_credential(&right).await.unwrap_err();
    evidence.shown("token endpoint 503: error", &refused);
    stack.sandbox.clear_faults();
    stack.sandbox.inject(
        FaultRule::new(FaultKind::TruncateBody)
            .path_contains("/oauth2/v2.0/token")
            .times(20),
    );
    let refused = graph.check_credential(&right).await.unwrap_err();
    evidence.shown("token response cut: error", &refused);
    stack.sandbox.clear_faults();
    let report = stack.run().await;
    assert!(report.imported() >= 1, "{report:#?}");
    evidence.debug("after the faults: run report", &report);

    // 4. The doctor.
    let graph = GraphClient::new(stack.graph_config()).unwrap();
    let config = MailboxConfig {
        address: MailboxAddress::parse(MAILBOX).unwrap(),
        folder: FOLDER.into(),
        action: AfterImport::Move {
            processed_folder: PROCESSED.into(),
        },
        credential: stack.credential.clone(),
        enabled: true,
        discovered_by: None,
    };
    let options = mailroom::doctor::DoctorOptions::new(stack.clock.now());
    for (label, credential) in [("right secret", &right), ("wrong secret", &wrong)] {
        for check in mailroom::doctor::check_mailbox(&graph, credential, &config, &options).await {
            evidence.shown(&format!("doctor, {label}: check"), &check);
        }
    }

    // 5. The expiry check, alerting through SNS and mail; the rotation probe.
    let (topic, queue) = stack.moto.fresh_topic().await;
    let credentials = Arc::new(Credentials::new(
        Arc::new(SecretsManagerSource::new(stack.secrets.clone())),
        Credentials::DEFAULT_TTL,
    ));
    let mail = GraphMailAlerter::new(
        graph.clone(),
        credentials.clone(),
        MailboxAddress::parse(SENDER).unwrap(),
        vec![MailboxAddress::parse(MAILBOX).unwrap()],
        Some(stack.credential.clone()),
    );
    let alerter: Arc<dyn Alerter> = Arc::new(FanOutAlerter::new(vec![
        Arc::new(SnsAlerter::new(stack.moto.clients().sns, &topic)),
        Arc::new(mail),
    ]));
    let checker = ExpiryChecker {
        mailboxes: stack.state.clone(),
        alerts: stack.state.clone(),
        credentials: credentials.clone(),
        graph: graph.clone(),
        alerter: Some(alerter),
        clock: stack.clock.clone(),
        thresholds: Thresholds::default(),
        probe_rotation: true,
    };
    let expiry = checker.run().await.unwrap();
    evidence.debug("expiry report", &expiry);
    evidence.text(
        "expiry report (JSON)",
        serde_json::to_string(&expiry).unwrap(),
    );
    let alerts = stack.moto.drain_json(&queue).await;
    assert!(!alerts.is_empty(), "no alert published: {expiry:#?}");
    for alert in &alerts {
        evidence.text("SNS alert (as delivered)", alert.to_string());
    }
    let mails = stack.sandbox.sent_mail();
    assert!(!mails.is_empty(), "no alert mail: {expiry:#?}");
    evidence.debug("alert mail", &mails);

    // 6. A rotation: a new secret added, stored as AWSPENDING, tested, promoted; the old one
    // removed from the app.
    let rotator = stack.rotator(Arc::new(SecretsManagerVersions::new(stack.secrets.clone())));
    let token = uuid::Uuid::new_v4().to_string();
    for step in RotationStep::ALL {
        let step_name = step.name();
        let event = stack.rotation_event(&token, step);
        let report = rotator
            .run(&event)
            .await
            .unwrap_or_else(|e| panic!("{step_name}: {e}"));
        evidence.debug(&format!("rotation {step_name}: report"), &report);
        evidence.text(
            format!("rotation {step_name}: report (JSON)"),
            serde_json::to_string(&report).unwrap(),
        );
    }
    let failed = stack.rotation_event("no-such-version", RotationStep::TestSecret);
    let error = rotator.run(&failed).await.unwrap_err();
    evidence.shown("rotation: failed step", &error);
    let rotated = SecretsManagerSource::new(stack.secrets.clone())
        .fetch(&stack.credential)
        .await
        .unwrap();
    let new_secret = rotated.client_secret().unwrap().expose_secret().to_owned();
    assert_ne!(new_secret, client_secret, "the rotation changed nothing");
    evidence.secret("rotated client secret", &new_secret);
    assert!(
        stack
            .sandbox
            .application_passwords(DEFAULT_CLIENT_ID)
            .iter()
            .all(|p| p.key_id != KEY_ID),
        "the old secret is still on the app"
    );
    let report = stack.run().await;
    evidence.debug("after the rotation: run report", &report);

    // 7. Push: a subscription with its clientState, notifications with the right one (from the
    // sandbox) and a wrong one.
    let sandbox = stack.sandbox.clone();
    let rig = PushRig::start(stack).await;
    let subscribed = rig.maintain().await;
    assert!(subscribed.created >= 1, "{subscribed:?}");
    evidence.debug("subscription report", &subscribed);
    let added = sandbox.add_message(MAILBOX, FOLDER, NewMessage::new("Pushed"));
    rig.wait_for_records(
        MAILBOX,
        std::slice::from_ref(&added.immutable_id),
        Duration::from_secs(20),
    )
    .await;
    let records = rig.stack.state.list_subscriptions().await.unwrap();
    for record in &records {
        evidence.secret(
            format!("clientState of {}", record.id),
            record.client_state.expose(),
        );
        evidence.debug("subscription record", record);
    }
    for subscription in sandbox.subscriptions() {
        if let Some(state) = &subscription.client_state {
            evidence.secret(format!("clientState of {} (Graph)", subscription.id), state);
        }
    }
    let http = reqwest::Client::new();
    let right_state = records[0].client_state.expose().to_owned();
    let wrong_state = format!("wrong-{}", uuid::Uuid::new_v4().simple());
    for (state, label) in [(&wrong_state, "wrong"), (&right_state, "right")] {
        let body = serde_json::json!({"value": [{
            "subscriptionId": records[0].id,
            "clientState": state,
            "changeType": "created",
            "resource": format!("Users/{MAILBOX}/Messages/x"),
            "tenantId": DEFAULT_TENANT,
        }]})
        .to_string();
        let collection: NotificationCollection = serde_json::from_str(&body).unwrap();
        evidence.debug(&format!("notification, {label} clientState"), &collection);
        for path in ["/notifications", "/lifecycle"] {
            let answer = http
                .post(format!("http://{}{path}", rig.webhook_addr))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = answer.status();
            let text = answer.text().await.unwrap();
            evidence.text(
                format!("webhook answer, {label} clientState, {path}"),
                format!("{status} {text}"),
            );
        }
        let webhook = Webhook::new(rig.stack.state.clone(), Arc::new(rig.queue()));
        let answer = webhook
            .handle(WebhookRequest {
                method: "POST",
                path: "/notifications",
                query: None,
                content_type: Some("application/json"),
                body: body.as_bytes(),
            })
            .await;
        evidence.debug(&format!("webhook response, {label} clientState"), &answer);
    }

    // 8. Debug of every credential, configuration and settings type.
    let certificate = CertificateCredential::from_pem(TEST_CERT_PEM, TEST_KEY_PEM).unwrap();
    let certificate_credential =
        AppCredential::from_json("certificate", &certificate_json).unwrap();
    evidence.debug("AppCredential (secret)", &right);
    evidence.debug("AppCredential (certificate)", &certificate_credential);
    evidence.debug("AppCredential (rotated)", &rotated);
    evidence.debug("ClientAuth (secret)", &right.secret);
    evidence.debug("ClientAuth (certificate)", &certificate_credential.secret);
    evidence.debug("CertificateCredential", &certificate);
    evidence.debug(
        "ClientState",
        &ClientState::from_stored(right_state.clone()),
    );
    evidence.debug("Redactor", &Redactor::for_credential(&right));
    for (label, json) in [
        ("malformed JSON", format!("{{\"client_secret\": \"{client_secret}\"")),
        (
            "missing client id",
            format!(r#"{{"tenant_id":"t","client_secret":"{client_secret}"}}"#),
        ),
        (
            "secret and certificate",
            serde_json::json!({"tenant_id": "t", "client_id": "c", "client_secret": client_secret,
                "certificate_pem": TEST_CERT_PEM, "private_key_pem": TEST_KEY_PEM})
            .to_string(),
        ),
        (
            "mismatched key",
            serde_json::json!({"tenant_id": "t", "client_id": "c",
                "certificate_pem": TEST_CERT_PEM, "private_key_pem": TEST_KEY_PEM.replace("PRIVATE KEY", "RSA PRIVATE KEY")})
            .to_string(),
        ),
    ] {
        let error = AppCredential::from_json("contoso", &json).unwrap_err();
        evidence.shown(&format!("credential parse error, {label}"), &error);
    }
    let local = LocalCredential {
        tenant_id: DEFAULT_TENANT.into(),
        client_id: DEFAULT_CLIENT_ID.into(),
        secret: SecretRef::Env("MAILROOM_CONTOSO_SECRET".into()),
        key_id: Some(KEY_ID.into()),
        expires_at: None,
        delegated_scopes: None,
    };
    let secret_for_env = new_secret.clone();
    let source = FileSecretSource::with_env(
        [("contoso".to_owned(), local.clone())].into(),
        move |name| (name == "MAILROOM_CONTOSO_SECRET").then(|| secret_for_env.clone()),
    );
    evidence.debug("LocalCredential", &local);
    evidence.debug("FileSecretSource", &source);
    evidence.debug("local credential", &source.fetch("contoso").await.unwrap());
    evidence.shown(
        "local credential, unknown name",
        &source.fetch("fabrikam").await.unwrap_err(),
    );
    evidence.debug(
        "SecretsManagerVersions",
        &SecretsManagerVersions::new(rig.stack.secrets.clone()),
    );
    let env: BTreeMap<&str, String> = [
        ("MAILROOM_TABLE", rig.stack.table.clone()),
        ("MAILROOM_BUCKET", rig.stack.bucket.clone()),
        ("MAILROOM_QUEUE_URL", rig.queue_url.clone()),
        ("MAILROOM_WEBHOOK_URL", rig.urls.notification_url.clone()),
        ("MAILROOM_ALERT_TOPIC_ARN", topic.clone()),
        ("MAILROOM_ALERT_MAIL_FROM", SENDER.into()),
        ("MAILROOM_ALERT_MAIL_TO", MAILBOX.into()),
        ("MAILROOM_GRAPH_URL", rig.stack.sandbox.url()),
    ]
    .into();
    let lookup = |name: &str| env.get(name).cloned();
    evidence.debug(
        "ImportSettings",
        &mailroom::config::ImportSettings::from_lookup(lookup),
    );
    evidence.debug(
        "WebhookSettings",
        &mailroom::config::WebhookSettings::from_lookup(lookup),
    );
    evidence.debug(
        "ExpirySettings",
        &mailroom::config::ExpirySettings::from_lookup(lookup),
    );
    evidence.debug(
        "OutboxSettings",
        &mailroom::config::OutboxSettings::from_lookup(lookup),
    );
    evidence.debug(
        "AwsSettings",
        &mailroom::config::AwsSettings::from_lookup(lookup),
    );

    // Every token the sandbox issued, every signature the events carried.
    for (n, token) in sandbox.issued_tokens().into_iter().enumerate() {
        evidence.secret(format!("access token {n}"), token);
    }
    let refresh_tokens = sandbox.issued_refresh_tokens();
    assert!(
        refresh_tokens.len() >= 2,
        "{} refresh tokens",
        refresh_tokens.len()
    );
    for (n, token) in refresh_tokens.into_iter().enumerate() {
        evidence.secret(format!("refresh token {n}"), token);
    }
    for (n, signature) in sink.signatures.lock().unwrap().iter().enumerate() {
        evidence.secret(
            format!("event signature {n}"),
            signature.trim_start_matches("v1="),
        );
    }
    drop(rig);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The verdict.
    let kept = log.kept.text();
    let dropped = log.dropped.text();
    let gathered: String = evidence
        .texts
        .iter()
        .map(|(label, text)| format!("[{label}] {text}\n"))
        .collect();
    let held_back = leaks(&evidence.secrets, &dropped);
    eprintln!(
        "captured: {} log lines ({} bytes) let through by Mailroom's log filter, {} lines ({} bytes) \
         dropped by it ({} of them holding a secret), {} texts ({} bytes); {} secrets searched, \
         the client secret in {} forms",
        kept.lines().count(),
        kept.len(),
        dropped.lines().count(),
        dropped.len(),
        held_back.len(),
        evidence.texts.len(),
        gathered.len(),
        evidence.secrets.len(),
        forms(&client_secret).len(),
    );
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for label in evidence.secrets.keys() {
        let kind: Vec<&str> = label
            .split(' ')
            .take_while(|w| !w.starts_with('(') && *w != "of" && w.parse::<u32>().is_err())
            .collect();
        *kinds.entry(kind.join(" ")).or_default() += 1;
    }
    eprintln!("secrets searched: {kinds:?}");
    // For a look at what was captured: `MAILROOM_SECRETS_CAPTURE=/tmp/capture cargo test …`.
    if let Some(path) = std::env::var_os("MAILROOM_SECRETS_CAPTURE") {
        let path = std::path::PathBuf::from(path);
        std::fs::write(path.with_extension("log"), &kept).unwrap();
        std::fs::write(path.with_extension("dropped"), &dropped).unwrap();
        std::fs::write(path.with_extension("texts"), &gathered).unwrap();
    }

    // The capture works: it holds what is not secret, from Mailroom, the AWS SDK (at TRACE),
    // hyper and reqwest (through `log`), and the filter dropped the SDK's response bodies.
    for marker in [
        DEFAULT_CLIENT_ID,
        MAILBOX,
        "webhook batch accepted",
        "notification with a wrong clientState dropped",
        "TRACE",
        "aws_smithy_runtime::client::http",
        "hyper_util",
        "reqwest",
    ] {
        assert!(kept.contains(marker), "the log capture lacks {marker:?}");
    }
    assert!(
        dropped.contains("read HTTP response body"),
        "the SDK's TRACE output was not captured"
    );
    for marker in [
        "[REDACTED]",
        "<redacted>",
        DEFAULT_CLIENT_ID,
        "AADSTS7000215",
    ] {
        assert!(gathered.contains(marker), "the texts lack {marker:?}");
    }
    // And the search finds a secret in each form it looks for.
    for (form, encoded) in forms(&client_secret) {
        let planted = format!("x {form}: \"a{encoded}b\" y");
        assert_eq!(
            leaks(&evidence.secrets, &planted).len(),
            1,
            "the search misses the {form} form"
        );
    }

    let mut found = leaks(&evidence.secrets, &kept);
    found.extend(leaks(&evidence.secrets, &gathered));
    assert!(
        found.is_empty(),
        "{} secret(s) found:\n{}",
        found.len(),
        found.join("\n")
    );
}

/// `Debug` of every type that holds a credential or a `clientState` shows a redaction where the
/// value would be, and never the value (in any form [`forms`] lists).
#[test]
fn debug_of_every_credential_type_shows_a_redaction_not_the_value() {
    let secret = distinctive_secret("Dbg");
    let mut secrets: BTreeMap<String, String> =
        [("client secret".to_owned(), secret.clone())].into();
    for (n, line) in TEST_KEY_PEM
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 60)
        .enumerate()
    {
        secrets.insert(format!("private key (PEM line {n})"), line.to_owned());
    }
    let with_secret = AppCredential::new(
        DEFAULT_TENANT,
        DEFAULT_CLIENT_ID,
        ClientAuth::from(secret.clone()),
    );
    let certificate = CertificateCredential::from_pem(TEST_CERT_PEM, TEST_KEY_PEM).unwrap();
    let with_certificate = AppCredential::new(
        DEFAULT_TENANT,
        DEFAULT_CLIENT_ID,
        ClientAuth::from(certificate.clone()),
    );
    let client_state = ClientState::from_stored(secret.clone());
    let record = mailroom::domain::SubscriptionRecord {
        id: "5e1b7a4c-3f0d-4c8e-9a51-2b7d6c0e9f13".into(),
        mailbox: MailboxAddress::parse(MAILBOX).unwrap(),
        folder: FOLDER.into(),
        credential: "contoso".into(),
        client_state: client_state.clone(),
        expires_at: time::OffsetDateTime::UNIX_EPOCH,
        notification_url: "https://example.com/notifications".into(),
        created_at: time::OffsetDateTime::UNIX_EPOCH,
    };
    let notifications: NotificationCollection = serde_json::from_value(serde_json::json!({
        "value": [{"subscriptionId": record.id, "clientState": secret, "changeType": "created"}]
    }))
    .unwrap();
    let publisher = HttpEventPublisher::new(
        "http://127.0.0.1:9/events".parse().unwrap(),
        SecretString::from(secret.clone()),
    )
    .unwrap();
    fn debug<T: std::fmt::Debug>(value: &T) -> [String; 2] {
        [format!("{value:?}"), format!("{value:#?}")]
    }
    let shown: Vec<(&str, [String; 2])> = vec![
        ("AppCredential (client secret)", debug(&with_secret)),
        ("AppCredential (certificate)", debug(&with_certificate)),
        ("ClientAuth::Secret", debug(&with_secret.secret)),
        ("ClientAuth::Certificate", debug(&with_certificate.secret)),
        ("CertificateCredential", debug(&certificate)),
        ("ClientState", debug(&client_state)),
        ("SubscriptionRecord", debug(&record)),
        ("NotificationCollection", debug(&notifications)),
        ("HttpEventPublisher", debug(&publisher)),
        ("SecretString", debug(&SecretString::from(secret.clone()))),
    ];
    for (name, texts) in &shown {
        for text in texts {
            assert!(
                text.to_lowercase().contains("redacted"),
                "{name}'s Debug shows no redaction: {text}"
            );
            let found = leaks(&secrets, text);
            assert!(found.is_empty(), "{name}: {found:#?}");
        }
    }
    // The redactor holds the secret to find it, and shows nothing of it.
    let redactor = format!("{:?}", Redactor::for_credential(&with_secret));
    assert_eq!(redactor, "Redactor { .. }");
}
