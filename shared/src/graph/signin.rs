//! Delegated sign-in with Entra ID (docs/graph.md section 13): the authorization code grant with
//! PKCE on a loopback redirect, the device code grant, and refresh tokens redeemed for access
//! tokens. A person signs in once (`mailroom credentials login`); Mailroom keeps the refresh token
//! and redeems it for access tokens from then on.
//!
//! Entra does not revoke a refresh token when it is redeemed (docs/graph.md section 13): each
//! redemption returns a new one to keep, and the old one stays valid until it expires. Two runners
//! refreshing at once therefore both succeed, and a crash between receiving a new refresh token
//! and storing it leaves the stored one working.
//!
//! Nothing here logs or displays a token: [`TokenSet`] and [`DeviceCode`] redact them in `Debug`,
//! and errors carry Entra's error and AADSTS code, never the request.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use url::Url;

use super::retry::RetryPolicy;
use crate::credentials::ClientAuth;

/// The scopes every delegated sign-in asks for besides the configured ones: a refresh token
/// (`offline_access`) and the signed-in user's name in the ID token (`openid profile`).
pub const SIGN_IN_SCOPES: [&str; 3] = ["openid", "profile", "offline_access"];

/// An app registration as a delegated client: which tenant, which app, which Graph scopes, and
/// the client's own credential if it is a confidential client (a public client has none).
#[derive(Clone, Debug)]
pub struct DelegatedClient {
    pub tenant_id: String,
    pub client_id: String,
    /// Graph's delegated permissions, e.g. `Mail.ReadWrite` (the short form means Graph's).
    pub scopes: Vec<String>,
    pub secret: Option<ClientAuth>,
}

impl DelegatedClient {
    /// The `scope` parameter: the configured scopes and [`SIGN_IN_SCOPES`], space-separated
    /// (Entra refuses commas for work accounts), each once.
    pub fn scope_parameter(&self) -> String {
        let mut all: Vec<&str> = Vec::new();
        for scope in self.scopes.iter().map(String::as_str).chain(SIGN_IN_SCOPES) {
            if !all.iter().any(|s| s.eq_ignore_ascii_case(scope)) {
                all.push(scope);
            }
        }
        all.join(" ")
    }
}

/// A PKCE pair (RFC 7636): the verifier stays here, the S256 challenge goes in the sign-in URL.
pub struct Pkce {
    verifier: SecretString,
    challenge: String,
}

impl Pkce {
    /// 64 random characters from the unreserved set (RFC 7636 allows 43 to 128).
    pub fn generate() -> Self {
        let verifier = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let challenge = B64URL.encode(Sha256::digest(verifier.as_bytes()));
        Self {
            verifier: SecretString::from(verifier),
            challenge,
        }
    }

    pub fn challenge(&self) -> &str {
        &self.challenge
    }
}

impl fmt::Debug for Pkce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkce")
            .field("verifier", &"[REDACTED]")
            .field("challenge", &self.challenge)
            .finish()
    }
}

/// A random `state` for the sign-in URL, checked when the browser comes back (it ties the answer
/// to this sign-in).
pub fn new_state() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What one sign-in asks for, to build its URL.
#[derive(Debug)]
pub struct AuthorizeRequest<'a> {
    pub client: &'a DelegatedClient,
    /// Where Entra sends the browser back: `http://localhost:PORT` for the CLI.
    pub redirect_uri: &'a str,
    pub state: &'a str,
    pub pkce: &'a Pkce,
    /// The account to sign in as, if known (fills in the user name on the sign-in page).
    pub login_hint: Option<&'a str>,
}

/// Tokens from the token endpoint. `Debug` shows neither token.
#[derive(Clone)]
pub struct TokenSet {
    pub access_token: SecretString,
    /// Absent if `offline_access` was not granted.
    pub refresh_token: Option<SecretString>,
    /// Seconds the access token is valid for.
    pub expires_in: u64,
    /// The scopes granted, as Entra lists them.
    pub scopes: Vec<String>,
    /// Who signed in (the ID token's `preferred_username`), if an ID token came back.
    pub user: Option<String>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &"[REDACTED]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("expires_in", &self.expires_in)
            .field("scopes", &self.scopes)
            .field("user", &self.user)
            .finish()
    }
}

/// A device code sign-in in progress: the person opens `verification_uri` and types `user_code`.
#[derive(Clone)]
pub struct DeviceCode {
    device_code: SecretString,
    pub user_code: String,
    pub verification_uri: String,
    /// Seconds until the codes expire.
    pub expires_in: u64,
    /// Seconds to wait between polls.
    pub interval: u64,
    /// Entra's instructions for the person, in their language.
    pub message: String,
}

