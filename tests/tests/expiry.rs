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

// ---------------------------------------------------------------------------------------------
// Delegated credentials (docs/delegated.md, "The credential check"): a person's sign-in played
// through the real sign-in client against the sandbox's Entra, kept in the credential's Secrets
// Manager secret on moto; the check redeems it with the real Graph client and reads each
// configured mailbox with the person's token; alerts through SNS or memory, claims in DynamoDB.
// Mailroom's own log output (TRACE, through the production filter) is captured and searched for
// refresh tokens, as are the reports and alerts.

mod delegated {
    use std::io::Write;
    use std::sync::{Mutex, OnceLock};

    use graph_sandbox::{
        App, DEFAULT_APP_OBJECT_ID, DEFAULT_DELEGATED_PERMISSIONS, DEFAULT_DOMAIN, FaultKind,
        FaultRule, Tenant,
    };
    use mailroom::credentials::SignedIn;
    use mailroom::domain::MailboxConfig;
    use mailroom::expiry::{Access, CredentialKind};
    use mailroom::graph::GraphConfig;
    use mailroom::ports::SignInStore;
    use mailroom_tests::delegated::{sign_in, sign_in_confidential};
    use secrecy::ExposeSecret;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    use super::*;

    const ALICE: &str = "alice@contoso.com";
    /// Shared with Alice.
    const SHARED: &str = "shared@contoso.com";
    /// Not shared with Alice.
    const BOB: &str = "bob@contoso.com";
    const ALICE_FOLDER: &str = "Inbox/Reports";
    const SCOPES: [&str; 3] = ["Mail.ReadWrite", "Mail.ReadWrite.Shared", "offline_access"];
    /// The confidential app's web redirect URI.
    const WEB: &str = "https://mailroom.example/signed-in";

    fn mailboxes(world: World) -> World {
        world
            .mailbox(
                DEFAULT_TENANT,
                Mailbox::new(ALICE)
                    .folder(ALICE_FOLDER)
                    .messages(ALICE_FOLDER, 1),
            )
            .mailbox(
                DEFAULT_TENANT,
                Mailbox::new(SHARED).messages("Inbox", 1).shared_with(ALICE),
            )
            .mailbox(DEFAULT_TENANT, Mailbox::new(BOB).messages("Inbox", 1))
    }

