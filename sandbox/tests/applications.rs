//! Application objects, addPassword / removePassword, secret propagation and expiry, client
//! assertions signed with the fixture certificate, and the sendMail record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::{GRAPH_SCOPE, Graph, code, http, message, token_response};
use graph_sandbox::fixtures::{TEST_CERT_PEM, TEST_KEY_PEM};
use graph_sandbox::{
    App, AppCertificate, AppSecret, DEFAULT_APP_OBJECT_ID, DEFAULT_CLIENT_ID, DEFAULT_SECRET,
    DEFAULT_SECRET_ID, DEFAULT_TENANT, Mailbox, Sandbox, Tenant, World,
};
use ring::signature::{RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaKeyPair};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const READER_ID: &str = "b0000000-0000-4000-8000-0000000000b1";
const READER_SECRET: &str = "Rdr8Q~reader.secret-0123456789abcdefghij";
const ADMIN_ID: &str = "b0000000-0000-4000-8000-0000000000b2";
const ADMIN_SECRET: &str = "Adm8Q~admin.secret-0123456789abcdefghijk";
const MAILER_ID: &str = "b0000000-0000-4000-8000-0000000000b3";
const MAILER_SECRET: &str = "Mlr8Q~mailer.secret-0123456789abcdefghij";
const OTHER_TENANT: &str = "0b3f1e2d-1111-4a4a-9b9b-222233334444";
const OTHER_ID: &str = "b0000000-0000-4000-8000-0000000000c1";

/// The default app (self-rotation with `Application.ReadWrite.OwnedBy`, the fixture certificate),
/// a reader (`Application.Read.All`), an admin (`Application.ReadWrite.All`), a mail-only app,
/// and an app in another tenant.
fn world() -> World {
    let cert = AppCertificate::from_pem(TEST_CERT_PEM).unwrap();
    World::new()
        .tenant(
            Tenant::new(DEFAULT_TENANT)
                .domain("contoso.com")
                .app(
                    App::new(DEFAULT_CLIENT_ID)
                        .object_id(DEFAULT_APP_OBJECT_ID)
                        .display_name("Mailroom")
                        .secret(
                            AppSecret::new(DEFAULT_SECRET)
                                .key_id(DEFAULT_SECRET_ID)
                                .display_name("initial"),
                        )
                        .certificate(cert)
                        .permissions(&[
                            "Mail.ReadWrite",
                            "Mail.Send",
                            "Application.ReadWrite.OwnedBy",
                        ]),
                )
                .app(
                    App::new(READER_ID)
                        .secret(AppSecret::new(READER_SECRET))
                        .permissions(&["Application.Read.All"]),
                )
                .app(
                    App::new(ADMIN_ID)
                        .secret(AppSecret::new(ADMIN_SECRET))
                        .permissions(&["Application.ReadWrite.All"]),
                )
                .app(
                    App::new(MAILER_ID)
                        .secret(AppSecret::new(MAILER_SECRET))
                        .permissions(&["Mail.Read", "Mail.Send"]),
                )
                .mailbox(Mailbox::new("alerts@contoso.com")),
        )
        .tenant(
            Tenant::new(OTHER_TENANT)
                .domain("fabrikam.com")
                .app(App::new(OTHER_ID).secret(AppSecret::new("Oth8Q~x"))),
        )
}

async fn graph_as(sb: &Sandbox, client_id: &str, secret: &str) -> Graph {
    let (status, body) = token_response(sb, DEFAULT_TENANT, client_id, secret, GRAPH_SCOPE).await;
    assert_eq!(status, 200, "{body}");
    Graph {
        http: http(),
        base: sb.url(),
        token: body["access_token"].as_str().unwrap().to_owned(),
        immutable: false,
    }
}

/// Graph's error shape with the directory denial (docs/graph.md section 10).
fn assert_denied(status: u16, body: &Value) {
    assert_eq!(status, 403, "{body}");
    assert_eq!(code(body), "Authorization_RequestDenied", "{body}");
    assert_eq!(
        message(body),
        "Insufficient privileges to complete the operation."
    );
    let inner = &body["error"]["innerError"];
    for field in ["date", "request-id", "client-request-id"] {
        assert!(
            inner[field].as_str().is_some_and(|s| !s.is_empty()),
            "{body}"
        );
    }
}

fn assert_aad(status: u16, body: &Value, http_status: u16, error: &str, aadsts: u64) {
    assert_eq!(status, http_status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], json!([aadsts]), "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("AADSTS{aadsts}: ")),
        "{description}"
    );
}