impl fmt::Debug for DeviceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCode")
            .field("device_code", &"[REDACTED]")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish()
    }
}

/// Why a sign-in needs the person again, read from the AADSTS code (docs/graph.md section 13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInReason {
    /// The refresh token went unused for longer than Entra allows (AADSTS700082; 90 days by
    /// default).
    Inactive,
    /// Revoked: a password change or an administrator's revocation (AADSTS50173).
    Revoked,
    /// The user's or an administrator's consent is missing or was withdrawn (AADSTS65001).
    ConsentMissing,
    /// Multi-factor authentication, a sign-in frequency policy or Conditional Access wants the
    /// person (AADSTS50076, 50079, 70043, 50158, 53003): `code` says which.
    InteractionRequired { code: u64 },
    /// Another `invalid_grant`: Entra's description.
    Other { description: String },
}

impl fmt::Display for SignInReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inactive => f.write_str(
                "the refresh token expired after going unused too long (AADSTS700082)",
            ),
            Self::Revoked => f.write_str(
                "the sign-in was revoked, by a password change or an administrator (AADSTS50173)",
            ),
            Self::ConsentMissing => f.write_str(
                "consent for the app is missing or was withdrawn; the user or an administrator must grant it (AADSTS65001)",
            ),
            Self::InteractionRequired { code: 53_003 } => f.write_str(
                "Conditional Access blocks the sign-in; an administrator must allow it (AADSTS53003)",
            ),
            Self::InteractionRequired { code } => write!(
                f,
                "the tenant's policy (multi-factor authentication or sign-in frequency) wants the person to sign in (AADSTS{code})"
            ),
            Self::Other { description } => f.write_str(description),
        }
    }
}

/// A failed sign-in or token request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignInError {
    /// The stored sign-in no longer works: the person must sign in again.
    #[error("{reason}")]
    SignInRequired { reason: SignInReason },
    /// Device code: the person has not finished signing in yet (keep polling).
    #[error("the sign-in is not finished yet")]
    Pending,
    /// Device code: polling too fast; wait longer between polls.
    #[error("polling too fast")]
    SlowDown,
    /// The device code or the authorization code expired before it was used.
    #[error("the sign-in took too long and its code expired; start again")]
    Expired,
    /// The person declined or cancelled the sign-in.
    #[error("the sign-in was declined or cancelled{}", .detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Declined { detail: Option<String> },
    /// A scope the app registration does not have (AADSTS70011, `invalid_scope`).
    #[error(
        "Entra refused the scopes {scopes}: {description}; add them to the app registration's API permissions or remove them from the credential's scopes"
    )]
    ScopeRefused { scopes: String, description: String },
    /// The answer had no refresh token: `offline_access` was not granted.
    #[error(
        "Entra returned no refresh token: the offline_access permission was not granted; add it to the app registration's API permissions and sign in again"
    )]
    NoRefreshToken,
    /// Any other error Entra answered with.
    #[error("Entra refused the sign-in: {error}{}: {description}", .code.map(|c| format!(" (AADSTS{c})")).unwrap_or_default())]
    Rejected {
        error: String,
        code: Option<u64>,
        description: String,
    },
    /// Entra could not be reached or answered something unreadable.
    #[error("could not reach Entra's sign-in endpoint: {0}")]
    Transport(String),
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
    #[serde(default)]
    error_codes: Vec<u64>,
}

