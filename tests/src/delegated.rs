//! Delegated credentials on the stack: a person's sign-in played through the real sign-in
//! client against the sandbox's Entra (the test is the browser: it follows `/authorize`'s
//! redirect and takes the code from it), and the credential's secret as `mailroom --backend aws
//! credentials login` leaves it.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use graph_sandbox::{DEFAULT_CLIENT_ID, DEFAULT_TENANT, Sandbox};
use mailroom::adapters::aws::SecretsManagerSignIns;
use mailroom::credentials::{ClientAuth, SignedIn};
use mailroom::graph::RetryPolicy;
use mailroom::graph::signin::{AuthorizeRequest, DelegatedClient, Pkce, SignIn, new_state};
use mailroom::ports::SignInStore;
use time::OffsetDateTime;

use crate::stack::Stack;

/// Where the sandbox sends the browser back; nothing listens there, the test reads the code from
/// the redirect itself.
const REDIRECT: &str = "http://localhost:53682";

/// `user` signs in for `scopes` with the authorization code grant and PKCE, as `mailroom
/// credentials login` does; what it would store.
pub async fn sign_in(sandbox: &Sandbox, user: &str, scopes: &[&str]) -> SignedIn {
    sign_in_with(sandbox, user, scopes, None, REDIRECT).await
}

/// [`sign_in`] for a confidential client: the app proves itself with `client_secret` when it
/// redeems the code, and the browser comes back to `redirect`, one of the app's web redirect URIs.
pub async fn sign_in_confidential(
    sandbox: &Sandbox,
    user: &str,
    scopes: &[&str],
    client_secret: &str,
    redirect: &str,
) -> SignedIn {
    let secret = ClientAuth::Secret(client_secret.to_owned().into());
    sign_in_with(sandbox, user, scopes, Some(secret), redirect).await
}

async fn sign_in_with(
    sandbox: &Sandbox,
    user: &str,
    scopes: &[&str],
    secret: Option<ClientAuth>,
    redirect: &str,
) -> SignedIn {
    let sign_in = SignIn::new(
        reqwest::Client::new(),
        url::Url::parse(&sandbox.url()).expect("sandbox URL"),
        RetryPolicy::default(),
    );
    let client = DelegatedClient {
        tenant_id: DEFAULT_TENANT.to_owned(),
        client_id: DEFAULT_CLIENT_ID.to_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        secret,
    };
    let (pkce, state) = (Pkce::generate(), new_state());
    let url = sign_in
        .authorize_url(&AuthorizeRequest {
            client: &client,
            redirect_uri: redirect,
            state: &state,
            pkce: &pkce,
            login_hint: Some(user),
        })
        .expect("sign-in URL");
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("browser");
    let answer = browser.get(url).send().await.expect("sign-in page");
    let location = answer
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_else(|| panic!("no redirect from /authorize: {}", answer.status()));
    let back = url::Url::parse(location).expect("redirect URL");
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code in the redirect: {back}"));
    let tokens = sign_in
        .redeem_code(&client, &code, redirect, &pkce)
        .await
        .expect("code redeemed");
    let now = OffsetDateTime::now_utc();
    SignedIn {
        user: tokens.user,
        scopes: tokens.scopes,
        refresh_token: tokens.refresh_token.expect("a refresh token"),
        signed_in_at: now,
        refreshed_at: now,
    }
}

/// A delegated credential of the sandbox's default app as a public client, asking for `scopes`,
/// as its secret holds it before anyone signs in.
pub fn public_client_json(scopes: &[&str]) -> String {
    serde_json::json!({
        "kind": "delegated",
        "tenant_id": DEFAULT_TENANT,
        "client_id": DEFAULT_CLIENT_ID,
        "scopes": scopes,
    })
    .to_string()
}

impl Stack {
    /// Creates the delegated credential `name` for the sandbox's default app (a public client)
    /// with `scopes`, and stores `signed_in` in it as the login would.
    pub async fn put_delegated(&self, name: &str, scopes: &[&str], signed_in: &SignedIn) {
        self.store_secret(name, &public_client_json(scopes)).await;
        self.sign_ins()
            .save(name, signed_in)
            .await
            .expect("sign-in stored");
    }

    /// The stack's store of delegated sign-ins, storing every refresh (the tests' tokens live
    /// seconds, not the hour that [`SecretsManagerSignIns::MIN_SAVE_INTERVAL`] is made for).
    pub fn sign_ins(&self) -> Arc<SecretsManagerSignIns> {
        Arc::new(
            SecretsManagerSignIns::new(self.secrets.clone())
                .with_min_save_interval(std::time::Duration::ZERO),
        )
    }

    /// The refresh token stored in the delegated credential `name` now.
    pub async fn stored_sign_in(&self, name: &str) -> SignedIn {
        self.sign_ins()
            .load(name)
            .await
            .expect("secret readable")
            .expect("a sign-in")
    }
}
