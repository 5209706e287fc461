use std::sync::Arc;

use time::macros::datetime;

use super::*;
use crate::adapters::memory::{MemoryAlerter, MemorySecretSource, MemoryStateStore};
use crate::clock::ManualClock;
use crate::credentials::CertificateCredential;
use crate::domain::alert::rfc3339;
use crate::graph::{GraphConfig, KeyCredential, PasswordCredential};

const SECRET: &str = "Xk48Q~very-secret-value-not-for-logs";
const EXPIRY: OffsetDateTime = datetime!(2026-12-01 00:00 UTC);

fn checker(clock: Arc<ManualClock>) -> (ExpiryChecker, Arc<MemoryAlerter>) {
    let alerter = Arc::new(MemoryAlerter::default());
    let store = Arc::new(MemoryStateStore::default());
    let config = GraphConfig::new(
        url::Url::parse("http://127.0.0.1:9").unwrap(),
        url::Url::parse("http://127.0.0.1:9").unwrap(),
    );
    let checker = ExpiryChecker {
        mailboxes: store.clone(),
        alerts: store,
        credentials: Arc::new(Credentials::new(
            Arc::new(MemorySecretSource::default()),
            Credentials::DEFAULT_TTL,
        )),
        graph: GraphClient::new(config).unwrap(),
        alerter: Some(alerter.clone()),
        clock,
        thresholds: Thresholds::default(),
        probe_rotation: false,
    };
    (checker, alerter)
}

fn report_at(clock: &ManualClock, expires_at: Option<OffsetDateTime>) -> CredentialReport {
    let mut report = CredentialReport::new("contoso");
    report.client_id = Some("app-1".into());
    report.kind = Some(CredentialKind::ClientSecret);
    report.expires_at = expires_at;
    report.source = if expires_at.is_some() {
        ExpirySource::Stored
    } else {
        ExpirySource::Unknown
    };
    report.days_left = expires_at.map(|at| days_left(at, clock.now()));
    report
}

fn password(key_id: &str, hint: &str, end: OffsetDateTime) -> PasswordCredential {
    serde_json::from_value(serde_json::json!({
        "keyId": key_id,
        "hint": hint,
        "endDateTime": rfc3339(end),
    }))
    .unwrap()
}

fn application(passwords: Vec<PasswordCredential>, keys: Vec<KeyCredential>) -> Application {
    Application {
        id: "object".into(),
        app_id: "app-1".into(),
        display_name: None,
        password_credentials: passwords,
        key_credentials: keys,
    }
}

fn secret_credential(key_id: Option<&str>) -> AppCredential {
    let mut credential = AppCredential::new("t", "app-1", SECRET.to_owned().into());
    credential.key_id = key_id.map(str::to_owned);
    credential
}

#[test]
fn thresholds_parse_sort_and_refuse_nonsense() {
    assert_eq!(Thresholds::parse("1, 7,30,7").unwrap().days(), &[30, 7, 1]);
    assert_eq!(Thresholds::default().days(), &[30, 14, 7, 3, 1]);
    assert_eq!(
        Thresholds::parse(Thresholds::DEFAULT).unwrap(),
        Thresholds::default()
    );
    assert!(Thresholds::parse("0").is_err());
    assert!(Thresholds::parse("").is_err());
    assert!(
        Thresholds::parse("30,two")
            .unwrap_err()
            .to_string()
            .contains("'two'")
    );
}

#[test]
fn days_left_counts_a_started_day_and_goes_negative_after_expiry() {
    let day = time::Duration::DAY;
    assert_eq!(days_left(EXPIRY, EXPIRY - day * 30), 30);
    assert_eq!(
        days_left(EXPIRY, EXPIRY - day * 30 + time::Duration::HOUR),
        30
    );
    assert_eq!(days_left(EXPIRY, EXPIRY - time::Duration::HOUR), 1);
    assert_eq!(days_left(EXPIRY, EXPIRY), 0);
    assert_eq!(days_left(EXPIRY, EXPIRY + time::Duration::HOUR), 0);
    assert_eq!(days_left(EXPIRY, EXPIRY + day * 3), -3);
}

#[test]
fn the_metric_line_is_embedded_metric_format() {
    let line = metric_line("mailroom/contoso", 12, datetime!(2026-11-23 10:00 UTC));
    assert!(!line.contains('\n'));
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["_aws"]["Timestamp"], 1_795_428_000_000_i64);
    let directive = &value["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "Mailroom");
    assert_eq!(
        directive["Dimensions"],
        serde_json::json!([["Credential"], []])
    );
    assert_eq!(
        directive["Metrics"],
        serde_json::json!([{"Name": "SecretDaysLeft", "Unit": "Count"}])
    );
    assert_eq!(value["Credential"], "mailroom/contoso");
    assert_eq!(value["SecretDaysLeft"], 12);
}