fn time_of(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

fn pem_der(pem: &str, label: &str) -> Vec<u8> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = pem
        .split(&begin)
        .nth(1)
        .unwrap()
        .split(&end)
        .next()
        .unwrap();
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(b64).unwrap()
}

fn digest(alg: &'static ring::digest::Algorithm, data: &[u8]) -> Vec<u8> {
    ring::digest::digest(alg, data).as_ref().to_vec()
}

/// Which thumbprint header to send.
#[derive(Clone, Copy)]
enum Thumb {
    S256,
    Sha1,
    None,
}

/// Signs a client assertion with the fixture key.
fn sign(alg: &str, thumb: Thumb, claims: &Value) -> String {
    let der = pem_der(TEST_CERT_PEM, "CERTIFICATE");
    let mut header = json!({ "alg": alg, "typ": "JWT" });
    match thumb {
        Thumb::S256 => {
            header["x5t#S256"] = json!(URL_SAFE_NO_PAD.encode(digest(&ring::digest::SHA256, &der)));
        }
        Thumb::Sha1 => {
            header["x5t"] = json!(
                URL_SAFE_NO_PAD.encode(digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der))
            );
        }
        Thumb::None => {}
    }
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = RsaKeyPair::from_pkcs8(&pem_der(TEST_KEY_PEM, "PRIVATE KEY")).unwrap();
    let mut signature = vec![0; key.public().modulus_len()];
    let padding: &'static dyn ring::signature::RsaEncoding = if alg == "PS256" {
        &RSA_PSS_SHA256
    } else {
        &RSA_PKCS1_SHA256
    };
    key.sign(
        padding,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Claims valid now (sandbox clock) for `client_id` at this sandbox's token URL.
fn claims(sb: &Sandbox, client_id: &str) -> Value {
    let now = sb.now().unix_timestamp();
    json!({
        "aud": format!("{}/{DEFAULT_TENANT}/oauth2/v2.0/token", sb.url()),
        "iss": client_id,
        "sub": client_id,
        "jti": uuid::Uuid::new_v4().to_string(),
        "nbf": now,
        "iat": now,
        "exp": now + 600,
    })
}

async fn assertion_token(
    sb: &Sandbox,
    client_id: Option<&str>,
    jwt: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("scope", GRAPH_SCOPE),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", jwt),
    ];
    if let Some(id) = client_id {
        form.push(("client_id", id));
    }
    form.extend_from_slice(extra);
    let r = http()
        .post(format!("{}/{DEFAULT_TENANT}/oauth2/v2.0/token", sb.url()))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn application_is_read_with_permission_and_refused_without() {
    let sb = Sandbox::start(world()).await.unwrap();
    let object_id = sb.application_object_id(DEFAULT_CLIENT_ID).unwrap();
    assert_eq!(object_id, DEFAULT_APP_OBJECT_ID);
    assert_ne!(object_id, DEFAULT_CLIENT_ID);

    let reader = graph_as(&sb, READER_ID, READER_SECRET).await;
    let by_app_id = format!("/applications(appId='{DEFAULT_CLIENT_ID}')");
    let (s, a) = reader.get(&by_app_id).await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(
        a["@odata.context"],
        format!("{}/v1.0/$metadata#applications/$entity", sb.url())
    );
    assert_eq!(a["id"], object_id);
    assert_eq!(a["appId"], DEFAULT_CLIENT_ID);
    assert_eq!(a["displayName"], "Mailroom");
    let (s, b) = reader.get(&format!("/applications/{object_id}")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(a, b);

    // Passwords: the hint, never the value.
    let passwords = a["passwordCredentials"].as_array().unwrap();
    assert_eq!(passwords.len(), 1);
    let p = &passwords[0];
    assert_eq!(p["keyId"], DEFAULT_SECRET_ID);
    assert_eq!(p["displayName"], "initial");
    assert_eq!(p["hint"], &DEFAULT_SECRET[..3]);
    assert!(p["secretText"].is_null());
    assert!(time_of(&p["startDateTime"]) < time_of(&p["endDateTime"]));

    // Certificates: the SHA-1 thumbprint as customKeyIdentifier, no key unless selected.
    let der = pem_der(TEST_CERT_PEM, "CERTIFICATE");
    let keys = a["keyCredentials"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    assert_eq!(k["type"], "AsymmetricX509Cert");
    assert_eq!(k["usage"], "Verify");
    assert_eq!(
        k["customKeyIdentifier"],
        hex::encode_upper(digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der))
    );
    assert_eq!(k["displayName"], "CN=mailroom-test-app");
    assert!(k["key"].is_null());
    assert_eq!(time_of(&k["endDateTime"]).year(), 2046);
    assert_eq!(sb.application_certificates(DEFAULT_CLIENT_ID).len(), 1);

    // The owner reads itself with OwnedBy, not the others.
    let owner = Graph::new(&sb, false).await;
    let (s, own) = owner.get(&by_app_id).await;
    assert_eq!(s, 200, "{own}");
    let (s, e) = owner
        .get(&format!("/applications(appId='{READER_ID}')"))
        .await;
    assert_denied(s, &e);

    // A mail-only app may not read applications at all, existing or not.
    let mailer = graph_as(&sb, MAILER_ID, MAILER_SECRET).await;
    let (s, e) = mailer.get(&by_app_id).await;
    assert_denied(s, &e);
    let (s, e) = mailer.get("/applications").await;
    assert_denied(s, &e);
    let (s, e) = mailer
        .post(&format!("/applications/{object_id}/addPassword"), json!({}))
        .await;
    assert_denied(s, &e);

    // Another tenant's app, or none: not found.
    for path in [
        format!("/applications(appId='{OTHER_ID}')"),
        "/applications/00000000-0000-4000-8000-000000000000".to_owned(),
    ] {
        let (s, e) = reader.get(&path).await;
        assert_eq!(s, 404, "{e}");
        assert_eq!(code(&e), "Request_ResourceNotFound");
    }
    let (s, list) = reader.get("/applications").await;
    assert_eq!(s, 200, "{list}");
    let ids: Vec<&str> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["appId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [DEFAULT_CLIENT_ID, READER_ID, ADMIN_ID, MAILER_ID]);
}

#[tokio::test]
async fn select_and_filter_forms() {
    let sb = Sandbox::start(world()).await.unwrap();
    let reader = graph_as(&sb, READER_ID, READER_SECRET).await;

    let (s, a) = reader
        .get(&format!(
            "/applications(appId='{DEFAULT_CLIENT_ID}')?$select=id,appId,passwordCredentials,keyCredentials"
        ))
        .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(
        a["@odata.context"],
        format!(
            "{}/v1.0/$metadata#applications(id,appId,passwordCredentials,keyCredentials)/$entity",
            sb.url()
        )
    );
    let mut keys: Vec<&String> = a.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "@odata.context",
            "appId",
            "id",
            "keyCredentials",
            "passwordCredentials"
        ]
    );
    // The certificate itself, only when keyCredentials is selected on a single object.
    let key = a["keyCredentials"][0]["key"].as_str().unwrap();
    assert_eq!(
        STANDARD.decode(key).unwrap(),
        pem_der(TEST_CERT_PEM, "CERTIFICATE")
    );

    let (s, e) = reader
        .get(&format!(
            "/applications(appId='{DEFAULT_CLIENT_ID}')?$select=nope"
        ))
        .await;
    assert_eq!(s, 400, "{e}");

    let (s, list) = reader
        .get(&format!(
            "/applications?$filter=appId eq '{DEFAULT_CLIENT_ID}'&$select=id,keyCredentials"
        ))
        .await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(
        list["@odata.context"],
        format!(
            "{}/v1.0/$metadata#applications(id,keyCredentials)",
            sb.url()
        )
    );
    let value = list["value"].as_array().unwrap();
    assert_eq!(value.len(), 1);
    assert_eq!(value[0]["id"], DEFAULT_APP_OBJECT_ID);
    assert!(value[0]["keyCredentials"][0]["key"].is_null());
    assert!(value[0].get("appId").is_none());

    let (s, list) = reader
        .get("/applications?$filter=appId eq '00000000-0000-4000-8000-000000000000'")
        .await;
    assert_eq!(s, 200);
    assert_eq!(list["value"], json!([]));
    assert_eq!(
        list["@odata.context"],
        format!("{}/v1.0/$metadata#applications", sb.url())
    );

    let (s, e) = reader
        .get("/applications?$filter=displayName eq 'Mailroom'")
        .await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(code(&e), "Request_UnsupportedQuery");

    // The owner's list holds only what it owns.
    let owner = Graph::new(&sb, false).await;
    let (s, list) = owner.get("/applications?$select=appId").await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["value"], json!([{ "appId": DEFAULT_CLIENT_ID }]));
}

