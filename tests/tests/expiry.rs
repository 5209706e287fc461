//! The credential expiry check end to end: the real Graph client against the sandbox over HTTP
//! (applications API, certificate assertions, sendMail), the real AWS SDK against moto (alert
//! claims in DynamoDB, secrets in Secrets Manager, alerts through SNS read back from an SQS queue
//! subscribed to the topic).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use graph_sandbox::fixtures::{TEST_CERT_PEM, TEST_KEY_PEM};
use graph_sandbox::{
    AppSecret, DEFAULT_CLIENT_ID, DEFAULT_SECRET, DEFAULT_SECRET_ID, DEFAULT_TENANT, Mailbox, World,
};
use mailroom::adapters::alerts::GraphMailAlerter;
use mailroom::adapters::aws::{SecretsManagerSource, SnsAlerter};
use mailroom::adapters::memory::MemoryAlerter;
use mailroom::clock::Clock;
use mailroom::credentials::Credentials;
use mailroom::domain::{AfterImport, MailboxAddress};
use mailroom::expiry::{
    AlertLevel, CredentialReport, ExpiryChecker, ExpirySource, Thresholds, days_left,
};
use mailroom::graph::GraphClient;
use mailroom::ports::{AlertClaims, Alerter, MailboxConfigs};
use mailroom_tests::stack::Stack;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const MAILBOX: &str = "reports@contoso.com";
const SENDER: &str = "alerts@contoso.com";
const FOLDER: &str = "Inbox/Backup Reports";
const READ_APPLICATIONS: &[&str] = &["Mail.ReadWrite", "Application.Read.All"];

fn world() -> World {
    World::default_test().mailbox(
        DEFAULT_TENANT,
        Mailbox::new(MAILBOX).folder(FOLDER).messages(FOLDER, 1),
    )
}

async fn stack() -> Stack {
    let stack = Stack::start(world().mailbox(DEFAULT_TENANT, Mailbox::new(SENDER))).await;
    stack.configure(MAILBOX, FOLDER, AfterImport::None).await;
    stack
}

/// The secret JSON for the default app's secret, with optional key id and expiry.
fn secret_json(key_id: Option<&str>, expires_at: Option<OffsetDateTime>) -> String {
    let mut json = serde_json::json!({
        "tenant_id": DEFAULT_TENANT,
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_SECRET,
    });
    if let Some(key_id) = key_id {
        json["key_id"] = key_id.into();
    }
    if let Some(at) = expires_at {
        json["expires_at"] = at.format(&Rfc3339).unwrap().into();
    }
    json.to_string()
}

fn checker(stack: &Stack, alerter: Option<Arc<dyn Alerter>>) -> ExpiryChecker {
    let secrets = SecretsManagerSource::new(stack.secrets.clone());
    ExpiryChecker {
        mailboxes: stack.state.clone(),
        alerts: stack.state.clone(),
        credentials: Arc::new(Credentials::new(
            Arc::new(secrets),
            Credentials::DEFAULT_TTL,
        )),
        graph: GraphClient::new(stack.graph_config()).unwrap(),
        alerter,
        clock: stack.clock.clone(),
        thresholds: Thresholds::default(),
        probe_rotation: false,
    }
}

/// The test clock's now plus `days`, in whole seconds (Graph's dates have no fractions).
fn in_days(stack: &Stack, days: i64) -> OffsetDateTime {
    let at = stack.clock.now() + time::Duration::days(days);
    at.replace_nanosecond(0).unwrap()
}

async fn only(checker: &ExpiryChecker) -> CredentialReport {
    let mut report = checker.run().await.unwrap();
    assert_eq!(report.credentials.len(), 1, "{report:#?}");
    report.credentials.remove(0)
}