#[test]
fn a_secret_is_matched_by_key_id_then_by_hint() {
    let other = datetime!(2027-06-01 00:00 UTC);
    let app = application(
        vec![
            password("k-old", "abc", other),
            password("k-current", "Xk4", EXPIRY),
        ],
        vec![],
    );
    assert_eq!(find_expiry(&secret_credential(None), &app), Ok(EXPIRY));
    assert_eq!(
        find_expiry(&secret_credential(Some("K-OLD")), &app),
        Ok(other)
    );
    let missing = find_expiry(&secret_credential(Some("k-gone")), &app)
        .unwrap_err()
        .reason;
    assert!(missing.contains("stored key_id k-gone"), "{missing}");

    let ambiguous = application(
        vec![
            password("k-1", "Xk4", EXPIRY),
            password("k-2", "Xk4", other),
        ],
        vec![],
    );
    let why = find_expiry(&secret_credential(None), &ambiguous)
        .unwrap_err()
        .reason;
    assert!(why.contains("cannot be matched"), "{why}");
    assert!(why.contains("store key_id with the secret"), "{why}");
    assert!(why.contains("k-1, k-2"), "{why}");
    // The key id settles it.
    assert_eq!(
        find_expiry(&secret_credential(Some("k-2")), &ambiguous),
        Ok(other)
    );

    let none = application(vec![password("k-1", "zzz", EXPIRY)], vec![]);
    let why = find_expiry(&secret_credential(None), &none)
        .unwrap_err()
        .reason;
    assert!(why.contains("no client secret of app app-1"), "{why}");
    assert!(!why.contains("Xk4"), "{why}");
}

#[test]
fn a_certificate_is_matched_by_key_id_or_thumbprint() {
    let certificate = CertificateCredential::from_pem(
        include_str!("../../../sandbox/fixtures/app-cert.pem"),
        include_str!("../../../sandbox/fixtures/app-key.pem"),
    )
    .unwrap();
    let thumbprint = certificate.thumbprint_sha1_hex();
    let key = |key_id: &str, identifier: &str, end: OffsetDateTime| -> KeyCredential {
        serde_json::from_value(serde_json::json!({
            "keyId": key_id,
            "customKeyIdentifier": identifier,
            "endDateTime": rfc3339(end),
            "type": "AsymmetricX509Cert",
        }))
        .unwrap()
    };
    let mut credential = AppCredential::new("t", "app-1", certificate.into());
    let other = datetime!(2027-06-01 00:00 UTC);
    let app = application(
        vec![],
        vec![key("k-a", "00FF", other), key("k-b", &thumbprint, EXPIRY)],
    );
    assert_eq!(find_expiry(&credential, &app), Ok(EXPIRY));
    credential.key_id = Some("k-a".into());
    assert_eq!(find_expiry(&credential, &app), Ok(other));
    let none = application(vec![], vec![key("k-a", "00FF", other)]);
    credential.key_id = None;
    let why = find_expiry(&credential, &none).unwrap_err().reason;
    assert!(why.contains(&thumbprint), "{why}");
}

#[tokio::test]
async fn each_threshold_alerts_once_across_the_days_and_a_rerun_sends_nothing() {
    let clock = Arc::new(ManualClock::new(EXPIRY - time::Duration::days(40)));
    let (checker, alerter) = checker(clock.clone());
    let mut alerted = Vec::new();
    for _ in 0..=42 {
        for _ in 0..2 {
            let mut report = report_at(&clock, Some(EXPIRY));
            checker.alert(&mut report, None).await;
            alerted.extend(report.alerted);
        }
        clock.advance(time::Duration::DAY);
    }
    assert_eq!(alerted, ["30", "14", "7", "3", "1", "expired"]);
    let levels: Vec<AlertLevel> = alerter.sent().iter().map(|a| a.level).collect();
    assert_eq!(
        levels,
        [
            AlertLevel::Threshold(30),
            AlertLevel::Threshold(14),
            AlertLevel::Threshold(7),
            AlertLevel::Threshold(3),
            AlertLevel::Threshold(1),
            AlertLevel::Expired
        ]
    );
    let claims = checker.alerts.list_alerts("contoso").await.unwrap();
    assert!(
        claims.contains(&"2026-12-01T00:00:00Z#14".to_owned()),
        "{claims:?}"
    );
    assert!(claims.contains(&"2026-12-01T00:00:00Z#expired".to_owned()));
}