impl ErrorBody {
    fn code(&self) -> Option<u64> {
        self.error_codes.first().copied().or_else(|| {
            let rest = self.error_description.strip_prefix("AADSTS")?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
    }

    fn first_line(&self) -> String {
        description_only(&self.error_description)
    }

    fn classify(self, scopes: &str) -> SignInError {
        let code = self.code();
        match (self.error.as_str(), code) {
            ("authorization_pending", _) => SignInError::Pending,
            ("slow_down", _) => SignInError::SlowDown,
            ("expired_token", _) => SignInError::Expired,
            ("authorization_declined" | "access_denied", _) => SignInError::Declined {
                detail: Some(self.first_line()),
            },
            ("invalid_scope", _) => SignInError::ScopeRefused {
                scopes: scopes.to_owned(),
                description: self.first_line(),
            },
            (_, Some(700_082)) => reason(SignInReason::Inactive),
            (_, Some(50_173)) => reason(SignInReason::Revoked),
            (_, Some(65_001)) => reason(SignInReason::ConsentMissing),
            (_, Some(code @ (50_076 | 50_079 | 70_043 | 50_158 | 53_003))) => {
                reason(SignInReason::InteractionRequired { code })
            }
            ("interaction_required" | "consent_required" | "login_required", Some(code)) => {
                reason(SignInReason::InteractionRequired { code })
            }
            // An authorization code past its ten minutes.
            ("invalid_grant", Some(70_008)) => SignInError::Expired,
            ("invalid_grant", _) => reason(SignInReason::Other {
                description: self.first_line(),
            }),
            _ => SignInError::Rejected {
                error: self.error.clone(),
                code,
                description: self.first_line(),
            },
        }
    }
}

/// An Entra error description without its trace and correlation ids and timestamp, which follow
/// on the next lines, or on the same line in a redirect's `error_description`.
pub fn description_only(description: &str) -> String {
    let first = description.lines().next().unwrap_or_default();
    first
        .split(" Trace ID:")
        .next()
        .unwrap_or(first)
        .trim()
        .to_owned()
}

fn reason(reason: SignInReason) -> SignInError {
    SignInError::SignInRequired { reason }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: u64,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct DeviceAnswer {
    device_code: String,
    user_code: String,
    verification_uri: String,
    expires_in: u64,
    #[serde(default = "default_interval")]
    interval: u64,
    #[serde(default)]
    message: String,
}

fn default_interval() -> u64 {
    5
}

/// Entra's sign-in endpoints for delegated access.
#[derive(Clone, Debug)]
pub struct SignIn {
    http: reqwest::Client,
    login_url: Url,
    retry: RetryPolicy,
}

impl SignIn {
    /// Token requests that meet a connection failure, 429 or a 5xx are tried again as `retry`
    /// says (waiting `Retry-After` if Entra gives one); a refresh token sent twice this way is
    /// harmless, because redeeming one does not revoke it (docs/graph.md section 13).
    pub fn new(http: reqwest::Client, login_url: Url, retry: RetryPolicy) -> Self {
        Self {
            http,
            login_url,
            retry,
        }
    }

    /// How many times a token request is sent before its failure is final.
    pub fn max_attempts(&self) -> u32 {
        self.retry.max_retries + 1
    }

    fn endpoint(&self, tenant: &str, last: &str) -> Result<Url, SignInError> {
        let mut url = self.login_url.clone();
        url.path_segments_mut()
            .map_err(|()| {
                SignInError::Transport(format!("login URL {} cannot be a base", self.login_url))
            })?
            .pop_if_empty()
            .extend([tenant, "oauth2", "v2.0", last]);
        Ok(url)
    }

    /// The URL the person opens to sign in (authorization code grant with PKCE).
    pub fn authorize_url(&self, request: &AuthorizeRequest<'_>) -> Result<Url, SignInError> {
        let mut url = self.endpoint(&request.client.tenant_id, "authorize")?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("client_id", &request.client.client_id)
                .append_pair("response_type", "code")
                .append_pair("redirect_uri", request.redirect_uri)
                .append_pair("response_mode", "query")
                .append_pair("scope", &request.client.scope_parameter())
                .append_pair("state", request.state)
                .append_pair("code_challenge", request.pkce.challenge())
                .append_pair("code_challenge_method", "S256");
            if let Some(hint) = request.login_hint {
                query.append_pair("login_hint", hint);
            }
        }
        Ok(url)
    }

    /// Redeems the authorization code the browser brought back.
    pub async fn redeem_code(
        &self,
        client: &DelegatedClient,
        code: &str,
        redirect_uri: &str,
        pkce: &Pkce,
    ) -> Result<TokenSet, SignInError> {
        self.token(
            client,
            vec![
                ("grant_type", "authorization_code".into()),
                ("code", code.into()),
                ("redirect_uri", redirect_uri.into()),
                ("code_verifier", pkce.verifier.expose_secret().into()),
            ],
        )
        .await
    }

    /// Redeems a refresh token: a new access token and a new refresh token to keep.
    pub async fn refresh(
        &self,
        client: &DelegatedClient,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, SignInError> {
        self.token(
            client,
            vec![
                ("grant_type", "refresh_token".into()),
                ("refresh_token", refresh_token.expose_secret().into()),
            ],
        )
        .await
    }

    /// Starts a device code sign-in: show [`DeviceCode::message`] to the person, then
    /// [`Self::wait_for_device`].
    pub async fn start_device(&self, client: &DelegatedClient) -> Result<DeviceCode, SignInError> {
        let url = self.endpoint(&client.tenant_id, "devicecode")?;
        let form = [
            ("client_id", client.client_id.clone()),
            ("scope", client.scope_parameter()),
        ];
        let response = self
            .http
            .post(url)
            .form(&form)
            .send()
            .await
            .map_err(|e| SignInError::Transport(super::auth::describe(&e)))?;
        if !response.status().is_success() {
            let body: ErrorBody = response.json().await.unwrap_or_default();
            return Err(body.classify(&client.scope_parameter()));
        }
        let answer: DeviceAnswer = response.json().await.map_err(|e| {
            SignInError::Transport(format!("device code answer: {}", super::auth::describe(&e)))
        })?;
        Ok(DeviceCode {
            device_code: SecretString::from(answer.device_code),
            user_code: answer.user_code,
            verification_uri: answer.verification_uri,
            expires_in: answer.expires_in,
            interval: answer.interval.max(1),
            message: answer.message,
        })
    }

    /// Polls until the person finishes the device code sign-in, declines it, or the code
    /// expires; waits `interval` between polls, five seconds more after each `slow_down`.
    pub async fn wait_for_device(
        &self,
        client: &DelegatedClient,
        device: &DeviceCode,
    ) -> Result<TokenSet, SignInError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(device.expires_in);
        let mut interval = Duration::from_secs(device.interval);
        loop {
            tokio::time::sleep(interval).await;
            let polled = self
                .token(
                    client,
                    vec![
                        (
                            "grant_type",
                            "urn:ietf:params:oauth:grant-type:device_code".into(),
                        ),
                        ("device_code", device.device_code.expose_secret().into()),
                    ],
                )
                .await;
            match polled {
                Err(SignInError::Pending) => {}
                Err(SignInError::SlowDown) => interval += Duration::from_secs(5),
                other => return other,
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SignInError::Expired);
            }
        }
    }

    async fn token(
        &self,
        client: &DelegatedClient,
        mut form: Vec<(&'static str, String)>,
    ) -> Result<TokenSet, SignInError> {
        let url = self.endpoint(&client.tenant_id, "token")?;
        let scopes = client.scope_parameter();
        form.push(("client_id", client.client_id.clone()));
        form.push(("scope", scopes.clone()));
        match &client.secret {
            None | Some(ClientAuth::Public) => {}
            Some(ClientAuth::Secret(secret)) => {
                form.push(("client_secret", secret.expose_secret().to_owned()));
            }
            Some(ClientAuth::Certificate(certificate)) => {
                let assertion = super::assertion::client_assertion(
                    certificate,
                    &client.client_id,
                    url.as_str(),
                    time::OffsetDateTime::now_utc(),
                )
                .map_err(|_| {
                    SignInError::Transport("could not sign the client assertion".into())
                })?;
                form.push((
                    "client_assertion_type",
                    super::assertion::ASSERTION_TYPE.to_owned(),
                ));
                form.push(("client_assertion", assertion));
            }
        }
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            let retry_in = match self.http.post(url.clone()).form(&form).send().await {
                Ok(response)
                    if super::error::is_retryable_status(response.status().as_u16())
                        && attempt <= self.retry.max_retries =>
                {
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| {
                            super::error::parse_retry_after(v, time::OffsetDateTime::now_utc())
                        });
                    self.retry.wait(attempt, retry_after)
                }
                Ok(response) => break response,
                Err(_) if attempt <= self.retry.max_retries => self.retry.backoff(attempt),
                Err(e) => return Err(SignInError::Transport(super::auth::describe(&e))),
            };
            tokio::time::sleep(retry_in).await;
        };
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let body: ErrorBody = response.json().await.unwrap_or_default();
            if body.error.is_empty() {
                return Err(SignInError::Transport(format!(
                    "Entra answered HTTP {status} without an OAuth error"
                )));
            }
            return Err(body.classify(&scopes));
        }
        let answer: TokenAnswer = response.json().await.map_err(|e| {
            SignInError::Transport(format!("token answer: {}", super::auth::describe(&e)))
        })?;
        Ok(TokenSet {
            access_token: SecretString::from(answer.access_token),
            refresh_token: answer.refresh_token.map(SecretString::from),
            expires_in: answer.expires_in,
            scopes: answer.scope.split_whitespace().map(str::to_owned).collect(),
            user: answer.id_token.as_deref().and_then(id_token_user),
        })
    }
}

