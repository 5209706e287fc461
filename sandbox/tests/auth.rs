//! Token endpoint errors, bearer validation, mailbox scope and permissions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{GRAPH_SCOPE, Graph, code, enc, message, token, token_response};
use graph_sandbox::{
    App, AppSecret, DEFAULT_CLIENT_ID, DEFAULT_SECRET, DEFAULT_SECRET_ID, DEFAULT_TENANT, Mailbox,
    Sandbox, Tenant, World,
};
use serde_json::{Value, json};
use time::OffsetDateTime;

fn assert_aad(body: &Value, error: &str, code: u64) {
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")),
        "{description}"
    );
    assert!(description.contains("Trace ID: ") && description.contains("Correlation ID: "));
    for field in ["timestamp", "trace_id", "correlation_id"] {
        assert!(
            body[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}"
        );
    }
    assert_eq!(
        body["error_uri"],
        format!("https://login.microsoftonline.com/error?code={code}")
    );
}

#[tokio::test]
async fn token_endpoint_answers_each_documented_error() {
    let soon = OffsetDateTime::now_utc() + time::Duration::hours(1);
    let world = World::default_test().tenant(
        Tenant::new("0b3f1e2d-1111-4a4a-9b9b-222233334444")
            .domain("fabrikam.com")
            .app(
                App::new("aaaaaaaa-0000-4000-8000-000000000001")
                    .secret(AppSecret::new("short~lived.secret").expires_at(soon)),
            ),
    );
    let sb = Sandbox::start(world).await.unwrap();

    let (s, b) = token_response(
        &sb,
        "no-such-tenant.com",
        DEFAULT_CLIENT_ID,
        DEFAULT_SECRET,
        GRAPH_SCOPE,
    )
    .await;
    assert_eq!(s, 400);
    assert_aad(&b, "invalid_tenant", 90002);

    let (s, b) = token_response(
        &sb,
        DEFAULT_TENANT,
        "aaaaaaaa-0000-4000-8000-000000000001",
        DEFAULT_SECRET,
        GRAPH_SCOPE,
    )
    .await;
    assert_eq!(s, 400);
    assert_aad(&b, "unauthorized_client", 700016);

    let (s, b) = token_response(&sb, DEFAULT_TENANT, DEFAULT_CLIENT_ID, "wrong", GRAPH_SCOPE).await;
    assert_eq!(s, 401);
    assert_aad(&b, "invalid_client", 7000215);
    assert!(b["error_description"].as_str().unwrap().contains(
        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID"
    ));

    // The secret's key id pasted instead of its value (docs/graph.md section 11).
    let (s, b) = token_response(
        &sb,
        DEFAULT_TENANT,
        DEFAULT_CLIENT_ID,
        DEFAULT_SECRET_ID,
        GRAPH_SCOPE,
    )
    .await;
    assert_eq!(s, 401);
    assert_aad(&b, "invalid_client", 7000215);

    let (s, b) = token_response(
        &sb,
        "contoso.com",
        DEFAULT_CLIENT_ID,
        DEFAULT_SECRET,
        "https://graph.microsoft.com/Mail.Read",
    )
    .await;
    assert_eq!(s, 400);
    assert_aad(&b, "invalid_scope", 70011);

    // By domain, success; a second app's secret expires once the clock passes it.
    let (s, b) = token_response(
        &sb,
        "FABRIKAM.com",
        "aaaaaaaa-0000-4000-8000-000000000001",
        "short~lived.secret",
        GRAPH_SCOPE,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["expires_in"], 3599);
    assert_eq!(b["ext_expires_in"], 3599);
    assert!(b["access_token"].as_str().unwrap().len() > 100);

    sb.advance_clock(Duration::from_secs(2 * 3600));
    let (s, b) = token_response(
        &sb,
        "fabrikam.com",
        "aaaaaaaa-0000-4000-8000-000000000001",
        "short~lived.secret",
        GRAPH_SCOPE,
    )
    .await;
    assert_eq!(s, 401);
    assert_aad(&b, "invalid_client", 7000222);
    assert!(b["error_description"].as_str().unwrap().contains(
        "The provided client secret keys for app 'aaaaaaaa-0000-4000-8000-000000000001' are expired"
    ));

    assert_eq!(sb.token_requests(), 7);
    let logged = sb.requests();
    assert_eq!(logged.len(), 7);
    assert!(
        logged
            .iter()
            .all(|r| r.path.ends_with("/oauth2/v2.0/token"))
    );
}

#[tokio::test]
async fn correlation_id_echoes_client_request_id_and_basic_auth_works() {
    let sb = Sandbox::start(World::default_test()).await.unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/{}/oauth2/v2.0/token", sb.url(), DEFAULT_TENANT))
        .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_SECRET))
        .header("client-request-id", "11111111-2222-3333-4444-555555555555")
        .form(&[("grant_type", "client_credentials"), ("scope", GRAPH_SCOPE)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::Client::new()
        .post(format!("{}/{}/oauth2/v2.0/token", sb.url(), DEFAULT_TENANT))
        .header("client-request-id", "11111111-2222-3333-4444-555555555555")
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("scope", GRAPH_SCOPE),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["correlation_id"], "11111111-2222-3333-4444-555555555555");
    assert_eq!(b["error_codes"], json!([7000218]));
}