#[tokio::test]
async fn added_password_works_only_after_the_propagation_delay() {
    let sb = Sandbox::start(world()).await.unwrap();
    sb.set_password_propagation_delay(Duration::from_secs(60));
    let owner = Graph::new(&sb, false).await;

    let (s, p) = owner
        .post(
            &format!("/applications(appId='{DEFAULT_CLIENT_ID}')/addPassword"),
            json!({ "passwordCredential": { "displayName": "mailroom-2026-11" } }),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(
        p["@odata.context"],
        format!(
            "{}/v1.0/$metadata#microsoft.graph.passwordCredential",
            sb.url()
        )
    );
    let secret = p["secretText"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 40);
    assert_eq!(&secret[3..6], "8Q~");
    assert_eq!(p["hint"], &secret[..3]);
    assert_eq!(p["displayName"], "mailroom-2026-11");
    assert!(p["customKeyIdentifier"].is_null());
    let key_id = p["keyId"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&key_id).is_ok());
    let start = time_of(&p["startDateTime"]);
    let end = time_of(&p["endDateTime"]);
    assert_eq!(end.year(), start.year() + 2);
    assert_eq!((end.month(), end.day()), (start.month(), start.day()));

    // Listed at once, without its value.
    let (_, a) = owner
        .get(&format!(
            "/applications/{DEFAULT_APP_OBJECT_ID}?$select=passwordCredentials"
        ))
        .await;
    let listed = a["passwordCredentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["keyId"] == key_id.as_str())
        .unwrap()
        .clone();
    assert!(listed["secretText"].is_null());
    assert_eq!(listed["hint"], &secret[..3]);

    // Not yet propagated: refused like an unknown secret.
    let (s, b) = token_response(&sb, DEFAULT_TENANT, DEFAULT_CLIENT_ID, &secret, GRAPH_SCOPE).await;
    assert_aad(s, &b, 401, "invalid_client", 7_000_215);
    sb.advance_clock(Duration::from_secs(30));
    let (s, b) = token_response(&sb, DEFAULT_TENANT, DEFAULT_CLIENT_ID, &secret, GRAPH_SCOPE).await;
    assert_aad(s, &b, 401, "invalid_client", 7_000_215);
    sb.advance_clock(Duration::from_secs(31));
    let (s, b) = token_response(&sb, DEFAULT_TENANT, DEFAULT_CLIENT_ID, &secret, GRAPH_SCOPE).await;
    assert_eq!(s, 200, "{b}");

    // An explicit end is kept; the Rust view agrees.
    let (s, p2) = owner
        .post(
            &format!("/applications/{DEFAULT_APP_OBJECT_ID}/addPassword"),
            json!({ "passwordCredential": { "endDateTime": "2027-06-01T00:00:00Z" } }),
        )
        .await;
    assert_eq!(s, 200, "{p2}");
    assert_eq!(p2["endDateTime"], "2027-06-01T00:00:00Z");
    assert!(p2["displayName"].is_null());
    let infos = sb.application_passwords(DEFAULT_CLIENT_ID);
    assert_eq!(infos.len(), 3);
    let info = infos.iter().find(|i| i.key_id == key_id).unwrap();
    assert_eq!(info.hint, &secret[..3]);
    assert_eq!(info.display_name.as_deref(), Some("mailroom-2026-11"));

    // Bad bodies.
    let (s, e) = owner
        .post(
            &format!("/applications/{DEFAULT_APP_OBJECT_ID}/addPassword"),
            json!({ "passwordCredential": { "endDateTime": "soon" } }),
        )
        .await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(code(&e), "Request_BadRequest");
}

#[tokio::test]
async fn writing_needs_readwrite_on_the_target() {
    let sb = Sandbox::start(world()).await.unwrap();
    let reader = graph_as(&sb, READER_ID, READER_SECRET).await;
    let owner = Graph::new(&sb, false).await;
    let admin = graph_as(&sb, ADMIN_ID, ADMIN_SECRET).await;
    let reader_object = sb.application_object_id(READER_ID).unwrap();

    // Read.All cannot write, even its own registration.
    let (s, e) = reader
        .post(
            &format!("/applications/{reader_object}/addPassword"),
            json!({}),
        )
        .await;
    assert_denied(s, &e);
    // OwnedBy writes only its own.
    let (s, e) = owner
        .post(
            &format!("/applications/{reader_object}/addPassword"),
            json!({}),
        )
        .await;
    assert_denied(s, &e);
    // ReadWrite.All writes any app of its tenant; the body may be empty.
    let (s, p) = admin
        .post(
            &format!("/applications(appId='{READER_ID}')/addPassword"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    let (s, _) = token_response(
        &sb,
        DEFAULT_TENANT,
        READER_ID,
        p["secretText"].as_str().unwrap(),
        GRAPH_SCOPE,
    )
    .await;
    assert_eq!(s, 200);
    let (s, e) = admin
        .post(
            &format!("/applications(appId='{OTHER_ID}')/addPassword"),
            json!({}),
        )
        .await;
    assert_eq!(s, 404, "{e}");
    // GET only on the action.
    let (s, _) = admin
        .get(&format!("/applications/{reader_object}/addPassword"))
        .await;
    assert_eq!(s, 405);
}

#[tokio::test]
async fn removed_password_is_refused_and_cannot_be_removed_twice() {
    let sb = Sandbox::start(world()).await.unwrap();
    let owner = Graph::new(&sb, false).await;
    let path = format!("/applications/{DEFAULT_APP_OBJECT_ID}/removePassword");

    let (s, body) = owner
        .post(&path, json!({ "keyId": DEFAULT_SECRET_ID }))
        .await;
    assert_eq!(s, 204, "{body}");
    let (s, b) = token_response(
        &sb,
        DEFAULT_TENANT,
        DEFAULT_CLIENT_ID,
        DEFAULT_SECRET,
        GRAPH_SCOPE,
    )
    .await;
    assert_aad(s, &b, 401, "invalid_client", 7_000_215);
    assert!(sb.application_passwords(DEFAULT_CLIENT_ID).is_empty());

    let (s, e) = owner
        .post(&path, json!({ "keyId": DEFAULT_SECRET_ID }))
        .await;
    assert_eq!(s, 404, "{e}");
    assert_eq!(code(&e), "Request_ResourceNotFound");
    let (s, e) = owner.post(&path, json!({})).await;
    assert_eq!(s, 400, "{e}");
    let (s, e) = owner.post(&path, json!({ "keyId": "not-a-guid" })).await;
    assert_eq!(s, 400, "{e}");
}

#[tokio::test]
async fn expired_or_future_passwords_are_refused() {
    let sb = Sandbox::start(world()).await.unwrap();
    let in_an_hour = sb.now() + time::Duration::hours(1);
    assert!(sb.set_password_expiry(DEFAULT_CLIENT_ID, DEFAULT_SECRET_ID, in_an_hour));
    assert!(!sb.set_password_expiry(DEFAULT_CLIENT_ID, "no-such-key", in_an_hour));
    let (s, _) = token_response(
        &sb,
        DEFAULT_TENANT,
        DEFAULT_CLIENT_ID,
        DEFAULT_SECRET,
        GRAPH_SCOPE,
    )
    .await;
    assert_eq!(s, 200);

    sb.advance_clock(Duration::from_secs(2 * 3600));
    let (s, b) = token_response(
        &sb,
        DEFAULT_TENANT,
        DEFAULT_CLIENT_ID,
        DEFAULT_SECRET,
        GRAPH_SCOPE,
    )
    .await;
    assert_aad(s, &b, 401, "invalid_client", 7_000_222);
    let info = &sb.application_passwords(DEFAULT_CLIENT_ID)[0];
    assert_eq!(info.end, in_an_hour);

    // A secret whose start is still ahead is not usable yet.
    let tomorrow = sb.now() + time::Duration::days(1);
    assert!(sb.add_secret(
        DEFAULT_CLIENT_ID,
        AppSecret::new("Fut8Q~future").starts_at(tomorrow)
    ));
    let (s, b) = token_response(
        &sb,
        DEFAULT_TENANT,
        DEFAULT_CLIENT_ID,
        "Fut8Q~future",
        GRAPH_SCOPE,
    )
    .await;
    assert_aad(s, &b, 401, "invalid_client", 7_000_215);
    sb.advance_clock(Duration::from_secs(25 * 3600));
    let (s, _) = token_response(
        &sb,
        DEFAULT_TENANT,
        DEFAULT_CLIENT_ID,
        "Fut8Q~future",
        GRAPH_SCOPE,
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn client_assertion_signed_with_the_fixture_key_gets_a_token() {
    let sb = Sandbox::start(world()).await.unwrap();
    for (alg, thumb) in [
        ("PS256", Thumb::S256),
        ("RS256", Thumb::S256),
        ("RS256", Thumb::Sha1),
    ] {
        let jwt = sign(alg, thumb, &claims(&sb, DEFAULT_CLIENT_ID));
        let (s, b) = assertion_token(&sb, Some(DEFAULT_CLIENT_ID), &jwt, &[]).await;
        assert_eq!(s, 200, "{alg}: {b}");
        assert_eq!(b["token_type"], "Bearer");

        // The token works on Graph.
        let g = Graph {
            http: http(),
            base: sb.url(),
            token: b["access_token"].as_str().unwrap().to_owned(),
            immutable: false,
        };
        let (s, a) = g
            .get(&format!(
                "/applications(appId='{DEFAULT_CLIENT_ID}')?$select=id"
            ))
            .await;
        assert_eq!(s, 200, "{a}");
    }
    // client_id may be left out: the assertion names the client.
    let jwt = sign("RS256", Thumb::S256, &claims(&sb, DEFAULT_CLIENT_ID));
    let (s, b) = assertion_token(&sb, None, &jwt, &[]).await;
    assert_eq!(s, 200, "{b}");
    // The tenant's domain in aud is the same token URL.
    let mut c = claims(&sb, DEFAULT_CLIENT_ID);
    c["aud"] = json!(format!("{}/contoso.com/oauth2/v2.0/token", sb.url()));
    let (s, b) = assertion_token(
        &sb,
        Some(DEFAULT_CLIENT_ID),
        &sign("PS256", Thumb::S256, &c),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    // Within the five minutes of skew.
    let mut c = claims(&sb, DEFAULT_CLIENT_ID);
    let now = sb.now().unix_timestamp();
    c["nbf"] = json!(now + 120);
    c["exp"] = json!(now - 120);
    let (s, b) = assertion_token(
        &sb,
        Some(DEFAULT_CLIENT_ID),
        &sign("PS256", Thumb::S256, &c),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn bad_client_assertions_get_the_documented_aadsts_codes() {
    let sb = Sandbox::start(world()).await.unwrap();
    let good = claims(&sb, DEFAULT_CLIENT_ID);
    let try_jwt = |jwt: String| {
        let sb = sb.clone();
        async move { assertion_token(&sb, Some(DEFAULT_CLIENT_ID), &jwt, &[]).await }
    };

    // Tampered: the payload changed after signing.
    let jwt = sign("RS256", Thumb::S256, &good);
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    let mut forged = good.clone();
    forged["exp"] = json!(good["exp"].as_i64().unwrap() + 3600);
    parts[1] = URL_SAFE_NO_PAD.encode(forged.to_string());
    let (s, b) = try_jwt(parts.join(".")).await;
    assert_aad(s, &b, 401, "invalid_client", 700_027);
    assert!(
        b["error_description"]
            .as_str()
            .unwrap()
            .contains("failed signature validation"),
        "{b}"
    );
    // A corrupted signature (a character well inside it, so it still decodes).
    let jwt = sign("PS256", Thumb::S256, &good);
    let at = jwt.len() - 20;
    let flipped = if &jwt[at..=at] == "A" { "B" } else { "A" };
    let jwt = format!("{}{flipped}{}", &jwt[..at], &jwt[at + 1..]);
    let (s, b) = try_jwt(jwt).await;
    assert_aad(s, &b, 401, "invalid_client", 700_027);

    // Wrong audience.
    let mut c = good.clone();
    c["aud"] = json!("https://login.microsoftonline.com/common/oauth2/v2.0/token");
    let (s, b) = try_jwt(sign("RS256", Thumb::S256, &c)).await;
    assert_aad(s, &b, 401, "invalid_client", 700_023);

    // Expired (beyond the skew), and not yet valid.
    let now = sb.now().unix_timestamp();
    let mut c = good.clone();
    c["nbf"] = json!(now - 1200);
    c["exp"] = json!(now - 600);
    let (s, b) = try_jwt(sign("RS256", Thumb::S256, &c)).await;
    assert_aad(s, &b, 401, "invalid_client", 700_024);
    assert!(
        b["error_description"]
            .as_str()
            .unwrap()
            .contains("Client assertion is not within its valid time range."),
        "{b}"
    );
    let mut c = good.clone();
    c["nbf"] = json!(now + 900);
    c["exp"] = json!(now + 1500);
    let (s, b) = try_jwt(sign("RS256", Thumb::S256, &c)).await;
    assert_aad(s, &b, 401, "invalid_client", 700_024);

    // A certificate the app does not have.
    assert!(sb.remove_certificate(
        DEFAULT_CLIENT_ID,
        &sb.application_certificates(DEFAULT_CLIENT_ID)[0].key_id
    ));
    let (s, b) = try_jwt(sign("RS256", Thumb::S256, &good)).await;
    assert_aad(s, &b, 401, "invalid_client", 700_027);
    assert!(
        b["error_description"]
            .as_str()
            .unwrap()
            .contains("The key was not found."),
        "{b}"
    );

    // Registered again, but its key credential has expired.
    let key_id = sb
        .add_certificate(DEFAULT_CLIENT_ID, TEST_CERT_PEM)
        .unwrap();
    let (s, _) = try_jwt(sign("RS256", Thumb::S256, &good)).await;
    assert_eq!(s, 200);
    assert!(sb.set_certificate_expiry(
        DEFAULT_CLIENT_ID,
        &key_id,
        sb.now() - time::Duration::minutes(1)
    ));
    let (s, b) = try_jwt(sign("RS256", Thumb::Sha1, &good)).await;
    assert_aad(s, &b, 401, "invalid_client", 700_027);
    assert!(
        b["error_description"]
            .as_str()
            .unwrap()
            .contains("The key used is expired."),
        "{b}"
    );
    let later = sb.now() + time::Duration::days(1);
    sb.add_app_certificate(
        DEFAULT_CLIENT_ID,
        AppCertificate::from_pem(TEST_CERT_PEM)
            .unwrap()
            .key_id(&key_id)
            .starts_at(later),
    )
    .unwrap();
    let (s, b) = try_jwt(sign("RS256", Thumb::S256, &good)).await;
    assert_aad(s, &b, 401, "invalid_client", 700_027);
    sb.advance_clock(Duration::from_secs(2 * 86_400));
    let (s, b) = try_jwt(sign("RS256", Thumb::S256, &claims(&sb, DEFAULT_CLIENT_ID))).await;
    assert_eq!(s, 200, "{b}");
    let good = claims(&sb, DEFAULT_CLIENT_ID);

    // The other documented refusals.
    let (s, b) = try_jwt(sign("HS256", Thumb::S256, &good)).await;
    assert_aad(s, &b, 401, "invalid_client", 5_002_738);
    let (s, b) = try_jwt(sign("RS256", Thumb::None, &good)).await;
    assert_aad(s, &b, 401, "invalid_client", 5_002_723);
    let mut c = good.clone();
    c["iss"] = json!(READER_ID);
    c["sub"] = json!(READER_ID);
    let (s, b) = try_jwt(sign("RS256", Thumb::S256, &c)).await;
    assert_aad(s, &b, 401, "invalid_client", 700_021);
    let mut c = good.clone();
    c["sub"] = json!(READER_ID);
    let (s, b) = try_jwt(sign("RS256", Thumb::S256, &c)).await;
    assert_aad(s, &b, 401, "invalid_client", 50_048);
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("jti");
    let (s, b) = try_jwt(sign("RS256", Thumb::S256, &c)).await;
    assert_aad(s, &b, 400, "invalid_request", 90_014);
    let (s, b) = try_jwt("not.a-jwt".to_owned()).await;
    assert_aad(s, &b, 400, "invalid_request", 50_027);

    let jwt = sign("RS256", Thumb::S256, &good);
    let (s, b) = assertion_token(
        &sb,
        Some(DEFAULT_CLIENT_ID),
        &jwt,
        &[("client_secret", DEFAULT_SECRET)],
    )
    .await;
    assert_aad(s, &b, 400, "invalid_request", 90_023);
    let r = http()
        .post(format!("{}/{DEFAULT_TENANT}/oauth2/v2.0/token", sb.url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", GRAPH_SCOPE),
            ("client_id", DEFAULT_CLIENT_ID),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
            ),
            ("client_assertion", &jwt),
        ])
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    let b: Value = r.json().await.unwrap();
    assert_aad(s, &b, 400, "invalid_request", 90_011);
}

#[tokio::test]
async fn send_mail_is_recorded() {
    let sb = Sandbox::start(world()).await.unwrap();
    let mailer = graph_as(&sb, MAILER_ID, MAILER_SECRET).await;
    let (s, e) = mailer
        .post(
            "/users/alerts@contoso.com/sendMail",
            json!({
                "message": {
                    "subject": "Mailroom: client secret expires in 14 days",
                    "body": { "contentType": "Text", "content": "Rotate the secret of app X." },
                    "toRecipients": [{ "emailAddress": { "address": "ops@contoso.com" } }],
                    "ccRecipients": [{ "emailAddress": { "name": "Sec", "address": "sec@contoso.com" } }],
                    "bccRecipients": [{ "emailAddress": { "address": "audit@contoso.com" } }],
                },
                "saveToSentItems": false,
            }),
        )
        .await;
    assert_eq!(s, 202, "{e}");
    let sent = sb.sent_mail();
    assert_eq!(sent.len(), 1);
    let m = &sent[0];
    assert_eq!(m.client_id, MAILER_ID);
    assert_eq!(m.from, "alerts@contoso.com");
    assert_eq!(m.to, ["ops@contoso.com"]);
    assert_eq!(m.cc, ["sec@contoso.com"]);
    assert_eq!(m.bcc, ["audit@contoso.com"]);
    assert_eq!(m.subject, "Mailroom: client secret expires in 14 days");
    assert_eq!(m.body, "Rotate the secret of app X.");
    assert_eq!(m.content_type, "Text");
    assert!(!m.saved_to_sent_items);
    assert!(
        sb.folder_messages("alerts@contoso.com", "Sent Items")
            .is_empty()
    );

    // Over the control API too.
    let list: Value = http()
        .get(format!("{}/_sandbox/sent-mail", sb.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list[0]["subject"],
        "Mailroom: client secret expires in 14 days"
    );
    assert_eq!(list[0]["savedToSentItems"], false);
    sb.clear_sent_mail();
    assert!(sb.sent_mail().is_empty());
}

#[tokio::test]
async fn control_api_manages_credentials() {
    let sb = Sandbox::start(World::default_test()).await.unwrap();
    let c = http();
    let base = format!("{}/_sandbox", sb.url());

    let r = c
        .post(format!("{base}/apps/{DEFAULT_CLIENT_ID}/certificates"))
        .json(&json!({ "pem": TEST_CERT_PEM, "displayName": "uploaded" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let key_id = r.json::<Value>().await.unwrap()["keyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let jwt = sign("PS256", Thumb::S256, &claims(&sb, DEFAULT_CLIENT_ID));
    let (s, b) = assertion_token(&sb, Some(DEFAULT_CLIENT_ID), &jwt, &[]).await;
    assert_eq!(s, 200, "{b}");

    let r = c
        .post(format!("{base}/password-propagation"))
        .json(&json!({ "seconds": 10 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = c
        .post(format!("{base}/apps/{DEFAULT_CLIENT_ID}/passwords"))
        .json(&json!({ "secretText": "New8Q~value", "displayName": "second" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["hint"], "New");
    let (s, _) = token_response(
        &sb,
        DEFAULT_TENANT,
        DEFAULT_CLIENT_ID,
        "New8Q~value",
        GRAPH_SCOPE,
    )
    .await;
    assert_eq!(s, 401);
    sb.advance_clock(Duration::from_secs(11));
    let (s, _) = token_response(
        &sb,
        DEFAULT_TENANT,
        DEFAULT_CLIENT_ID,
        "New8Q~value",
        GRAPH_SCOPE,
    )
    .await;
    assert_eq!(s, 200);

    let r = c
        .post(format!(
            "{base}/apps/{DEFAULT_CLIENT_ID}/passwords/{DEFAULT_SECRET_ID}/expiry"
        ))
        .json(&json!({ "endDateTime": "2020-01-01T00:00:00Z" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (s, _) = token_response(
        &sb,
        DEFAULT_TENANT,
        DEFAULT_CLIENT_ID,
        DEFAULT_SECRET,
        GRAPH_SCOPE,
    )
    .await;
    assert_eq!(s, 401);

    let app: Value = c
        .get(format!("{base}/apps/{DEFAULT_CLIENT_ID}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(app["objectId"], DEFAULT_APP_OBJECT_ID);
    assert_eq!(app["passwords"].as_array().unwrap().len(), 2);
    assert_eq!(app["certificates"][0]["keyId"], key_id.as_str());
    assert_eq!(app["certificates"][0]["displayName"], "uploaded");
    assert!(app["passwords"][0].get("secretText").is_none());

    let r = c
        .delete(format!(
            "{base}/apps/{DEFAULT_CLIENT_ID}/certificates/{key_id}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(sb.application_certificates(DEFAULT_CLIENT_ID).is_empty());
    let r = c
        .post(format!("{base}/apps/{DEFAULT_CLIENT_ID}/certificates"))
        .json(&json!({ "pem": "garbage" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}