/// The ID token's `preferred_username`. The token came straight from the token endpoint over
/// TLS, which OpenID Connect accepts in place of checking its signature (OpenID Connect Core
/// 1.0, section 3.1.3.7); it only names who signed in.
fn id_token_user(id_token: &str) -> Option<String> {
    let payload = id_token.split('.').nth(1)?;
    let bytes = B64URL.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims
        .get("preferred_username")
        .or_else(|| claims.get("upn"))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> DelegatedClient {
        DelegatedClient {
            tenant_id: "t".into(),
            client_id: "c".into(),
            scopes: vec!["Mail.ReadWrite".into(), "offline_access".into()],
            secret: None,
        }
    }

    #[test]
    fn the_scope_parameter_is_space_separated_with_each_scope_once() {
        assert_eq!(
            client().scope_parameter(),
            "Mail.ReadWrite offline_access openid profile"
        );
    }

    #[test]
    fn the_challenge_is_the_verifiers_s256() {
        let pkce = Pkce::generate();
        let verifier = pkce.verifier.expose_secret().to_owned();
        assert_eq!(verifier.len(), 64);
        assert_eq!(
            pkce.challenge(),
            B64URL.encode(Sha256::digest(verifier.as_bytes()))
        );
        assert!(!format!("{pkce:?}").contains(&verifier));
    }

    #[test]
    fn the_sign_in_url_carries_the_challenge_and_state_but_not_the_verifier() {
        let sign_in = SignIn::new(
            reqwest::Client::new(),
            Url::parse("https://login.example/").unwrap_or_else(|_| unreachable!()),
            RetryPolicy::default(),
        );
        let pkce = Pkce::generate();
        let client = client();
        let url = sign_in
            .authorize_url(&AuthorizeRequest {
                client: &client,
                redirect_uri: "http://localhost:5000",
                state: "s1",
                pkce: &pkce,
                login_hint: Some("alice@contoso.com"),
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let text = url.as_str();
        assert!(text.starts_with("https://login.example/t/oauth2/v2.0/authorize?"));
        assert!(text.contains("code_challenge_method=S256"));
        assert!(text.contains(pkce.challenge()));
        assert!(text.contains("state=s1"));
        assert!(text.contains("login_hint=alice%40contoso.com"));
        assert!(!text.contains(pkce.verifier.expose_secret()));
    }

    #[test]
    fn aadsts_codes_say_why_the_person_must_sign_in_again() {
        let body = |error: &str, code: u64| ErrorBody {
            error: error.into(),
            error_description: format!("AADSTS{code}: text\r\nTrace ID: x"),
            error_codes: vec![code],
        };
        let reason_of = |e: SignInError| match e {
            SignInError::SignInRequired { reason } => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reason_of(body("invalid_grant", 700_082).classify("")),
            SignInReason::Inactive
        );
        assert_eq!(
            reason_of(body("invalid_grant", 50_173).classify("")),
            SignInReason::Revoked
        );
        assert_eq!(
            reason_of(body("invalid_grant", 65_001).classify("")),
            SignInReason::ConsentMissing
        );
        assert_eq!(
            reason_of(body("invalid_grant", 50_076).classify("")),
            SignInReason::InteractionRequired { code: 50_076 }
        );
        assert!(
            reason_of(body("invalid_grant", 53_003).classify(""))
                .to_string()
                .contains("Conditional Access")
        );
        assert!(matches!(
            body("authorization_pending", 70_016).classify(""),
            SignInError::Pending
        ));
        assert!(matches!(
            body("expired_token", 70_020).classify(""),
            SignInError::Expired
        ));
        let scope = body("invalid_scope", 70_011).classify("Mail.Nope offline_access");
        assert!(scope.to_string().contains("Mail.Nope"), "{scope}");
        let other = body("invalid_grant", 9_002_313).classify("");
        assert!(!other.to_string().contains("Trace ID"), "{other}");
        assert_eq!(
            description_only("AADSTS65004: User declined. Trace ID: 1 Correlation ID: 2"),
            "AADSTS65004: User declined."
        );
    }

    #[test]
    fn the_user_comes_from_the_id_token() {
        let claims = B64URL.encode(br#"{"preferred_username":"alice@contoso.com"}"#);
        assert_eq!(
            id_token_user(&format!("e30.{claims}.sig")).as_deref(),
            Some("alice@contoso.com")
        );
        assert_eq!(id_token_user("garbage"), None);
    }

    #[test]
    fn debug_shows_no_token() {
        let tokens = TokenSet {
            access_token: SecretString::from("at-secret"),
            refresh_token: Some(SecretString::from("rt-secret")),
            expires_in: 3600,
            scopes: vec![],
            user: None,
        };
        let text = format!("{tokens:?}");
        assert!(
            !text.contains("at-secret") && !text.contains("rt-secret"),
            "{text}"
        );
    }
}