#[tokio::test]
async fn graph_rejects_missing_unknown_and_expired_tokens() {
    let world = World::default_test().mailbox(DEFAULT_TENANT, Mailbox::new("a@contoso.com"));
    let sb = Sandbox::start(world).await.unwrap();
    sb.set_token_lifetime(60);
    let url = format!("{}/v1.0/users/a@contoso.com/mailFolders/inbox", sb.url());
    let http = reqwest::Client::new();

    let r = http
        .get(&url)
        .header("client-request-id", "c0ffee00-0000-4000-8000-000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["client-request-id"],
        "c0ffee00-0000-4000-8000-000000000000"
    );
    let request_id = r.headers()["request-id"].to_str().unwrap().to_owned();
    assert!(r.headers().contains_key("www-authenticate"));
    let b: Value = r.json().await.unwrap();
    assert_eq!(code(&b), "InvalidAuthenticationToken");
    assert_eq!(
        b["error"]["innerError"]["client-request-id"],
        "c0ffee00-0000-4000-8000-000000000000"
    );
    assert_eq!(b["error"]["innerError"]["request-id"], request_id.as_str());
    assert!(b["error"]["innerError"]["date"].as_str().is_some());

    let r = http
        .get(&url)
        .bearer_auth("eyJ0.eyJ1.c2ln")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let t = token(&sb).await;
    let r = http.get(&url).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), 200);
    sb.advance_clock(Duration::from_secs(61));
    let r = http.get(&url).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let b: Value = r.json().await.unwrap();
    assert_eq!(code(&b), "InvalidAuthenticationToken");
    assert!(message(&b).contains("expired"));
}

#[tokio::test]
async fn scope_permissions_and_unknown_users() {
    let world = World::default_test()
        .mailbox(
            DEFAULT_TENANT,
            Mailbox::new("a@contoso.com").messages("Inbox", 1),
        )
        .mailbox(DEFAULT_TENANT, Mailbox::new("b@contoso.com"));
    let sb = Sandbox::start(world).await.unwrap();
    let g = Graph::new(&sb, false).await;

    let (s, b) = g.get("/users/nobody@contoso.com/mailFolders/inbox").await;
    assert_eq!((s, code(&b)), (404, "ErrorInvalidUser"));
    assert_eq!(
        message(&b),
        "The requested user 'nobody@contoso.com' is invalid."
    );

    // Addresses are case-insensitive.
    let (s, _) = g.get("/users/A@Contoso.COM/mailFolders/inbox").await;
    assert_eq!(s, 200);

    sb.set_app_scope(DEFAULT_CLIENT_ID, Some(&["a@contoso.com"]));
    let (s, b) = g.get("/users/b@contoso.com/mailFolders/inbox").await;
    assert_eq!((s, code(&b)), (403, "ErrorAccessDenied"));
    assert_eq!(message(&b), "Access to OData is disabled.");
    let (s, _) = g.get("/users/a@contoso.com/mailFolders/inbox").await;
    assert_eq!(s, 200);
    sb.set_app_scope(DEFAULT_CLIENT_ID, None);

    sb.set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.Read"]);
    let id = sb.messages("a@contoso.com")[0].rest_id.clone();
    let (s, _) = g
        .get(&format!("/users/a@contoso.com/messages/{}", enc(&id)))
        .await;
    assert_eq!(s, 200);
    let (s, b) = g
        .post(
            &format!("/users/a@contoso.com/messages/{}/move", enc(&id)),
            json!({"destinationId": "archive"}),
        )
        .await;
    assert_eq!((s, code(&b)), (403, "ErrorAccessDenied"));
    assert_eq!(
        message(&b),
        "Access is denied. Check credentials and try again."
    );
    let (s, _) = g
        .patch(
            &format!("/users/a@contoso.com/messages/{}", enc(&id)),
            json!({"isRead": true}),
        )
        .await;
    assert_eq!(s, 403);
    assert_eq!(
        g.delete(&format!("/users/a@contoso.com/messages/{}", enc(&id)))
            .await,
        403
    );

    sb.set_app_permissions(DEFAULT_CLIENT_ID, &["Mail.Send"]);
    let (s, _) = g.get("/users/a@contoso.com/mailFolders/inbox").await;
    assert_eq!(s, 403);

    // A Mail.Send-only app can send (saved to Sent Items).
    let (s, _) = g
        .post(
            "/users/a@contoso.com/sendMail",
            json!({"message": {"subject": "Alert", "body": {"contentType": "text", "content": "hi"},
                   "toRecipients": [{"emailAddress": {"address": "ops@contoso.com"}}]}}),
        )
        .await;
    assert_eq!(s, 202);
    assert_eq!(sb.folder_messages("a@contoso.com", "Sent Items").len(), 1);
}