    /// What Mailroom logs, at TRACE through the functions' own filter
    /// ([`mailroom::redact::may_log`]); the sandbox's own log is left out (it is not Mailroom).
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);

    impl Write for Log {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Log {
        type Writer = Log;
        fn make_writer(&'a self) -> Log {
            self.clone()
        }
    }

    impl Log {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// The test binary's one subscriber, installed on first use.
    fn log() -> &'static Log {
        static LOG: OnceLock<Log> = OnceLock::new();
        LOG.get_or_init(|| {
            let log = Log::default();
            let filter = tracing_subscriber::filter::filter_fn(|m| {
                mailroom::redact::may_log(m) && !m.target().starts_with("graph_sandbox")
            });
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(log.clone())
                .with_filter(tracing_subscriber::filter::LevelFilter::TRACE);
            let _ = tracing_subscriber::registry()
                .with(layer)
                .with(filter)
                .try_init();
            log
        })
    }

    struct Delegated {
        stack: Stack,
        /// The delegated credential's secret.
        name: String,
        signed_in: SignedIn,
    }

    impl Delegated {
        /// Alice signed in (for [`SCOPES`]) `days` ago and nothing refreshed the sign-in since;
        /// the credential asks for `scopes`, and `mailboxes` (address, folder) use it.
        async fn start(scopes: &[&str], days: i64, mailboxes: &[(&str, &str)]) -> Delegated {
            log();
            let stack = Stack::start(self::mailboxes(World::default_test())).await;
            let signed_in = sign_in(&stack.sandbox, ALICE, &SCOPES).await;
            let name = format!("{}-alice", stack.credential);
            let delegated = Delegated {
                stack,
                name,
                signed_in,
            };
            delegated.store(scopes, days).await;
            for (address, folder) in mailboxes {
                delegated.configure(address, folder).await;
            }
            delegated
        }

        /// Stores Alice's sign-in as if last refreshed `days` ago.
        async fn store(&self, scopes: &[&str], days: i64) {
            let mut signed_in = self.signed_in.clone();
            signed_in.signed_in_at = self.stack.clock.now() - time::Duration::days(days);
            signed_in.refreshed_at = signed_in.signed_in_at;
            self.stack
                .put_delegated(&self.name, scopes, &signed_in)
                .await;
        }

        async fn configure(&self, address: &str, folder: &str) {
            let config = MailboxConfig {
                address: MailboxAddress::parse(address).unwrap(),
                folder: folder.to_owned(),
                action: AfterImport::None,
                credential: self.name.clone(),
                enabled: true,
                discovered_by: None,
            };
            self.stack.state.put_mailbox(&config).await.unwrap();
        }

        fn checker(&self, alerter: Option<Arc<dyn Alerter>>) -> ExpiryChecker {
            self.checker_with(alerter, self.stack.graph_config())
        }

        /// A checker as the secret-expiry function builds it: the sign-ins kept in the
        /// credentials' own secrets.
        fn checker_with(
            &self,
            alerter: Option<Arc<dyn Alerter>>,
            graph: GraphConfig,
        ) -> ExpiryChecker {
            let secrets = SecretsManagerSource::new(self.stack.secrets.clone())
                .with_sign_ins((*self.stack.sign_ins()).clone());
            ExpiryChecker {
                mailboxes: self.stack.state.clone(),
                alerts: self.stack.state.clone(),
                credentials: Arc::new(Credentials::new(
                    Arc::new(secrets),
                    Credentials::DEFAULT_TTL,
                )),
                graph: GraphClient::new(graph).unwrap(),
                alerter,
                clock: self.stack.clock.clone(),
                thresholds: Thresholds::default(),
                probe_rotation: false,
            }
        }

        async fn stored(&self) -> SignedIn {
            self.stack.stored_sign_in(&self.name).await
        }

        /// No refresh token this test saw (the sign-in's and each stored since) in `text`, nor
        /// in Mailroom's log.
        async fn assert_no_token(&self, what: &str, text: &str) {
            assert!(
                log().text().contains("credential expiry checked"),
                "Mailroom's log was not captured"
            );
            let stored = self.stored().await;
            for token in [&self.signed_in.refresh_token, &stored.refresh_token] {
                let token = token.expose_secret();
                assert!(!text.contains(token), "a refresh token in {what}: {text}");
                assert!(
                    !log().text().contains(token),
                    "a refresh token in the log: {}",
                    log().text()
                );
            }
        }

        async fn assert_report_holds_no_token(&self, report: &CredentialReport) {
            self.assert_no_token("the report", &format!("{report:?}"))
                .await;
            self.assert_no_token("the report (JSON)", &serde_json::to_string(report).unwrap())
                .await;
        }
    }

    fn sign_in_of(report: &CredentialReport) -> &mailroom::expiry::SignInStatus {
        report
            .delegated
            .as_ref()
            .unwrap_or_else(|| panic!("no sign-in in {report:#?}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_healthy_sign_in_passes_and_reports_who_the_scopes_and_the_days() {
        let d = Delegated::start(&SCOPES, 3, &[(ALICE, ALICE_FOLDER), (SHARED, "Inbox")]).await;
        let alerter = Arc::new(MemoryAlerter::default());
        let checker = d.checker(Some(alerter.clone()));
        let redeemed = d.stack.sandbox.refresh_redemptions();
        let report = only(&checker).await;

        assert_eq!(
            report.kind,
            Some(CredentialKind::PublicClient),
            "{report:#?}"
        );
        assert_eq!(report.source, ExpirySource::NoSecret);
        assert_eq!(report.days_left, None);
        assert!(report.findings.is_empty(), "{report:#?}");
        assert!(report.alerted.is_empty() && alerter.sent().is_empty());
        assert!(!report.needs_attention(&checker.thresholds), "{report:#?}");
        let status = sign_in_of(&report);
        assert_eq!(status.user.as_deref(), Some(ALICE));
        assert!(
            ["Mail.ReadWrite", "Mail.ReadWrite.Shared"]
                .iter()
                .all(|s| status.scopes_granted.iter().any(|g| g == s)),
            "{status:#?}"
        );
        assert!(status.scopes_missing.is_empty());
        assert_eq!(status.days_since_refresh, Some(3));
        assert_eq!(status.inactivity_days_left, Some(87));
        assert!(status.refreshed && status.sign_in_required.is_none());
        let access: Vec<(&str, Access)> = status
            .mailboxes
            .iter()
            .map(|m| (m.mailbox.as_str(), m.access))
            .collect();
        assert_eq!(
            access,
            [(ALICE, Access::Readable), (SHARED, Access::Readable)]
        );

        // The check redeemed the refresh token and stored its successor: the window restarts.
        assert_eq!(d.stack.sandbox.refresh_redemptions(), redeemed + 1);
        let stored = d.stored().await;
        assert_ne!(
            stored.refresh_token.expose_secret(),
            d.signed_in.refresh_token.expose_secret()
        );
        assert!(stored.refreshed_at > d.stack.clock.now() - time::Duration::days(1));
        assert_eq!(status.lapses_at, Some(stored.lapses_at()));

        // The function's JSON report: the old fields, and the sign-in's.
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["name"], d.name.as_str());
        assert_eq!(json["source"], "no_secret");
        assert_eq!(json["kind"], "public_client");
        let sign_in = &json["delegated"];
        assert_eq!(sign_in["user"], ALICE, "{json:#}");
        assert_eq!(sign_in["days_since_refresh"], 3);
        assert_eq!(sign_in["inactivity_window_days"], 90);
        assert_eq!(sign_in["inactivity_days_left"], 87);
        assert_eq!(sign_in["refreshed"], true);
        assert_eq!(sign_in["mailboxes"][1]["mailbox"], SHARED);
        assert_eq!(sign_in["mailboxes"][1]["access"], "readable");
        d.assert_report_holds_no_token(&report).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revoked_sign_in_alerts_once_through_sns_and_says_how_to_sign_in_again() {
        let d = Delegated::start(&SCOPES, 1, &[(ALICE, ALICE_FOLDER)]).await;
        assert!(d.stack.sandbox.revoke_refresh_tokens(ALICE));
        let (topic, queue) = d.stack.moto.fresh_topic().await;
        let sns = SnsAlerter::new(d.stack.moto.clients().sns, &topic);
        let checker = d.checker(Some(Arc::new(sns)));
        let login = format!("mailroom credentials login {}", d.name);

        let first = only(&checker).await;
        let findings = first.findings.join("\n");
        assert!(
            findings.contains(&format!(
                "credential '{}' needs its user to sign in again",
                d.name
            )) && findings.contains("AADSTS50173")
                && findings.contains(&login),
            "{findings}"
        );
        assert_eq!(first.alerted, ["sign_in_required"], "{first:#?}");
        assert!(first.sign_in_failing());
        let status = sign_in_of(&first);
        assert!(
            status
                .sign_in_required
                .as_deref()
                .is_some_and(|r| r.contains("AADSTS50173")),
            "{status:#?}"
        );
        assert!(!status.refreshed);
        assert_eq!(status.mailboxes[0].access, Access::Unknown);
        let messages = d.stack.moto.drain_json(&queue).await;
        assert_eq!(messages.len(), 1, "{messages:#?}");
        let subject = messages[0]["Subject"].as_str().unwrap();
        assert!(
            subject.starts_with("Mailroom: credential 'mailroom/test/")
                && subject.ends_with("' needs its user to sign in again"),
            "{subject}"
        );
        let text = messages[0]["Message"].as_str().unwrap();
        assert!(text.contains(&format!("Signed in as: {ALICE}")), "{text}");
        assert!(text.contains("AADSTS50173"), "{text}");
        assert!(
            text.contains(&format!("What to do: sign in again: {login}")),
            "{text}"
        );
        d.assert_no_token("the alert", &messages[0].to_string())
            .await;
        d.assert_report_holds_no_token(&first).await;

        // The next day's check: the same finding, no second alert.
        d.stack.clock.advance(time::Duration::DAY);
        let again = only(&checker).await;
        assert!(again.findings.join("\n").contains(&login));
        assert!(again.alerted.is_empty(), "{again:#?}");
        assert!(d.stack.moto.drain_json(&queue).await.is_empty());
        let key = |at: OffsetDateTime| {
            format!(
                "sign-in#{}#required",
                at.replace_nanosecond(0).unwrap().format(&Rfc3339).unwrap()
            )
        };
        let signed_in_at = d.stored().await.signed_in_at;
        assert_eq!(
            d.stack.state.list_alerts(&d.name).await.unwrap(),
            [key(signed_in_at)]
        );

        // Alice signs in again: the check passes; that sign-in revoked in turn alerts afresh.
        let again = sign_in(&d.stack.sandbox, ALICE, &SCOPES).await;
        d.stack.put_delegated(&d.name, &SCOPES, &again).await;
        let fine = only(&checker).await;
        assert!(
            sign_in_of(&fine).refreshed && fine.findings.is_empty(),
            "{fine:#?}"
        );
        assert!(d.stack.sandbox.revoke_refresh_tokens(ALICE));
        let revoked = only(&checker).await;
        assert_eq!(revoked.alerted, ["sign_in_required"], "{revoked:#?}");
        assert_eq!(d.stack.moto.drain_json(&queue).await.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scope_the_user_never_granted_is_a_finding_naming_it() {
        // Mail.Send was added to the credential after Alice signed in without it.
        let configured = [
            "Mail.ReadWrite",
            "Mail.ReadWrite.Shared",
            "Mail.Send",
            "offline_access",
        ];
        let d = Delegated::start(&configured, 1, &[(ALICE, ALICE_FOLDER)]).await;
        let report = only(&d.checker(None)).await;
        let status = sign_in_of(&report);
        assert_eq!(status.scopes_missing, ["Mail.Send"], "{status:#?}");
        let finding = report
            .findings
            .iter()
            .find(|f| f.contains("did not grant"))
            .unwrap_or_else(|| panic!("{report:#?}"));
        assert!(
            finding.contains("Mail.Send")
                && finding.contains(ALICE)
                && finding.contains(&format!("mailroom credentials login {}", d.name)),
            "{finding}"
        );
        assert!(finding.contains("asks for Mail.Send but"), "{finding}");
        // Entra refuses to redeem the sign-in for a scope nobody consented to.
        assert!(
            status
                .sign_in_required
                .as_deref()
                .is_some_and(|r| r.contains("AADSTS65001")),
            "{status:#?}"
        );
        assert!(report.sign_in_failing());
        d.assert_report_holds_no_token(&report).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_mailbox_not_shared_with_the_user_is_a_finding_naming_it() {
        let d = Delegated::start(&SCOPES, 1, &[(ALICE, ALICE_FOLDER), (BOB, "Inbox")]).await;
        let checker = d.checker(None);
        let report = only(&checker).await;
        let status = sign_in_of(&report);
        assert!(status.refreshed, "{report:#?}");
        assert_eq!(status.mailboxes[0].access, Access::Readable);
        let bob = &status.mailboxes[1];
        assert_eq!((bob.mailbox.as_str(), bob.access), (BOB, Access::Denied));
        let detail = bob.detail.clone().unwrap_or_default();
        assert!(
            detail.contains(BOB)
                && detail.contains("Full Access")
                && detail.contains(&format!("mailroom credentials login {}", d.name)),
            "{detail}"
        );
        assert!(
            report.findings.iter().any(|f| f.contains(BOB)),
            "{report:#?}"
        );
        assert!(!report.findings.iter().any(|f| f.contains(ALICE_FOLDER)));
        assert!(report.sign_in_failing() && report.needs_attention(&checker.thresholds));

        // Bob shares his mailbox with Alice: the next check finds it readable.
        assert!(d.stack.sandbox.share_mailbox(BOB, ALICE, None, false));
        let shared = only(&checker).await;
        assert_eq!(sign_in_of(&shared).mailboxes[1].access, Access::Readable);
        assert!(shared.findings.is_empty(), "{shared:#?}");
        d.assert_report_holds_no_token(&shared).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_inactivity_threshold_alerts_once_whether_the_check_stopped_or_keeps_failing() {
        // The checker did not run for 80 days (nor any import): its first run refreshes the
        // sign-in, and says how close it came.
        let d = Delegated::start(&SCOPES, 80, &[(ALICE, ALICE_FOLDER)]).await;
        let (topic, queue) = d.stack.moto.fresh_topic().await;
        let sns: Arc<dyn Alerter> = Arc::new(SnsAlerter::new(d.stack.moto.clients().sns, &topic));
        let checker = d.checker(Some(sns.clone()));
        let late = only(&checker).await;
        assert_eq!(late.alerted, ["inactive_30", "inactive_14"], "{late:#?}");
        let status = sign_in_of(&late);
        assert!(status.refreshed);
        assert_eq!(
            (status.days_since_refresh, status.inactivity_days_left),
            (Some(80), Some(10))
        );
        assert!(
            late.findings
                .iter()
                .any(|f| f.contains("had not been refreshed for 80 days")),
            "{late:#?}"
        );
        let messages = d.stack.moto.drain_json(&queue).await;
        assert_eq!(messages.len(), 1, "{messages:#?}");
        let subject = messages[0]["Subject"].as_str().unwrap();
        assert!(
            subject.ends_with("' went 80 days without a refresh (refreshed now)"),
            "{subject}"
        );
        let text = messages[0]["Message"].as_str().unwrap();
        assert!(
            text.contains("this check refreshed the sign-in, so the window starts again"),
            "{text}"
        );
        d.assert_no_token("the alert", &messages[0].to_string())
            .await;
        // Refreshed: the next check finds a fresh sign-in and alerts nothing.
        let next = only(&checker).await;
        assert_eq!(sign_in_of(&next).days_since_refresh, Some(0));
        assert!(next.alerted.is_empty(), "{next:#?}");

        // Now the refresh fails day after day (Entra answers 503) from 55 days after the last
        // one: each threshold alerts once, the day it is reached.
        d.store(&SCOPES, 55).await;
        d.stack.sandbox.inject(
            FaultRule::new(FaultKind::Status(503, None))
                .path_contains("/oauth2/v2.0/token")
                .always(),
        );
        let mut config = d.stack.graph_config();
        config.retry.max_retries = 0;
        let failing = d.checker_with(Some(sns), config);
        let mut alerted = Vec::new();
        for day in 0..=37 {
            for run in 0..2 {
                let report = only(&failing).await;
                let status = sign_in_of(&report);
                assert!(!status.refreshed, "day {day}: {report:#?}");
                assert_eq!(status.inactivity_days_left, Some(35 - day), "day {day}");
                assert!(
                    report
                        .findings
                        .iter()
                        .any(|f| f.contains("could not be refreshed")),
                    "day {day}: {report:#?}"
                );
                if run == 1 {
                    assert!(report.alerted.is_empty(), "day {day}: {report:#?}");
                }
                alerted.extend(report.alerted);
            }
            d.stack.clock.advance(time::Duration::DAY);
        }
        assert_eq!(
            alerted,
            [
                "inactive_30",
                "inactive_14",
                "inactive_7",
                "inactive_3",
                "inactive_1"
            ]
        );
        let messages = d.stack.moto.drain_json(&queue).await;
        let subjects: Vec<&str> = messages
            .iter()
            .map(|m| m["Subject"].as_str().unwrap())
            .collect();
        assert_eq!(subjects.len(), 5, "{subjects:#?}");
        assert!(
            subjects[0].ends_with("' not refreshed for 60 days (30 days left)"),
            "{subjects:#?}"
        );
        assert!(
            subjects[4].ends_with("' not refreshed for 89 days (1 day left)"),
            "{subjects:#?}"
        );
        for message in &messages {
            let text = message["Message"].as_str().unwrap();
            assert!(text.contains("make the refresh succeed"), "{text}");
            d.assert_no_token("an alert", &message.to_string()).await;
        }
        d.stack.sandbox.clear_faults();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_confidential_delegated_client_gets_its_secret_checked_as_well() {
        let mut app = App::new(DEFAULT_CLIENT_ID)
            .object_id(DEFAULT_APP_OBJECT_ID)
            .secret(AppSecret::new(DEFAULT_SECRET).key_id(DEFAULT_SECRET_ID))
            .permissions(READ_APPLICATIONS)
            .delegated_permissions(DEFAULT_DELEGATED_PERMISSIONS)
            .redirect_uri(WEB);
        app = app.display_name("Mailroom");
        let world =
            World::new().tenant(Tenant::new(DEFAULT_TENANT).domain(DEFAULT_DOMAIN).app(app));
        log();
        let stack = Stack::start(mailboxes(world)).await;
        let expires_at = in_days(&stack, 10);
        assert!(stack.sandbox.set_password_expiry(
            DEFAULT_CLIENT_ID,
            DEFAULT_SECRET_ID,
            expires_at
        ));
        let signed_in =
            sign_in_confidential(&stack.sandbox, ALICE, &SCOPES, DEFAULT_SECRET, WEB).await;
        let name = format!("{}-alice", stack.credential);
        let json = serde_json::json!({
            "kind": "delegated",
            "tenant_id": DEFAULT_TENANT,
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_SECRET,
            "key_id": DEFAULT_SECRET_ID,
            "scopes": SCOPES,
        })
        .to_string();
        stack.store_secret(&name, &json).await;
        stack.sign_ins().save(&name, &signed_in).await.unwrap();
        let d = Delegated {
            stack,
            name,
            signed_in,
        };
        d.configure(ALICE, ALICE_FOLDER).await;
        let alerter = Arc::new(MemoryAlerter::default());
        let report = only(&d.checker(Some(alerter.clone()))).await;

        // The secret, as for any app credential: from the app registration, alerted.
        assert_eq!(
            report.kind,
            Some(CredentialKind::ClientSecret),
            "{report:#?}"
        );
        assert_eq!(report.source, ExpirySource::Graph, "{report:#?}");
        assert_eq!(report.expires_at, Some(expires_at));
        assert_eq!(report.days_left, Some(10));
        assert_eq!(report.alerted, ["30", "14"], "{report:#?}");
        let sent = alerter.sent();
        assert_eq!(sent.len(), 1, "{sent:#?}");
        assert_eq!(sent[0].level, AlertLevel::Threshold(14));
        // The sign-in, refreshed with the secret, and the mailbox read as Alice.
        let status = sign_in_of(&report);
        assert!(status.refreshed, "{report:#?}");
        assert_eq!(status.user.as_deref(), Some(ALICE));
        assert_eq!(status.mailboxes[0].access, Access::Readable);
        assert!(report.findings.is_empty(), "{report:#?}");
        assert_no_secret(&serde_json::to_string(&report).unwrap());
        assert_no_secret(&sent[0].text());
        d.assert_report_holds_no_token(&report).await;
    }
}
