//! Delegated access (docs/graph.md section 13): the authorization code grant with PKCE, the
//! device code grant, refresh tokens and their documented errors, and Graph requests made with
//! a user's token (own mailbox, shared mailboxes and folders, subscriptions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Graph, http};
use graph_sandbox::{
    App, AppSecret, DEFAULT_CLIENT_ID, DEFAULT_SECRET, DEFAULT_TENANT, FolderAccess, Interaction,
    InteractiveOutcome, Mailbox, NewMessage, Sandbox, World,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const ALICE: &str = "alice@contoso.com";
const BOB: &str = "bob@contoso.com";
const CAROL: &str = "carol@contoso.com";
const SHARED: &str = "support@contoso.com";
/// The loopback redirect a native client listens on; the default app registers
/// `http://localhost` and Entra ignores the port.
const REDIRECT: &str = "http://localhost:53123";
const SCOPE: &str = "https://graph.microsoft.com/Mail.ReadWrite https://graph.microsoft.com/Mail.ReadWrite.Shared https://graph.microsoft.com/User.Read offline_access openid profile";
/// A confidential web app of the default tenant.
const WEB_APP: &str = "7d1e2f3a-4b5c-4d6e-8f90-a1b2c3d4e5f6";
const WEB_SECRET: &str = "Web~Secret.For.Delegated.Tests.0123456789";
const WEB_REDIRECT: &str = "https://mailroom.contoso.com/auth/callback";

fn world() -> World {
    World::default_test()
        .mailbox(
            DEFAULT_TENANT,
            Mailbox::new(ALICE)
                .message("Inbox", NewMessage::new("Alice's own"))
                .message("Archive", NewMessage::new("Alice archived")),
        )
        .mailbox(
            DEFAULT_TENANT,
            Mailbox::new(BOB)
                .message("Inbox", NewMessage::new("Bob's inbox"))
                .message("Archive", NewMessage::new("Bob archived"))
                .folder_shared_with("Inbox", ALICE, FolderAccess::Read),
        )
        .mailbox(
            DEFAULT_TENANT,
            Mailbox::new(SHARED)
                .shared()
                .message("Inbox", NewMessage::new("Ticket 1"))
                .shared_with(ALICE),
        )
        .mailbox(DEFAULT_TENANT, Mailbox::new(CAROL))
        .app(
            DEFAULT_TENANT,
            App::new(WEB_APP)
                .secret(AppSecret::new(WEB_SECRET))
                .redirect_uri(WEB_REDIRECT)
                .delegated_permissions(&["Mail.Read", "User.Read", "offline_access", "openid"]),
        )
}

async fn start() -> Sandbox {
    Sandbox::start(world()).await.unwrap()
}

/// Parameters added to (or, empty, removed from) an authorize request.
type Params<'a> = Vec<(&'a str, &'a str)>;

/// RFC 7636: a verifier and its S256 challenge.
fn pkce() -> (String, String) {
    let mut bytes = [0u8; 32];
    fastrand::fill(&mut bytes);
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `GET /authorize` with the usual parameters overridden by `extra` (an empty value removes
/// one); returns the status and the `Location` (or the body, for an error page).
async fn authorize(sb: &Sandbox, challenge: &str, extra: &[(&str, &str)]) -> (u16, String) {
    let mut params: Vec<(String, String)> = [
        ("client_id", DEFAULT_CLIENT_ID),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("response_mode", "query"),
        ("scope", SCOPE),
        ("state", "st-123"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (k, v) in extra {
        params.retain(|(pk, _)| pk != k);
        if !v.is_empty() {
            params.push(((*k).to_owned(), (*v).to_owned()));
        }
    }
    let mut url = url::Url::parse(&format!(
        "{}/{DEFAULT_TENANT}/oauth2/v2.0/authorize",
        sb.url()
    ))
    .unwrap();
    url.query_pairs_mut().extend_pairs(params.iter());
    let r = no_redirects().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    match r.headers().get("location") {
        Some(l) => (status, l.to_str().unwrap().to_owned()),
        None => (status, r.text().await.unwrap()),
    }
}

/// The query (or fragment) parameters of a redirect.
fn params_of(location: &str) -> Vec<(String, String)> {
    let url = url::Url::parse(location).unwrap();
    let raw = url
        .fragment()
        .map_or_else(|| url.query().unwrap_or_default().to_owned(), str::to_owned);
    url::form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// An authorization code for `user` (as the person at the browser).
async fn code_for(sb: &Sandbox, user: &str, challenge: &str) -> String {
    sb.set_interactive_user(Some(user));
    let (status, location) = authorize(sb, challenge, &[]).await;
    assert_eq!(status, 302, "{location}");
    let p = params_of(&location);
    assert_eq!(param(&p, "state"), Some("st-123"), "{location}");
    param(&p, "code")
        .unwrap_or_else(|| panic!("no code: {location}"))
        .to_owned()
}

async fn token(sb: &Sandbox, form: &[(&str, &str)]) -> (u16, Value) {
    let r = http()
        .post(format!("{}/{DEFAULT_TENANT}/oauth2/v2.0/token", sb.url()))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn token_owned(sb: &Sandbox, form: &[(String, String)]) -> (u16, Value) {
    let r = http()
        .post(format!("{}/{DEFAULT_TENANT}/oauth2/v2.0/token", sb.url()))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn redeem_code(sb: &Sandbox, code: &str, verifier: &str) -> (u16, Value) {
    token(
        sb,
        &[
            ("client_id", DEFAULT_CLIENT_ID),
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
            ("scope", SCOPE),
        ],
    )
    .await
}

/// Signs `user` in with the authorization code grant and returns the token response.
async fn sign_in(sb: &Sandbox, user: &str) -> Value {
    let (verifier, challenge) = pkce();
    let code = code_for(sb, user, &challenge).await;
    let (status, body) = redeem_code(sb, &code, &verifier).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn refresh(sb: &Sandbox, refresh_token: &str) -> (u16, Value) {
    token(
        sb,
        &[
            ("client_id", DEFAULT_CLIENT_ID),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

fn graph_with(sb: &Sandbox, access_token: &str) -> Graph {
    Graph {
        http: http(),
        base: sb.url(),
        token: access_token.to_owned(),
        immutable: true,
    }
}

fn assert_aad(body: &Value, error: &str, code: u64) {
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with(&format!("AADSTS{code}: ")),
        "{body}"
    );
}

/// An error redirect: `error`, the AADSTS code in `error_description`, and the `state`.
fn assert_redirect_error(location: &str, error: &str, code: u32) {
    assert!(
        location.starts_with("http://localhost:53123/"),
        "{location}"
    );
    let p = params_of(location);
    assert_eq!(param(&p, "error"), Some(error), "{location}");
    assert!(
        param(&p, "error_description")
            .unwrap()
            .starts_with(&format!("AADSTS{code}: ")),
        "{location}"
    );
    assert_eq!(param(&p, "state"), Some("st-123"), "{location}");
    assert!(param(&p, "code").is_none());
}

#[tokio::test]
async fn authorization_code_with_pkce_on_a_loopback_port_signs_the_user_in() {
    let sb = start().await;
    let (verifier, challenge) = pkce();
    let code = code_for(&sb, ALICE, &challenge).await;

    // The port is ignored for loopback redirect URIs; the answer keeps the one requested.
    let (status, body) = redeem_code(&sb, &code, &verifier).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert!(body["access_token"].as_str().unwrap().split('.').count() == 3);
    assert!(body["refresh_token"].as_str().unwrap().len() > 100);
    let scope: Vec<&str> = body["scope"].as_str().unwrap().split(' ').collect();
    assert!(scope.contains(&"Mail.ReadWrite") && scope.contains(&"Mail.ReadWrite.Shared"));
    assert!(scope.contains(&"openid") && !scope.contains(&"offline_access"));

    // The ID token names the user (decodable, not verifiable).
    let id = body["id_token"].as_str().unwrap();
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(id.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["preferred_username"], ALICE);
    assert_eq!(claims["aud"], DEFAULT_CLIENT_ID);
    assert_eq!(claims["tid"], DEFAULT_TENANT);

    // A code is single-use.
    let (status, body) = redeem_code(&sb, &code, &verifier).await;
    assert_eq!(status, 400);
    assert_aad(&body, "invalid_grant", 54005);

    let g = graph_with(&sb, body_token(&sb, ALICE).await.as_str());
    let (s, me) = g.get("/me").await;
    assert_eq!((s, me["mail"].as_str()), (200, Some(ALICE)), "{me}");
    let (s, inbox) = g.get("/me/mailFolders/inbox/messages").await;
    assert_eq!(s, 200, "{inbox}");
    assert_eq!(inbox["value"][0]["subject"], "Alice's own");

    let stats = sb.delegated_stats();
    assert_eq!(stats.authorization_codes_issued, 2);
    assert_eq!(stats.authorization_codes_redeemed, 2);
    assert_eq!(sb.refresh_tokens_issued(), 2);
}

/// A fresh access token for `user`.
async fn body_token(sb: &Sandbox, user: &str) -> String {
    sign_in(sb, user).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_signed_in_user_is_the_login_hint_else_the_person_at_the_browser() {
    let sb = start().await;
    let (_, challenge) = pkce();

    // Nobody at the browser.
    let (status, location) = authorize(&sb, &challenge, &[]).await;
    assert_eq!(status, 302);
    assert_redirect_error(&location, "login_required", 50058);

    sb.set_interactive_user(Some(ALICE));
    let (verifier, challenge) = pkce();
    let (_, location) = authorize(&sb, &challenge, &[("login_hint", BOB)]).await;
    let code = param(&params_of(&location), "code").unwrap().to_owned();
    let (_, body) = redeem_code(&sb, &code, &verifier).await;
    let (_, me) = graph_with(&sb, body["access_token"].as_str().unwrap())
        .get("/me")
        .await;
    assert_eq!(me["mail"], BOB);

    // A hint naming nobody falls back to the person at the browser; a shared mailbox cannot
    // sign in (its account is disabled).
    for hint in ["nobody@contoso.com", SHARED] {
        let (verifier, challenge) = pkce();
        let (_, location) = authorize(&sb, &challenge, &[("login_hint", hint)]).await;
        let code = param(&params_of(&location), "code").unwrap().to_owned();
        let (_, body) = redeem_code(&sb, &code, &verifier).await;
        let (_, me) = graph_with(&sb, body["access_token"].as_str().unwrap())
            .get("/me")
            .await;
        assert_eq!(me["mail"], ALICE);
    }
}

#[tokio::test]
async fn authorize_refuses_unknown_clients_and_redirect_uris_on_its_own_page() {
    let sb = start().await;
    sb.set_interactive_user(Some(ALICE));
    let (_, challenge) = pkce();

    let (status, page) = authorize(
        &sb,
        &challenge,
        &[("client_id", "00000000-0000-4000-8000-00000000dead")],
    )
    .await;
    assert_eq!(status, 400);
    assert!(page.contains("AADSTS700016"), "{page}");

    for bad in [
        "http://localhost:53123/elsewhere",
        "https://evil.example.com/",
        "http://[::1]:53123",
    ] {
        let (status, page) = authorize(&sb, &challenge, &[("redirect_uri", bad)]).await;
        assert_eq!(status, 400, "{bad}");
        assert!(page.contains("AADSTS50011"), "{page}");
    }
    let (status, page) = authorize(&sb, &challenge, &[("redirect_uri", "")]).await;
    assert_eq!(status, 400);
    assert!(page.contains("AADSTS900971"), "{page}");

    // Any port on either loopback name, with or without the trailing slash.
    for ok in [
        "http://127.0.0.1:61000",
        "http://localhost:1/",
        "http://localhost",
    ] {
        let (status, location) = authorize(&sb, &challenge, &[("redirect_uri", ok)]).await;
        assert_eq!(status, 302, "{ok}");
        assert!(param(&params_of(&location), "code").is_some(), "{location}");
    }
    assert!(sb.requests().iter().any(|r| r.path.ends_with("/authorize")));
}

#[tokio::test]
async fn authorize_errors_go_back_to_the_app_with_the_state() {
    let sb = start().await;
    sb.set_interactive_user(Some(ALICE));
    let (_, challenge) = pkce();

    let cases: Vec<(Params, &str, u32)> = vec![
        (
            vec![(
                "scope",
                "https://graph.microsoft.com/Mail.Nope offline_access",
            )],
            "invalid_scope",
            70011,
        ),
        (
            vec![("scope", "https://outlook.office.com/Mail.Read")],
            "invalid_scope",
            70011,
        ),
        // A real permission the registration does not configure.
        (
            vec![("scope", "https://graph.microsoft.com/Mail.Send.Shared")],
            "invalid_scope",
            70011,
        ),
        (vec![("scope", "")], "invalid_request", 900144),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
            70005,
        ),
        (
            vec![("code_challenge_method", "S512")],
            "invalid_request",
            50149,
        ),
        (
            vec![("code_challenge", "too-short")],
            "invalid_request",
            501491,
        ),
    ];
    for (extra, error, code) in cases {
        let (status, location) = authorize(&sb, &challenge, &extra).await;
        assert_eq!(status, 302, "{extra:?}");
        assert_redirect_error(&location, error, code);
    }

    sb.set_interactive_outcome(InteractiveOutcome::Cancel);
    let (_, location) = authorize(&sb, &challenge, &[]).await;
    assert_redirect_error(&location, "access_denied", 65004);

    // The user is asked to consent and may not.
    sb.set_interactive_outcome(InteractiveOutcome::ConsentRequired);
    let (_, location) = authorize(&sb, &challenge, &[]).await;
    assert_redirect_error(&location, "consent_required", 65001);
    // Silently, consent cannot be asked for at all.
    sb.set_interactive_outcome(InteractiveOutcome::Approve);
    let (_, location) = authorize(&sb, &challenge, &[("prompt", "none")]).await;
    assert_redirect_error(&location, "consent_required", 65001);

    // Once consented, neither asks again.
    let (_, location) = authorize(&sb, &challenge, &[]).await;
    assert!(param(&params_of(&location), "code").is_some());
    sb.set_interactive_outcome(InteractiveOutcome::ConsentRequired);
    let (_, location) = authorize(&sb, &challenge, &[("prompt", "none")]).await;
    assert!(param(&params_of(&location), "code").is_some(), "{location}");
    let (_, location) = authorize(&sb, &challenge, &[]).await;
    assert!(param(&params_of(&location), "code").is_some(), "{location}");
    // prompt=consent asks anyway.
    let (_, location) = authorize(&sb, &challenge, &[("prompt", "consent")]).await;
    assert_redirect_error(&location, "consent_required", 65001);

    // response_mode=fragment answers in the fragment.
    sb.set_interactive_outcome(InteractiveOutcome::Approve);
    let (_, location) = authorize(&sb, &challenge, &[("response_mode", "fragment")]).await;
    let url = url::Url::parse(&location).unwrap();
    assert!(url.query().is_none() && url.fragment().unwrap().contains("code="));
}

#[tokio::test]
async fn code_redemption_checks_verifier_expiry_redirect_and_client_type() {
    let sb = start().await;
    let (verifier, challenge) = pkce();
    let code = code_for(&sb, ALICE, &challenge).await;

    let (s, b) = redeem_code(
        &sb,
        &code,
        "a-wrong-verifier-of-sufficient-length-0123456789",
    )
    .await;
    assert_eq!(s, 400);
    assert_aad(&b, "invalid_grant", 501481);
    let base = [
        ("client_id", DEFAULT_CLIENT_ID),
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
    ];
    let with = |extra: &[(&'static str, &str)]| -> Vec<(String, String)> {
        base.iter()
            .chain(extra.iter())
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let (s, b) = token_owned(&sb, &with(&[("redirect_uri", REDIRECT)])).await;
    assert_eq!(s, 400);
    assert_aad(&b, "invalid_request", 900144);

    let (s, b) = token_owned(
        &sb,
        &with(&[
            ("redirect_uri", "http://localhost:9999"),
            ("code_verifier", &verifier),
        ]),
    )
    .await;
    assert_eq!(s, 400);
    assert_aad(&b, "invalid_grant", 50011);

    // A public client sends no secret.
    let (s, b) = token_owned(
        &sb,
        &with(&[
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
            ("client_secret", DEFAULT_SECRET),
        ]),
    )
    .await;
    assert_eq!(s, 401);
    assert_aad(&b, "invalid_client", 700025);

    let (s, b) = redeem_code(&sb, "1.AnUnknownCode", &verifier).await;
    assert_eq!(s, 400);
    assert_aad(&b, "invalid_grant", 9002313);

    // Failed attempts did not spend the code; about ten minutes later it has expired.
    sb.advance_clock(Duration::from_secs(601));
    let (s, b) = redeem_code(&sb, &code, &verifier).await;
    assert_eq!(s, 400);
    assert_aad(&b, "invalid_grant", 70008);

    let (verifier, challenge) = pkce();
    let code = code_for(&sb, ALICE, &challenge).await;
    let (s, b) = redeem_code(&sb, &code, &verifier).await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn a_confidential_web_app_redeems_with_its_secret() {
    let sb = start().await;
    sb.set_interactive_user(Some(ALICE));
    let (verifier, challenge) = pkce();
    let (status, location) = authorize(
        &sb,
        &challenge,
        &[
            ("client_id", WEB_APP),
            ("redirect_uri", WEB_REDIRECT),
            ("scope", "Mail.Read offline_access"),
        ],
    )
    .await;
    assert_eq!(status, 302);
    assert!(location.starts_with(WEB_REDIRECT), "{location}");
    let code = param(&params_of(&location), "code").unwrap().to_owned();
    let mut form = vec![
        ("client_id", WEB_APP),
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", WEB_REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let (s, b) = token(&sb, &form).await;
    assert_eq!(s, 401);
    assert_aad(&b, "invalid_client", 7000218);
    form.push(("client_secret", "wrong"));
    let (s, b) = token(&sb, &form).await;
    assert_eq!(s, 401);
    assert_aad(&b, "invalid_client", 7000215);
    form.pop();
    form.push(("client_secret", WEB_SECRET));
    let (s, b) = token(&sb, &form).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["scope"], "Mail.Read");
    assert!(b.get("id_token").is_none());

    // Its refresh token also needs the secret; another app cannot redeem it.
    let rt = b["refresh_token"].as_str().unwrap();
    let (s, b) = refresh(&sb, rt).await;
    assert_eq!(s, 400);
    assert_aad(&b, "invalid_grant", 70000);
    let mut form = vec![
        ("client_id", WEB_APP),
        ("grant_type", "refresh_token"),
        ("refresh_token", rt),
    ];
    let (s, b) = token(&sb, &form).await;
    assert_eq!(s, 401);
    assert_aad(&b, "invalid_client", 7000218);
    form.push(("client_secret", WEB_SECRET));
    let (s, b) = token(&sb, &form).await;
    assert_eq!(s, 200, "{b}");

    // Its token reads Alice's mail but may not change it (Mail.Read only).
    let g = graph_with(&sb, b["access_token"].as_str().unwrap());
    let (s, list) = g.get("/me/messages").await;
    assert_eq!(s, 200, "{list}");
    let id = list["value"][0]["id"].as_str().unwrap().to_owned();
    let (s, b) = g
        .patch(
            &format!("/me/messages/{}", common::enc(&id)),
            json!({"isRead": true}),
        )
        .await;
    assert_eq!((s, common::code(&b)), (403, "ErrorAccessDenied"));
}

#[tokio::test]
async fn refresh_rotates_and_old_tokens_stay_valid_unless_reuse_is_refused() {
    let sb = start().await;
    let first = sign_in(&sb, ALICE).await;
    let rt1 = first["refresh_token"].as_str().unwrap().to_owned();

    let (s, b) = refresh(&sb, &rt1).await;
    assert_eq!(s, 200, "{b}");
    let rt2 = b["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    assert_ne!(b["access_token"], first["access_token"]);
    assert_eq!(b["scope"], first["scope"]);
    let (s, _) = graph_with(&sb, b["access_token"].as_str().unwrap())
        .get("/me/mailFolders/inbox")
        .await;
    assert_eq!(s, 200);

    // Entra does not revoke a redeemed refresh token: by default neither does the sandbox,
    // but it counts the reuse.
    let (s, b) = refresh(&sb, &rt1).await;
    assert_eq!(s, 200, "{b}");
    let stats = sb.delegated_stats();
    assert_eq!(stats.refresh_redemptions, 2);
    assert_eq!(stats.refresh_token_reuses, 1);

    sb.set_refresh_token_reuse(false);
    let (s, b) = refresh(&sb, &rt2).await;
    assert_eq!(s, 200, "{b}");
    let rt3 = b["refresh_token"].as_str().unwrap().to_owned();
    let (s, b) = refresh(&sb, &rt2).await;
    assert_eq!(s, 400);
    assert_aad(&b, "invalid_grant", 70000);
    let (s, b) = refresh(&sb, &rt3).await;
    assert_eq!(s, 200);
    assert_eq!(sb.refresh_redemptions(), 4);
    assert_eq!(sb.delegated_stats().refresh_token_reuses, 2);
    let rt4 = b["refresh_token"].as_str().unwrap().to_owned();

    // A scope never consented to is refused; a narrower one is fine (and the token still
    // carries every consented permission).
    let with_scope = |rt: &str, scope: &str| {
        vec![
            ("client_id", DEFAULT_CLIENT_ID.to_owned()),
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", rt.to_owned()),
            ("scope", scope.to_owned()),
        ]
    };
    let form: Vec<(String, String)> = with_scope(&rt4, "https://graph.microsoft.com/Mail.Send")
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let (s, b) = token_owned(&sb, &form).await;
    assert_eq!(s, 400);
    assert_aad(&b, "invalid_grant", 65001);
    let form: Vec<(String, String)> =
        with_scope(&rt4, "https://graph.microsoft.com/Mail.ReadWrite")
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
    let (s, b) = token_owned(&sb, &form).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["scope"], first["scope"]);
}

#[tokio::test]
async fn no_refresh_token_without_offline_access() {
    let sb = start().await;
    sb.set_interactive_user(Some(ALICE));
    let (verifier, challenge) = pkce();
    let scope = "https://graph.microsoft.com/Mail.Read";
    let (_, location) = authorize(&sb, &challenge, &[("scope", scope)]).await;
    let code = param(&params_of(&location), "code").unwrap().to_owned();
    let (s, b) = token(
        &sb,
        &[
            ("client_id", DEFAULT_CLIENT_ID),
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(b.get("refresh_token").is_none() && b.get("id_token").is_none());
    assert_eq!(b["scope"], "Mail.Read");
    assert_eq!(sb.refresh_tokens_issued(), 0);
}

#[tokio::test]
async fn refresh_tokens_expire_after_inactivity_on_the_sandbox_clock() {
    let sb = start().await;
    sb.set_refresh_token_inactivity(Duration::from_secs(3600));
    let rt = sign_in(&sb, ALICE).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Each redemption's new token starts its own inactivity period.
    sb.advance_clock(Duration::from_secs(3000));
    let (s, b) = refresh(&sb, &rt).await;
    assert_eq!(s, 200, "{b}");
    let rt2 = b["refresh_token"].as_str().unwrap().to_owned();
    sb.advance_clock(Duration::from_secs(3000));
    let (s, b) = refresh(&sb, &rt2).await;
    assert_eq!(s, 200, "{b}");
    let rt3 = b["refresh_token"].as_str().unwrap().to_owned();
    sb.advance_clock(Duration::from_secs(3601));
    let (s, b) = refresh(&sb, &rt3).await;
    assert_eq!(s, 400);
    assert_aad(&b, "invalid_grant", 700082);
    assert_eq!(b["suberror"], "bad_token");
    assert!(
        b["error_description"]
            .as_str()
            .unwrap()
            .contains("was inactive for 0.01:00:00"),
        "{b}"
    );
}

#[tokio::test]
async fn revocation_consent_and_interaction_fail_refresh_with_their_codes() {
    let sb = start().await;
    let rt = sign_in(&sb, ALICE).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // The access token in hand keeps working until it expires.
    let at = body_token(&sb, ALICE).await;

    assert!(sb.revoke_refresh_tokens(ALICE));
    let (s, b) = refresh(&sb, &rt).await;
    assert_eq!(s, 400);
    assert_aad(&b, "invalid_grant", 50173);
    let (s, _) = graph_with(&sb, &at).get("/me/mailFolders/inbox").await;
    assert_eq!(s, 200);
    // Signing in again after the revocation works.
    sb.advance_clock(Duration::from_secs(1));
    let rt = sign_in(&sb, ALICE).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, b) = refresh(&sb, &rt).await;
    assert_eq!(s, 200, "{b}");

    sb.advance_clock(Duration::from_secs(1));
    assert!(sb.require_interaction(ALICE, Some(Interaction::Mfa)));
    let (s, b) = refresh(&sb, &rt).await;
    assert_eq!(s, 400);
    assert_aad(&b, "invalid_grant", 50076);
    assert_eq!(b["suberror"], "basic_action");
    // Silent sign-in cannot satisfy it; an interactive one does.
    let (_, challenge) = pkce();
    let (_, location) = authorize(&sb, &challenge, &[("prompt", "none")]).await;
    assert_redirect_error(&location, "interaction_required", 50076);
    sb.advance_clock(Duration::from_secs(1));
    let rt = sign_in(&sb, ALICE).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = refresh(&sb, &rt).await;
    assert_eq!(s, 200);

    assert!(sb.require_interaction(ALICE, Some(Interaction::Blocked)));
    let (s, b) = refresh(&sb, &rt).await;
    assert_aad(&b, "invalid_grant", 53003);
    assert_eq!(s, 400);
    let (_, challenge) = pkce();
    let (_, location) = authorize(&sb, &challenge, &[]).await;
    assert_redirect_error(&location, "access_denied", 53003);
    assert!(sb.require_interaction(ALICE, None));

    assert!(sb.withdraw_consent(DEFAULT_CLIENT_ID, ALICE));
    let (s, b) = refresh(&sb, &rt).await;
    assert_eq!(s, 400);
    assert_aad(&b, "invalid_grant", 65001);
    assert!(!sb.withdraw_consent(DEFAULT_CLIENT_ID, ALICE));
}

#[tokio::test]
async fn a_password_change_revokes_public_clients_only() {
    let sb = start().await;
    let public_rt = sign_in(&sb, ALICE).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    sb.set_interactive_user(Some(ALICE));
    let (verifier, challenge) = pkce();
    let (_, location) = authorize(
        &sb,
        &challenge,
        &[
            ("client_id", WEB_APP),
            ("redirect_uri", WEB_REDIRECT),
            ("scope", "Mail.Read offline_access"),
        ],
    )
    .await;
    let code = param(&params_of(&location), "code").unwrap().to_owned();
    let (_, b) = token(
        &sb,
        &[
            ("client_id", WEB_APP),
            ("client_secret", WEB_SECRET),
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", WEB_REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    let confidential_rt = b["refresh_token"].as_str().unwrap().to_owned();

    sb.advance_clock(Duration::from_secs(1));
    assert!(sb.change_password(ALICE));
    let (s, b) = refresh(&sb, &public_rt).await;
    assert_eq!(s, 400);
    assert_aad(&b, "invalid_grant", 50173);
    let (s, b) = token(
        &sb,
        &[
            ("client_id", WEB_APP),
            ("client_secret", WEB_SECRET),
            ("grant_type", "refresh_token"),
            ("refresh_token", &confidential_rt),
        ],
    )
    .await;
    assert_eq!(s, 200, "{b}");
}

async fn device_code(sb: &Sandbox, client_id: &str, scope: &str) -> (u16, Value) {
    let r = http()
        .post(format!(
            "{}/{DEFAULT_TENANT}/oauth2/v2.0/devicecode",
            sb.url()
        ))
        .form(&[("client_id", client_id), ("scope", scope)])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn poll(sb: &Sandbox, device_code: &str) -> (u16, Value) {
    token(
        sb,
        &[
            ("client_id", DEFAULT_CLIENT_ID),
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
        ],
    )
    .await
}

#[tokio::test]
async fn device_code_flow_polls_until_the_user_approves() {
    let sb = start().await;
    let (s, dc) = device_code(&sb, DEFAULT_CLIENT_ID, SCOPE).await;
    assert_eq!(s, 200, "{dc}");
    assert_eq!(dc["expires_in"], 900);
    assert_eq!(dc["interval"], 5);
    assert_eq!(dc["verification_uri"], "https://microsoft.com/devicelogin");
    let user_code = dc["user_code"].as_str().unwrap().to_owned();
    assert!(dc["message"].as_str().unwrap().contains(&user_code));
    let device = dc["device_code"].as_str().unwrap().to_owned();
    assert_eq!(sb.pending_device_codes(), vec![user_code.clone()]);

    let (s, b) = poll(&sb, &device).await;
    assert_eq!(s, 400);
    assert_aad(&b, "authorization_pending", 70016);
    // Polling again at once is too fast; RFC 8628 adds 5 seconds to the interval.
    let (s, b) = poll(&sb, &device).await;
    assert_eq!(s, 400);
    assert_eq!(b["error"], "slow_down", "{b}");
    // 10 seconds now: 6 is still too soon, and the interval grows again (to 15).
    sb.advance_clock(Duration::from_secs(6));
    let (_, b) = poll(&sb, &device).await;
    assert_eq!(b["error"], "slow_down", "{b}");
    sb.advance_clock(Duration::from_secs(16));
    let (_, b) = poll(&sb, &device).await;
    assert_eq!(b["error"], "authorization_pending", "{b}");

    assert!(!sb.approve_device_code(&user_code, SHARED));
    assert!(!sb.approve_device_code("NOTACODE", ALICE));
    assert!(sb.approve_device_code(&user_code.to_lowercase(), ALICE));
    assert!(!sb.approve_device_code(&user_code, ALICE));
    sb.advance_clock(Duration::from_secs(16));
    let (s, b) = poll(&sb, &device).await;
    assert_eq!(s, 200, "{b}");
    assert!(b["refresh_token"].is_string() && b["id_token"].is_string());
    let (s, me) = graph_with(&sb, b["access_token"].as_str().unwrap())
        .get("/me")
        .await;
    assert_eq!((s, me["mail"].as_str()), (200, Some(ALICE)));
    // A public client refreshes without a secret.
    let (s, _) = refresh(&sb, b["refresh_token"].as_str().unwrap()).await;
    assert_eq!(s, 200);

    sb.advance_clock(Duration::from_secs(16));
    let (s, b) = poll(&sb, &device).await;
    assert_eq!(s, 400);
    assert_aad(&b, "invalid_grant", 54005);
    let stats = sb.delegated_stats();
    assert_eq!(stats.device_codes_issued, 1);
    assert_eq!(stats.device_code_polls, 6);
}

#[tokio::test]
async fn device_code_errors_declined_expired_unknown_and_confidential() {
    let sb = start().await;
    sb.set_device_code_timing(Duration::from_secs(60), Duration::from_secs(0));

    let (_, dc) = device_code(&sb, DEFAULT_CLIENT_ID, SCOPE).await;
    assert_eq!(dc["expires_in"], 60);
    assert_eq!(dc["interval"], 0);
    assert!(sb.decline_device_code(dc["user_code"].as_str().unwrap()));
    let (s, b) = poll(&sb, dc["device_code"].as_str().unwrap()).await;
    assert_eq!(s, 400);
    assert_eq!(b["error"], "authorization_declined", "{b}");

    let (_, dc) = device_code(&sb, DEFAULT_CLIENT_ID, SCOPE).await;
    sb.advance_clock(Duration::from_secs(61));
    let (s, b) = poll(&sb, dc["device_code"].as_str().unwrap()).await;
    assert_eq!(s, 400);
    assert_aad(&b, "expired_token", 70020);
    assert!(!sb.approve_device_code(dc["user_code"].as_str().unwrap(), ALICE));

    let (s, b) = poll(&sb, "DAQABAAEAAADnot-a-device-code").await;
    assert_eq!(s, 400);
    assert_eq!(b["error"], "bad_verification_code", "{b}");

    let (s, b) = device_code(&sb, DEFAULT_CLIENT_ID, "Mail.Nope").await;
    assert_eq!(s, 400);
    assert_aad(&b, "invalid_scope", 70011);
    let (s, b) = device_code(&sb, "00000000-0000-4000-8000-00000000dead", SCOPE).await;
    assert_eq!(s, 400);
    assert_aad(&b, "unauthorized_client", 700016);

    // Without "Allow public client flows" the app must authenticate.
    let (_, dc) = device_code(&sb, WEB_APP, "Mail.Read offline_access").await;
    assert!(sb.approve_device_code(dc["user_code"].as_str().unwrap(), ALICE));
    let device = dc["device_code"].as_str().unwrap();
    let form = |secret: Option<&'static str>| {
        let mut f = vec![
            ("client_id", WEB_APP),
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device),
        ];
        if let Some(s) = secret {
            f.push(("client_secret", s));
        }
        f
    };
    let (s, b) = token(&sb, &form(None)).await;
    assert_eq!(s, 401);
    assert_aad(&b, "invalid_client", 7000218);
    let (s, b) = token(&sb, &form(Some(WEB_SECRET))).await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn delegated_tokens_reach_the_users_own_and_shared_mail_only() {
    let sb = start().await;
    // The app's own permissions and mailbox scope do not apply to delegated tokens.
    sb.set_app_permissions(DEFAULT_CLIENT_ID, &[]);
    sb.set_app_scope(DEFAULT_CLIENT_ID, Some(&[CAROL]));
    let g = graph_with(&sb, &body_token(&sb, ALICE).await);

    let (s, _) = g
        .get(&format!("/users/{ALICE}/mailFolders/inbox/messages"))
        .await;
    assert_eq!(s, 200);
    // Carol shared nothing with Alice.
    let (s, b) = g
        .get(&format!("/users/{CAROL}/mailFolders/inbox/messages"))
        .await;
    assert_eq!((s, common::code(&b)), (403, "ErrorAccessDenied"));
    assert_eq!(
        b["error"]["message"],
        "Access is denied. Check credentials and try again."
    );

    // The shared mailbox gives Alice full access.
    let (s, b) = g
        .get(&format!("/users/{SHARED}/mailFolders/inbox/messages"))
        .await;
    assert_eq!(s, 200, "{b}");
    let id = b["value"][0]["id"].as_str().unwrap().to_owned();
    let (s, _) = g
        .post(
            &format!("/users/{SHARED}/messages/{}/move", common::enc(&id)),
            json!({"destinationId": "archive"}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(sb.folder_messages(SHARED, "Archive").len(), 1);
    // Sending as the shared mailbox needs Send As, which is not modelled.
    let (s, _) = g
        .post(
            &format!("/users/{SHARED}/sendMail"),
            json!({"message": {"subject": "x", "toRecipients": [{"emailAddress": {"address": "a@b.c"}}]}}),
        )
        .await;
    assert_eq!(s, 403);

    // Bob shared his Inbox, read-only: that folder and its messages, nothing else.
    let (s, b) = g
        .get(&format!("/users/{BOB}/mailFolders/inbox/messages"))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["value"][0]["subject"], "Bob's inbox");
    let id = b["value"][0]["id"].as_str().unwrap().to_owned();
    let (s, _) = g
        .get(&format!("/users/{BOB}/messages/{}", common::enc(&id)))
        .await;
    assert_eq!(s, 200);
    for path in ["mailFolders", "mailFolders/archive/messages", "messages"] {
        let (s, b) = g.get(&format!("/users/{BOB}/{path}")).await;
        assert_eq!((s, common::code(&b)), (403, "ErrorAccessDenied"), "{path}");
    }
    let (s, _) = g
        .patch(
            &format!("/users/{BOB}/messages/{}", common::enc(&id)),
            json!({"isRead": true}),
        )
        .await;
    assert_eq!(s, 403);
    let archived = sb.folder_messages(BOB, "Archive")[0].immutable_id.clone();
    let (s, _) = g
        .get(&format!("/users/{BOB}/messages/{}", common::enc(&archived)))
        .await;
    assert_eq!(s, 403);

    // Shared at run time, with write access: now Alice may change Bob's Archive.
    assert!(sb.share_mailbox(BOB, ALICE, Some("Archive"), true));
    let (s, b) = g
        .patch(
            &format!("/users/{BOB}/messages/{}", common::enc(&archived)),
            json!({"isRead": true}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(sb.unshare_mailbox(BOB, ALICE));
    let (s, _) = g
        .get(&format!("/users/{BOB}/mailFolders/inbox/messages"))
        .await;
    assert_eq!(s, 403);

    // An app-only token still has no /me, and its own permissions are what count there.
    let app = Graph::new(&sb, true).await;
    let (s, b) = app.get("/me/messages").await;
    assert_eq!((s, common::code(&b)), (400, "BadRequest"));
}

#[tokio::test]
async fn without_the_shared_scopes_only_the_own_mailbox_is_reachable() {
    let sb = start().await;
    sb.set_interactive_user(Some(ALICE));
    let (verifier, challenge) = pkce();
    let (_, location) = authorize(
        &sb,
        &challenge,
        &[(
            "scope",
            "https://graph.microsoft.com/Mail.Read offline_access",
        )],
    )
    .await;
    let code = param(&params_of(&location), "code").unwrap().to_owned();
    // Asking at redemption for more than was consented to.
    let (s, b) = redeem_code(&sb, &code, &verifier).await;
    assert_eq!(s, 400);
    assert_aad(&b, "consent_required", 65001);
    let (_, b) = token(
        &sb,
        &[
            ("client_id", DEFAULT_CLIENT_ID),
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(b["scope"], "Mail.Read", "{b}");
    let g = graph_with(&sb, b["access_token"].as_str().unwrap());
    let (s, _) = g.get("/me/mailFolders/inbox/messages").await;
    assert_eq!(s, 200);
    let (s, b) = g
        .get(&format!("/users/{SHARED}/mailFolders/inbox/messages"))
        .await;
    assert_eq!((s, common::code(&b)), (403, "ErrorAccessDenied"));
    // GET /me needs User.Read, which was not granted.
    let (s, b) = g.get("/me").await;
    assert_eq!((s, common::code(&b)), (403, "Authorization_RequestDenied"));
    // And no write with Mail.Read.
    let id = sb.folder_messages(ALICE, "Inbox")[0].immutable_id.clone();
    let (s, _) = g
        .patch(
            &format!("/me/messages/{}", common::enc(&id)),
            json!({"isRead": true}),
        )
        .await;
    assert_eq!(s, 403);
}

/// A webhook endpoint that echoes validation tokens.
async fn echo_receiver() -> String {
    use axum::extract::RawQuery;
    let app = axum::Router::new().fallback(|RawQuery(q): RawQuery| async move {
        url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
            .find(|(k, _)| k == "validationToken")
            .map_or_else(String::new, |(_, v)| v.into_owned())
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/notify")
}

#[tokio::test]
async fn delegated_subscriptions_are_for_the_signed_in_users_mailbox_only() {
    let sb = start().await;
    let url = echo_receiver().await;
    let g = graph_with(&sb, &body_token(&sb, ALICE).await);
    let expiry = (time::OffsetDateTime::now_utc() + time::Duration::hours(24))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let body = |resource: &str| {
        json!({
            "changeType": "created",
            "notificationUrl": url,
            "resource": resource,
            "expirationDateTime": expiry,
            "clientState": "s",
        })
    };
    let (s, created) = g
        .post("/subscriptions", body("me/mailFolders('Inbox')/messages"))
        .await;
    assert_eq!(s, 201, "{created}");
    let (_, me) = g.get("/me").await;
    assert_eq!(created["creatorId"], me["id"]);
    let (s, _) = g
        .post(
            "/subscriptions",
            body(&format!("users/{ALICE}/mailFolders('Inbox')/messages")),
        )
        .await;
    assert_eq!(s, 201);
    // Shared mailboxes: "Do not use the Outlook sharing permissions".
    let (s, b) = g
        .post(
            "/subscriptions",
            body(&format!("users/{SHARED}/mailFolders('Inbox')/messages")),
        )
        .await;
    assert_eq!((s, common::code(&b)), (403, "ErrorAccessDenied"));

    // Bob sees none of Alice's subscriptions, even with the same app.
    let bob = graph_with(&sb, &body_token(&sb, BOB).await);
    let (_, list) = bob.get("/subscriptions").await;
    assert_eq!(list["value"].as_array().unwrap().len(), 0);
    let (s, _) = bob
        .get(&format!(
            "/subscriptions/{}",
            created["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, 404);
    let (_, list) = g.get("/subscriptions").await;
    assert_eq!(list["value"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_control_api_plays_the_user_and_the_administrator() {
    let sb = start().await;
    let c = http();
    let ctl = |p: &str| format!("{}/_sandbox/{p}", sb.url());
    let r = c
        .post(ctl("delegated/interactive"))
        .json(&json!({"user": ALICE, "outcome": "cancel"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, challenge) = pkce();
    let (_, location) = authorize(&sb, &challenge, &[]).await;
    assert_redirect_error(&location, "access_denied", 65004);
    c.post(ctl("delegated/interactive"))
        .json(&json!({"outcome": "approve"}))
        .send()
        .await
        .unwrap();
    let rt = sign_in(&sb, ALICE).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let r = c
        .post(ctl("delegated/config"))
        .json(&json!({"refreshReuse": false, "deviceCodeIntervalSeconds": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, dc) = device_code(&sb, DEFAULT_CLIENT_ID, SCOPE).await;
    let codes: Vec<String> = c
        .get(ctl("delegated/device-codes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(codes, vec![dc["user_code"].as_str().unwrap().to_owned()]);
    let r = c
        .post(ctl(&format!("delegated/device-codes/{}/approve", codes[0])))
        .json(&json!({"user": BOB}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, _) = poll(&sb, dc["device_code"].as_str().unwrap()).await;
    assert_eq!(s, 200);

    let (s, b) = refresh(&sb, &rt).await;
    assert_eq!(s, 200);
    let (s, _) = refresh(&sb, &rt).await;
    assert_eq!(s, 400, "reuse refused");
    let rt = b["refresh_token"].as_str().unwrap().to_owned();

    let r = c
        .post(ctl(&format!("users/{ALICE}/require-interaction")))
        .json(&json!({"kind": "mfa"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, b) = refresh(&sb, &rt).await;
    assert_aad(&b, "invalid_grant", 50076);
    c.post(ctl(&format!("users/{ALICE}/require-interaction")))
        .json(&json!({"kind": null}))
        .send()
        .await
        .unwrap();
    let r = c
        .post(ctl(&format!("users/{ALICE}/revoke-refresh-tokens")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, b) = refresh(&sb, &rt).await;
    assert_aad(&b, "invalid_grant", 50173);
    let r = c
        .delete(ctl(&format!("apps/{DEFAULT_CLIENT_ID}/consents/{BOB}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(ctl(&format!("mailboxes/{CAROL}/shares")))
        .json(&json!({"user": ALICE}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let g = graph_with(&sb, &body_token(&sb, ALICE).await);
    let (s, _) = g
        .get(&format!("/users/{CAROL}/mailFolders/inbox/messages"))
        .await;
    assert_eq!(s, 200);

    let stats: Value = c
        .get(ctl("delegated/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["refreshRedemptions"], 1);
    assert_eq!(stats["refreshTokenReuses"], 1);
    assert_eq!(stats["deviceCodesIssued"], 1);
}

#[tokio::test]
async fn the_default_world_still_serves_app_only_tokens_unchanged() {
    let sb = start().await;
    let g = Graph::new(&sb, true).await;
    let (s, _) = g
        .get(&format!("/users/{BOB}/mailFolders/archive/messages"))
        .await;
    assert_eq!(s, 200);
    let (s, b) = token(
        &sb,
        &[
            ("client_id", DEFAULT_CLIENT_ID),
            ("grant_type", "password"),
            ("username", ALICE),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert_aad(&b, "unsupported_grant_type", 70003);
}