#[tokio::test]
async fn a_first_run_late_sends_one_alert_for_the_most_urgent_and_claims_the_rest() {
    let clock = Arc::new(ManualClock::new(EXPIRY - time::Duration::days(5)));
    let (checker, alerter) = checker(clock.clone());
    let mut report = report_at(&clock, Some(EXPIRY));
    checker.alert(&mut report, None).await;
    assert_eq!(report.alerted, ["30", "14", "7"]);
    let sent = alerter.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].level, AlertLevel::Threshold(7));
    assert_eq!(sent[0].days_left, Some(5));
    assert!(sent[0].subject().contains("expires in 5 days (2026-12-01)"));

    // A rotated secret: a new expiry alerts afresh.
    let rotated = EXPIRY + time::Duration::days(20);
    let mut report = report_at(&clock, Some(rotated));
    checker.alert(&mut report, None).await;
    assert_eq!(report.alerted, ["30"]);
}

#[tokio::test]
async fn a_failed_send_gives_the_claims_back_for_the_next_run() {
    let clock = Arc::new(ManualClock::new(EXPIRY - time::Duration::days(10)));
    let (checker, alerter) = checker(clock.clone());
    alerter.fail_next(1);
    let mut report = report_at(&clock, Some(EXPIRY));
    checker.alert(&mut report, None).await;
    assert!(report.alerted.is_empty());
    assert!(
        report.findings.iter().any(|f| f.contains("next run")),
        "{:?}",
        report.findings
    );
    assert!(
        checker
            .alerts
            .list_alerts("contoso")
            .await
            .unwrap()
            .is_empty()
    );
    let mut report = report_at(&clock, Some(EXPIRY));
    checker.alert(&mut report, None).await;
    assert_eq!(report.alerted, ["30", "14"]);
    assert_eq!(alerter.sent().len(), 1);
}

#[tokio::test]
async fn unknown_expiry_alerts_once() {
    let clock = Arc::new(ManualClock::new(EXPIRY));
    let (checker, alerter) = checker(clock.clone());
    for _ in 0..3 {
        let mut report = report_at(&clock, None);
        checker.alert(&mut report, None).await;
        clock.advance(time::Duration::DAY);
    }
    let sent = alerter.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].level, AlertLevel::Unknown);
    assert!(
        sent[0].subject().ends_with("expiry unknown"),
        "{}",
        sent[0].subject()
    );
    assert!(sent[0].action().contains("Application.Read.All"));
    assert_eq!(
        checker.alerts.list_alerts("contoso").await.unwrap(),
        ["unknown"]
    );
}

#[tokio::test]
async fn without_an_alerter_nothing_is_claimed() {
    let clock = Arc::new(ManualClock::new(EXPIRY));
    let (mut checker, _) = checker(clock.clone());
    checker.alerter = None;
    let mut report = report_at(&clock, Some(EXPIRY));
    checker.alert(&mut report, None).await;
    assert!(report.alerted.is_empty());
    assert!(
        checker
            .alerts
            .list_alerts("contoso")
            .await
            .unwrap()
            .is_empty()
    );
}

#[test]
fn alerts_say_what_to_do_and_never_carry_the_secret() {
    let credential = secret_credential(None);
    let alert = Alert {
        credential: "mailroom/contoso".into(),
        client_id: Some("app-1".into()),
        tenant_id: Some("t".into()),
        kind: Some(CredentialKind::ClientSecret),
        level: AlertLevel::Expired,
        expires_at: Some(EXPIRY),
        days_left: Some(-2),
        source: ExpirySource::Graph,
        findings: vec![format!("a finding that somehow quotes {SECRET}")],
        sign_in: None,
    };
    let alert = scrub_alert(alert, &Redactor::for_credential(&credential));
    let text = alert.text();
    assert!(!text.contains(SECRET), "{text}");
    assert!(!format!("{alert:?}").contains(SECRET));
    assert!(text.contains("App (client id): app-1"), "{text}");
    assert!(text.contains("Expires: 2026-12-01T00:00:00Z (from the app registration in Graph)"));
    assert!(text.contains("What to do: rotate it"), "{text}");
    assert_eq!(
        alert.subject(),
        "Mailroom: client secret 'mailroom/contoso' has expired (2026-12-01)"
    );
    let long = Alert {
        credential: "é".repeat(200),
        ..alert
    };
    let subject = long.subject();
    assert!(subject.len() <= 100 && subject.is_ascii(), "{subject}");
    assert!(
        subject.ends_with("...' has expired (2026-12-01)"),
        "{subject}"
    );
}

// A delegated credential's sign-in alerts (the sign-in check itself is proved end to end in
// tests/tests/expiry.rs).

const SIGNED_IN: OffsetDateTime = datetime!(2026-09-01 08:00 UTC);