fn assert_no_secret(text: &str) {
    assert!(
        !text.contains(DEFAULT_SECRET),
        "the client secret appears in: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_alert_exactly_once_each_through_sns_across_simulated_days() {
    let stack = stack().await;
    stack
        .sandbox
        .set_app_permissions(DEFAULT_CLIENT_ID, READ_APPLICATIONS);
    let expires_at = in_days(&stack, 40);
    assert!(
        stack
            .sandbox
            .set_password_expiry(DEFAULT_CLIENT_ID, DEFAULT_SECRET_ID, expires_at)
    );
    // The stored expiry is wrong on purpose: Graph's is the one used.
    stack
        .store_secret(
            &stack.credential,
            &secret_json(Some(DEFAULT_SECRET_ID), Some(in_days(&stack, 90))),
        )
        .await;
    let (topic, queue) = stack.moto.fresh_topic().await;
    let sns = SnsAlerter::new(stack.moto.clients().sns, &topic);
    let checker = checker(&stack, Some(Arc::new(sns)));

    let mut subjects = Vec::new();
    let mut alerted = Vec::new();
    for day in 0..=42 {
        for run in 0..2 {
            let report = only(&checker).await;
            assert_eq!(report.source, ExpirySource::Graph, "{report:#?}");
            assert_eq!(report.expires_at, Some(expires_at));
            assert_eq!(report.days_left, Some(40 - day), "{report:#?}");
            assert!(
                report
                    .findings
                    .iter()
                    .any(|f| f.contains("differs from the app registration's")),
                "{report:#?}"
            );
            let messages = stack.moto.drain_json(&queue).await;
            if run == 1 {
                assert!(
                    messages.is_empty() && report.alerted.is_empty(),
                    "a second run on day {day} alerted again: {messages:?}"
                );
            }
            alerted.extend(report.alerted);
            for message in messages {
                assert_no_secret(&message.to_string());
                subjects.push(message["Subject"].as_str().unwrap().to_owned());
                let text = message["Message"].as_str().unwrap();
                assert!(text.contains("What to do"), "{text}");
                assert!(text.contains(DEFAULT_CLIENT_ID), "{text}");
            }
        }
        stack.clock.advance(time::Duration::DAY);
    }
    assert_eq!(alerted, ["30", "14", "7", "3", "1", "expired"]);
    let date = &expires_at.format(&Rfc3339).unwrap()[..10];
    // The subject keeps the days and the date; the test's long credential name is shortened.
    let tails = [
        format!(" expires in 30 days ({date})"),
        format!(" expires in 14 days ({date})"),
        format!(" expires in 7 days ({date})"),
        format!(" expires in 3 days ({date})"),
        format!(" expires in 1 day ({date})"),
        format!(" has expired ({date})"),
    ];
    assert_eq!(subjects.len(), tails.len(), "{subjects:#?}");
    for (subject, tail) in subjects.iter().zip(&tails) {
        assert!(
            subject.starts_with("Mailroom: client secret 'mailroom/test/")
                && subject.ends_with(tail),
            "{subject}"
        );
        assert!(subject.len() <= 100);
    }
    // The claims are in DynamoDB, one per threshold and one for "expired".
    let claims = stack.state.list_alerts(&stack.credential).await.unwrap();
    assert_eq!(claims.len(), 6, "{claims:?}");
    let at = expires_at.format(&Rfc3339).unwrap();
    assert!(claims.contains(&format!("{at}#expired")), "{claims:?}");
    assert!(claims.contains(&format!("{at}#30")), "{claims:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_on_the_application_read_falls_back_to_the_stored_expiry() {
    let stack = stack().await;
    // The default app holds Mail.ReadWrite only: no Application.* permission.
    let stored = in_days(&stack, 10);
    stack
        .store_secret(&stack.credential, &secret_json(None, Some(stored)))
        .await;
    let alerter = Arc::new(MemoryAlerter::default());
    let report = only(&checker(&stack, Some(alerter.clone()))).await;
    assert_eq!(report.source, ExpirySource::Stored, "{report:#?}");
    assert_eq!(report.expires_at, Some(stored));
    assert_eq!(report.days_left, Some(10));
    let finding = report.findings.join("\n");
    assert!(finding.contains("403"), "{finding}");
    assert!(
        finding.contains("grant Application.Read.All or Application.ReadWrite.OwnedBy"),
        "{finding}"
    );
    assert_eq!(report.alerted, ["30", "14"]);
    let sent = alerter.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].level, AlertLevel::Threshold(14));
    assert!(sent[0].text().contains("Application.Read.All"));
    assert_no_secret(&sent[0].text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stored_expiry_and_no_permission_is_expiry_unknown_alerted_once() {
    let stack = stack().await;
    let alerter = Arc::new(MemoryAlerter::default());
    let checker = checker(&stack, Some(alerter.clone()));
    for _ in 0..3 {
        let report = only(&checker).await;
        assert_eq!(report.source, ExpirySource::Unknown, "{report:#?}");
        assert_eq!(report.days_left, None);
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.starts_with("expiry unknown")),
            "{report:#?}"
        );
        assert!(report.needs_attention(&checker.thresholds));
        stack.clock.advance(time::Duration::DAY);
    }
    let sent = alerter.sent();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0].level, AlertLevel::Unknown);
    assert_eq!(
        stack.state.list_alerts(&stack.credential).await.unwrap(),
        ["unknown"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_entra_refuses_as_expired_is_reported_expired_and_alerted_once() {
    let stack = stack().await;
    // Expired yesterday by Entra's clock; nothing recorded with the credential says when.
    let yesterday = (stack.sandbox.now() - time::Duration::DAY)
        .replace_nanosecond(0)
        .unwrap();
    assert!(
        stack
            .sandbox
            .set_password_expiry(DEFAULT_CLIENT_ID, DEFAULT_SECRET_ID, yesterday)
    );
    let alerter = Arc::new(MemoryAlerter::default());
    let checker = checker(&stack, Some(alerter.clone()));
    for _ in 0..2 {
        let report = only(&checker).await;
        assert_eq!(report.source, ExpirySource::TokenEndpoint, "{report:#?}");
        assert_eq!(report.days_left, Some(0), "{report:#?}");
        assert!(report.is_expired());
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.contains("has expired (AADSTS7000222)")
                    && f.contains("create a new client secret")),
            "{report:#?}"
        );
    }
    let sent = alerter.sent();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0].level, AlertLevel::Expired);
    assert!(
        sent[0].subject().ends_with("has expired"),
        "{}",
        sent[0].subject()
    );
    assert_no_secret(&sent[0].text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_secret_is_a_finding_naming_it_and_the_others_are_still_checked() {
    let stack = stack().await;
    stack
        .sandbox
        .set_app_permissions(DEFAULT_CLIENT_ID, READ_APPLICATIONS);
    let broken = format!("{}-broken", stack.credential);
    let leaked = "Zz9~this-value-must-never-show";
    stack
        .store_secret(&broken, &format!("{{\"client_secret\": \"{leaked}\""))
        .await;
    let config = mailroom::domain::MailboxConfig {
        address: MailboxAddress::parse("invoices@contoso.com").unwrap(),
        folder: "Inbox".into(),
        action: AfterImport::None,
        credential: broken.clone(),
        enabled: true,
        discovered_by: None,
    };
    stack.state.put_mailbox(&config).await.unwrap();
    let alerter = Arc::new(MemoryAlerter::default());
    let report = checker(&stack, Some(alerter.clone())).run().await.unwrap();
    assert_eq!(report.credentials.len(), 2, "{report:#?}");
    let bad = report
        .credentials
        .iter()
        .find(|c| c.name == broken)
        .unwrap();
    assert_eq!(bad.source, ExpirySource::Unknown);
    let finding = bad.findings.join("\n");
    assert!(
        finding.contains(&format!("credential '{broken}' is malformed")),
        "{finding}"
    );
    assert!(!finding.contains(leaked), "{finding}");
    assert_eq!(bad.alerted, ["unknown"]);
    let good = report
        .credentials
        .iter()
        .find(|c| c.name == stack.credential)
        .unwrap();
    assert_eq!(good.source, ExpirySource::Graph, "{good:#?}");
    assert!(good.days_left.unwrap() > 300);
    let sent = alerter.sent();
    assert_eq!(sent.len(), 1);
    assert!(!sent[0].text().contains(leaked));
    assert!(sent[0].text().contains(&broken));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_gets_a_token_and_its_expiry_by_thumbprint() {
    let stack = stack().await;
    stack
        .sandbox
        .set_app_permissions(DEFAULT_CLIENT_ID, READ_APPLICATIONS);
    let key_id = stack
        .sandbox
        .add_certificate(DEFAULT_CLIENT_ID, TEST_CERT_PEM)
        .unwrap();
    // Graph's endDateTime differs from the certificate's notAfter: it must be the one found.
    let ends = in_days(&stack, 20);
    assert!(
        stack
            .sandbox
            .set_certificate_expiry(DEFAULT_CLIENT_ID, &key_id, ends)
    );
    let json = serde_json::json!({
        "tenant_id": DEFAULT_TENANT,
        "client_id": DEFAULT_CLIENT_ID,
        "certificate_pem": TEST_CERT_PEM,
        "private_key_pem": TEST_KEY_PEM,
    })
    .to_string();
    stack.store_secret(&stack.credential, &json).await;
    let tokens_before = stack.sandbox.token_requests();
    let report = only(&checker(&stack, None)).await;
    assert_eq!(report.source, ExpirySource::Graph, "{report:#?}");
    assert_eq!(report.expires_at, Some(ends));
    assert_eq!(report.days_left, Some(20));
    assert_eq!(
        report.kind,
        Some(mailroom::expiry::CredentialKind::Certificate)
    );
    assert!(report.alerted.is_empty(), "no alerter, no claims");
    assert!(stack.sandbox.token_requests() > tokens_before);
    let shown = serde_json::to_string(&report).unwrap();
    let key_line = TEST_KEY_PEM.lines().nth(5).unwrap();
    assert!(!shown.contains(key_line));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mail_alert_is_sent_through_graph() {
    let stack = stack().await;
    stack.sandbox.set_app_permissions(
        DEFAULT_CLIENT_ID,
        &["Mail.ReadWrite", "Mail.Send", "Application.Read.All"],
    );
    let expires_at = in_days(&stack, 5);
    stack
        .sandbox
        .set_password_expiry(DEFAULT_CLIENT_ID, DEFAULT_SECRET_ID, expires_at);
    stack
        .store_secret(
            &stack.credential,
            &secret_json(Some(DEFAULT_SECRET_ID), None),
        )
        .await;
    let checker = {
        let mut checker = checker(&stack, None);
        checker.alerter = Some(Arc::new(GraphMailAlerter::new(
            checker.graph.clone(),
            checker.credentials.clone(),
            MailboxAddress::parse(SENDER).unwrap(),
            vec![MailboxAddress::parse("it@contoso.com").unwrap()],
            None,
        )));
        checker
    };
    let report = only(&checker).await;
    assert_eq!(report.alerted, ["30", "14", "7"], "{report:#?}");
    only(&checker).await;
    let sent = stack.sandbox.sent_mail();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let mail = &sent[0];
    assert_eq!(mail.from, SENDER);
    assert_eq!(mail.to, ["it@contoso.com"]);
    assert!(
        mail.subject.ends_with(&format!(
            " expires in 5 days ({})",
            &expires_at.format(&Rfc3339).unwrap()[..10]
        )),
        "{}",
        mail.subject
    );
    assert!(mail.body.contains(&stack.credential), "{}", mail.body);
    assert!(mail.body.contains("Days left: 5"), "{}", mail.body);
    assert!(mail.body.contains("What to do: rotate it"), "{}", mail.body);
    assert!(!mail.saved_to_sent_items);
    assert_no_secret(&mail.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_sharing_a_hint_cannot_be_matched_without_a_key_id() {
    let stack = stack().await;
    stack
        .sandbox
        .set_app_permissions(DEFAULT_CLIENT_ID, READ_APPLICATIONS);
    // A second secret beginning like the default one.
    let twin = format!("{}-twin-value-0123456789", &DEFAULT_SECRET[..3]);
    assert!(
        stack
            .sandbox
            .add_secret(DEFAULT_CLIENT_ID, AppSecret::new(&twin))
    );
    let stored = in_days(&stack, 100);
    stack
        .store_secret(&stack.credential, &secret_json(None, Some(stored)))
        .await;
    let report = only(&checker(&stack, None)).await;
    assert_eq!(report.source, ExpirySource::Stored, "{report:#?}");
    let finding = report.findings.join("\n");
    assert!(finding.contains("cannot be matched"), "{finding}");
    assert!(
        finding.contains("store key_id with the secret"),
        "{finding}"
    );
    assert!(!finding.contains(&DEFAULT_SECRET[..3]), "{finding}");
    assert_eq!(report.days_left, Some(days_left(stored, stack.clock.now())));
}

// ---------------------------------------------------------------------------------------------
// Rotation by the Secrets Manager protocol: moto's Secrets Manager plus the sandbox's
// applications API (addPassword/removePassword, propagation delay).

mod rotation {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;
    use graph_sandbox::{FaultKind, FaultRule};
    use mailroom::adapters::aws::SecretsManagerVersions;
    use mailroom::credentials::AppCredential;
    use mailroom::ports::{SecretError, SecretSource};
    use mailroom::rotation::{
        ROTATION_PREFIX, RotationError, RotationOptions, RotationReport, RotationStep, Rotator,
        SecretVersions,
    };
    use secrecy::{ExposeSecret, SecretString};

    use super::*;

    const STEPS: [RotationStep; 4] = [
        RotationStep::CreateSecret,
        RotationStep::SetSecret,
        RotationStep::TestSecret,
        RotationStep::FinishSecret,
    ];

    /// Secrets Manager that fails one named operation once: a crash at that point.
    struct Flaky {
        inner: SecretsManagerVersions,
        fail: Mutex<Option<&'static str>>,
    }

    impl Flaky {
        fn trip(&self, operation: &'static str) -> Result<(), SecretError> {
            let mut fail = self.fail.lock().unwrap();
            if *fail == Some(operation) {
                *fail = None;
                return Err(SecretError::Unavailable {
                    name: "injected".into(),
                    detail: format!("crash injected at {operation}"),
                });
            }
            Ok(())
        }
    }

    #[async_trait]
    impl SecretVersions for Flaky {
        async fn stages(
            &self,
            secret_id: &str,
        ) -> Result<BTreeMap<String, Vec<String>>, SecretError> {
            self.inner.stages(secret_id).await
        }
        async fn value(
            &self,
            secret_id: &str,
            version_id: Option<&str>,
            stage: Option<&str>,
        ) -> Result<Option<SecretString>, SecretError> {
            self.inner.value(secret_id, version_id, stage).await
        }
        async fn put_pending(
            &self,
            secret_id: &str,
            token: &str,
            value: &SecretString,
        ) -> Result<(), SecretError> {
            self.trip("put_pending")?;
            self.inner.put_pending(secret_id, token, value).await
        }
        async fn move_stage(
            &self,
            secret_id: &str,
            stage: &str,
            to: Option<&str>,
            from: Option<&str>,
        ) -> Result<(), SecretError> {
            if stage == "AWSCURRENT" {
                self.trip("promote")?;
            }
            self.inner.move_stage(secret_id, stage, to, from).await
        }
    }

    struct Rotation {
        stack: Stack,
        flaky: Arc<Flaky>,
        rotator: Rotator,
    }

    impl Rotation {
        async fn start() -> Rotation {
            let stack = stack().await;
            stack.sandbox.set_app_permissions(
                DEFAULT_CLIENT_ID,
                &["Mail.ReadWrite", "Application.ReadWrite.OwnedBy"],
            );
            // New passwords work at the token endpoint only after a while.
            stack
                .sandbox
                .set_password_propagation_delay(Duration::from_millis(300));
            stack
                .store_secret(
                    &stack.credential,
                    &secret_json(Some(DEFAULT_SECRET_ID), None),
                )
                .await;
            let flaky = Arc::new(Flaky {
                inner: SecretsManagerVersions::new(stack.secrets.clone()),
                fail: Mutex::new(None),
            });
            let rotator = stack.rotator(flaky.clone());
            Rotation {
                stack,
                flaky,
                rotator,
            }
        }

        fn crash_at(&self, operation: &'static str) {
            *self.flaky.fail.lock().unwrap() = Some(operation);
        }

        async fn step(
            &self,
            token: &str,
            step: RotationStep,
        ) -> Result<RotationReport, RotationError> {
            self.rotator
                .run(&self.stack.rotation_event(token, step))
                .await
        }

        async fn steps(&self, token: &str, steps: &[RotationStep]) {
            for step in steps {
                self.step(token, *step)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", step.name()));
            }
        }

        /// AWSCURRENT, as the import function reads it.
        async fn current(&self) -> AppCredential {
            SecretsManagerSource::new(self.stack.secrets.clone())
                .fetch(&self.stack.credential)
                .await
                .unwrap()
        }

        /// The invariant: AWSCURRENT obtains a token (a fresh client, no cached token).
        async fn assert_current_works(&self, when: &str) -> AppCredential {
            let current = self.current().await;
            GraphClient::new(self.stack.graph_config())
                .unwrap()
                .check_credential(&current)
                .await
                .unwrap_or_else(|e| panic!("{when}: AWSCURRENT does not work: {e}"));
            current
        }

        /// The app's passwords, by key id.
        fn passwords(&self) -> Vec<String> {
            let mut keys: Vec<String> = self
                .stack
                .sandbox
                .application_passwords(DEFAULT_CLIENT_ID)
                .into_iter()
                .map(|p| p.key_id)
                .collect();
            keys.sort();
            keys
        }

        /// After a successful run: exactly the current password on the app, no orphan.
        async fn assert_only_current_password(&self, when: &str) {
            let current = self.assert_current_works(when).await;
            let key = current.key_id.clone().expect("rotation stores key_id");
            assert_eq!(self.passwords(), [key], "{when}: orphan passwords left");
        }
    }

    fn token() -> String {
        uuid::Uuid::new_v4().to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_rotation_replaces_the_secret_and_removes_the_old_password() {
        let r = Rotation::start().await;
        let token = token();
        let created = r.step(&token, RotationStep::CreateSecret).await.unwrap();
        let new_key = created.key_id.clone().unwrap();
        // createSecret again: nothing new.
        let again = r.step(&token, RotationStep::CreateSecret).await.unwrap();
        assert!(again.outcome.starts_with("nothing to do"), "{again:?}");
        assert_eq!(r.passwords().len(), 2);
        let added = r
            .stack
            .sandbox
            .application_passwords(DEFAULT_CLIENT_ID)
            .into_iter()
            .find(|p| p.key_id == new_key)
            .unwrap();
        assert!(
            added
                .display_name
                .as_deref()
                .unwrap()
                .starts_with(ROTATION_PREFIX)
        );
        r.steps(
            &token,
            &[
                RotationStep::SetSecret,
                RotationStep::TestSecret,
                RotationStep::FinishSecret,
            ],
        )
        .await;

        let current = r.current().await;
        assert_eq!(current.key_id.as_deref(), Some(new_key.as_str()));
        assert_ne!(
            current.client_secret().unwrap().expose_secret(),
            DEFAULT_SECRET
        );
        assert_eq!(current.expires_at, Some(added.end));
        r.assert_only_current_password("after a full rotation")
            .await;
        // The old secret is gone from the app.
        let old = AppCredential::from_json("old", &secret_json(None, None)).unwrap();
        let refused = GraphClient::new(r.stack.graph_config())
            .unwrap()
            .check_credential(&old)
            .await
            .unwrap_err();
        assert!(refused.is_credential_rejected(), "{refused}");
        // finishSecret again: nothing breaks.
        let again = r.step(&token, RotationStep::FinishSecret).await.unwrap();
        assert!(again.outcome.contains("already AWSCURRENT"), "{again:?}");

        // The expiry check sees the new secret, from Graph, by its key id.
        let report = only(&checker(&r.stack, None)).await;
        assert_eq!(report.source, ExpirySource::Graph, "{report:#?}");
        assert_eq!(report.days_left, Some(90));

        // A second rotation replaces the first one's password too.
        let second = super::rotation::token();
        r.steps(&second, &STEPS).await;
        r.assert_only_current_password("after a second rotation")
            .await;
        assert_ne!(r.current().await.key_id.as_deref(), Some(new_key.as_str()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_application_readwrite_ownedby_nothing_changes_and_the_error_says_why() {
        let r = Rotation::start().await;
        r.stack
            .sandbox
            .set_app_permissions(DEFAULT_CLIENT_ID, READ_APPLICATIONS);
        let token = token();
        let err = r
            .step(&token, RotationStep::CreateSecret)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("Application.ReadWrite.OwnedBy"), "{err}");
        assert!(err.contains("AWSCURRENT is unchanged"), "{err}");
        assert_no_secret(&err);
        assert_eq!(r.passwords(), [DEFAULT_SECRET_ID]);
        r.assert_current_works("after a refused addPassword").await;
        // The check says so, without changing anything.
        let mut probe = checker(&r.stack, None);
        probe.probe_rotation = true;
        let report = only(&probe).await;
        assert_eq!(report.rotation_permitted, Some(false), "{report:#?}");
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.contains("grant Application.ReadWrite.OwnedBy")),
            "{report:#?}"
        );
        assert_eq!(r.passwords(), [DEFAULT_SECRET_ID]);
        // Granted, the same rotation goes through.
        r.stack.sandbox.set_app_permissions(
            DEFAULT_CLIENT_ID,
            &["Mail.ReadWrite", "Application.ReadWrite.OwnedBy"],
        );
        assert_eq!(only(&probe).await.rotation_permitted, Some(true));
        r.steps(&token, &STEPS).await;
        r.assert_only_current_password("after the permission was granted")
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_between_add_password_and_storing_it_leaves_an_orphan_the_rerun_removes() {
        let r = Rotation::start().await;
        let token = token();
        r.crash_at("put_pending");
        let err = r
            .step(&token, RotationStep::CreateSecret)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("crash injected at put_pending"), "{err}");
        assert!(err.contains("removed by the next run"), "{err}");
        assert_eq!(r.passwords().len(), 2, "the orphan is on the app");
        r.assert_current_works("after the crash").await;
        r.steps(&token, &STEPS).await;
        r.assert_only_current_password("after the re-run").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_test_keeps_the_old_secret_and_the_next_rotation_cleans_up() {
        let r = Rotation::start().await;
        // The new password will not propagate within testSecret's patience.
        r.stack
            .sandbox
            .set_password_propagation_delay(Duration::from_secs(3600));
        let first = token();
        r.steps(
            &first,
            &[RotationStep::CreateSecret, RotationStep::SetSecret],
        )
        .await;
        let rotator = Rotator {
            options: RotationOptions {
                test_attempts: 3,
                ..r.rotator.options.clone()
            },
            versions: r.rotator.versions.clone(),
            graph: r.rotator.graph.clone(),
            clock: r.rotator.clock.clone(),
        };
        let event = r.stack.rotation_event(&first, RotationStep::TestSecret);
        let err = rotator.run(&event).await.unwrap_err().to_string();
        assert!(err.contains("obtains no token after 3 attempts"), "{err}");
        assert!(err.contains("AWSCURRENT is unchanged"), "{err}");
        r.assert_current_works("after the failed test").await;

        // Secrets Manager tries again later, with a new token; propagation is quick again.
        r.stack
            .sandbox
            .set_password_propagation_delay(Duration::from_millis(300));
        let second = token();
        r.steps(&second, &STEPS).await;
        r.assert_only_current_password("after the next rotation")
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_before_promotion_keeps_the_old_secret_and_the_rerun_finishes() {
        let r = Rotation::start().await;
        let token = token();
        r.steps(
            &token,
            &[
                RotationStep::CreateSecret,
                RotationStep::SetSecret,
                RotationStep::TestSecret,
            ],
        )
        .await;
        r.crash_at("promote");
        let err = r
            .step(&token, RotationStep::FinishSecret)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("moving AWSCURRENT"), "{err}");
        let current = r.assert_current_works("after the crash").await;
        assert_eq!(current.key_id.as_deref(), Some(DEFAULT_SECRET_ID));
        r.steps(&token, &[RotationStep::FinishSecret]).await;
        r.assert_only_current_password("after the re-run").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_after_promotion_leaves_the_new_secret_current_and_a_rerun_removes_the_old() {
        for rerun in ["finishSecret again", "the next rotation"] {
            let r = Rotation::start().await;
            let token = token();
            r.steps(
                &token,
                &[
                    RotationStep::CreateSecret,
                    RotationStep::SetSecret,
                    RotationStep::TestSecret,
                ],
            )
            .await;
            r.stack.sandbox.inject(
                FaultRule::new(FaultKind::Status(400, None)).path_contains("removePassword"),
            );
            let err = r
                .step(&token, RotationStep::FinishSecret)
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("removing the old password"), "{err}");
            assert!(err.contains("AWSCURRENT holds the new secret"), "{err}");
            let current = r.assert_current_works("after the failure").await;
            assert_ne!(current.key_id.as_deref(), Some(DEFAULT_SECRET_ID));
            assert_eq!(r.passwords().len(), 2, "the old password is still there");
            match rerun {
                "finishSecret again" => r.steps(&token, &[RotationStep::FinishSecret]).await,
                _ => r.steps(&super::rotation::token(), &STEPS).await,
            }
            r.assert_only_current_password(rerun).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_step_can_be_run_twice() {
        let r = Rotation::start().await;
        let token = token();
        for step in STEPS {
            r.steps(&token, &[step, step]).await;
            r.assert_current_works(step.name()).await;
            assert!(
                r.passwords().len() <= 2,
                "{}: {:?}",
                step.name(),
                r.passwords()
            );
        }
        r.assert_only_current_password("after running each step twice")
            .await;
    }
}