fn sign_in_report(clock: &ManualClock, last_refresh: OffsetDateTime) -> CredentialReport {
    let now = clock.now();
    let lapses_at = last_refresh + time::Duration::days(90);
    let mut report = CredentialReport::new("alice");
    report.client_id = Some("app-1".into());
    report.kind = Some(CredentialKind::PublicClient);
    report.source = ExpirySource::NoSecret;
    report.delegated = Some(SignInStatus {
        user: Some("alice@contoso.com".into()),
        signed_in_at: Some(SIGNED_IN),
        scopes_configured: vec!["Mail.ReadWrite".into()],
        scopes_granted: vec!["Mail.ReadWrite".into()],
        scopes_missing: Vec::new(),
        last_refresh_at: Some(last_refresh),
        days_since_refresh: Some((now - last_refresh).whole_days()),
        inactivity_window_days: 90,
        inactivity_days_left: Some(days_left(lapses_at, now)),
        refreshed: false,
        lapses_at: Some(lapses_at),
        sign_in_required: None,
        mailboxes: Vec::new(),
    });
    report
}

fn public_client() -> AppCredential {
    AppCredential::new("t", "app-1", ClientAuth::Public)
}

#[tokio::test]
async fn each_inactivity_threshold_alerts_once_per_stretch_without_a_refresh() {
    let last = SIGNED_IN;
    let clock = Arc::new(ManualClock::new(last + time::Duration::days(55)));
    let (checker, alerter) = checker(clock.clone());
    let redactor = Redactor::for_credential(&public_client());
    let mut alerted = Vec::new();
    for _ in 0..=40 {
        for _ in 0..2 {
            let mut report = sign_in_report(&clock, last);
            checker
                .alert_sign_in(&mut report, &public_client(), Vec::new(), &redactor)
                .await;
            alerted.extend(report.alerted);
        }
        clock.advance(time::Duration::DAY);
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
    let sent = alerter.sent();
    assert_eq!(sent.len(), 5);
    assert_eq!(
        sent[0].subject(),
        "Mailroom: sign-in 'alice' not refreshed for 60 days (30 days left)"
    );
    assert!(
        sent[0]
            .text()
            .contains("Last refresh before this check: 2026-09-01T08:00:00Z (60 days before it)"),
        "{}",
        sent[0].text()
    );
    assert!(
        sent[0]
            .action()
            .contains("make the refresh succeed before the window ends"),
        "{}",
        sent[0].action()
    );
    // A refresh starts a new stretch: its thresholds alert afresh.
    let mut report = sign_in_report(&clock, clock.now() - time::Duration::days(80));
    checker
        .alert_sign_in(&mut report, &public_client(), Vec::new(), &redactor)
        .await;
    assert_eq!(report.alerted, ["inactive_30", "inactive_14"]);
}

#[tokio::test]
async fn a_sign_in_that_needs_the_user_alerts_once_until_the_user_signs_in_again() {
    let clock = Arc::new(ManualClock::new(SIGNED_IN + time::Duration::days(3)));
    let (checker, alerter) = checker(clock.clone());
    let redactor = Redactor::for_credential(&public_client()).with("rt-0123456789-secret");
    let required = |signed_in_at: OffsetDateTime| {
        let mut report = sign_in_report(&clock, signed_in_at);
        if let Some(status) = &mut report.delegated {
            status.signed_in_at = Some(signed_in_at);
            status.sign_in_required = Some("the sign-in was revoked (AADSTS50173)".into());
        }
        report
    };
    for _ in 0..3 {
        let mut report = required(SIGNED_IN);
        let findings = vec!["a finding quoting rt-0123456789-secret by mistake".to_owned()];
        checker
            .alert_sign_in(&mut report, &public_client(), findings, &redactor)
            .await;
        clock.advance(time::Duration::DAY);
    }
    let sent = alerter.sent();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0].level, AlertLevel::SignInRequired);
    assert_eq!(
        sent[0].subject(),
        "Mailroom: credential 'alice' needs its user to sign in again"
    );
    let text = sent[0].text();
    assert!(
        text.contains("Credential: alice (delegated, public client)"),
        "{text}"
    );
    assert!(
        text.contains("Signed in as: alice@contoso.com, on 2026-09-01T08:00:00Z"),
        "{text}"
    );
    assert!(
        text.contains("Sign-in required: the sign-in was revoked (AADSTS50173)"),
        "{text}"
    );
    assert!(
        text.contains("What to do: sign in again: mailroom credentials login alice"),
        "{text}"
    );
    assert!(!text.contains("rt-0123456789-secret"), "{text}");
    assert_eq!(
        checker.alerts.list_alerts("alice").await.unwrap(),
        ["sign-in#2026-09-01T08:00:00Z#required"]
    );
    // The user signed in again, and that sign-in died too: a new alert.
    let mut report = required(SIGNED_IN + time::Duration::days(10));
    checker
        .alert_sign_in(&mut report, &public_client(), Vec::new(), &redactor)
        .await;
    assert_eq!(report.alerted, ["sign_in_required"]);
    assert_eq!(alerter.sent().len(), 2);
}
