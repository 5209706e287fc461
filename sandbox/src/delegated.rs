//! Delegated access (docs/graph.md section 13): a user signs in with the authorization code
//! grant (with PKCE) or the device code grant, and the app redeems refresh tokens for access
//! tokens that act for that user.
//!
//! - `GET /{tenant}/oauth2/v2.0/authorize`: the test plays the user ([`crate::Sandbox::set_interactive_user`],
//!   [`crate::Sandbox::set_interactive_outcome`]); the sandbox answers `302` to the redirect URI
//!   with `code` and `state`, or with `error`, `error_description` and `state`.
//! - `POST /{tenant}/oauth2/v2.0/devicecode`: a device code and a user code; the test approves
//!   or declines it ([`crate::Sandbox::approve_device_code`]).
//! - `POST /{tenant}/oauth2/v2.0/token` with `authorization_code`, `refresh_token` or
//!   `urn:ietf:params:oauth:grant-type:device_code` ([`redeem`], called from `auth.rs`).
//!
//! Everything is kept in [`DelegatedState`] under the state lock and timed on the sandbox
//! clock, so tests expire codes and tokens with [`crate::Sandbox::advance_clock`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::auth::{AadError, Credentials, mint_access_token, verify_client};
use crate::core::{Core, lock};
use crate::graph::header_str;
use crate::requests::RequestRecord;
use crate::state::{AppState, Delegation, State as SandboxState, TenantState};
use crate::world::MailboxKind;

/// The device code grant's `grant_type` (RFC 8628).
pub(crate) const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// "Authorization codes are short lived. Typically, they expire after about 10 minutes."
const AUTHORIZATION_CODE_SECONDS: i64 = 600;
/// "The default lifetime for the refresh tokens is … 90 days for all other scenarios."
const DEFAULT_REFRESH_INACTIVITY_DAYS: i64 = 90;
/// "From the moment the request is sent, the user has 15 minutes to sign in. This is the
/// default value for `expires_in`."
const DEFAULT_DEVICE_CODE_SECONDS: u64 = 900;
/// The polling interval Entra answers (observed: 5 seconds).
const DEFAULT_DEVICE_CODE_INTERVAL: u64 = 5;
/// RFC 8628 section 3.5: after `slow_down` "the interval MUST be increased by 5 seconds for
/// this and all subsequent requests".
const SLOW_DOWN_STEP: u64 = 5;
/// Where Entra sends the user to enter the code (observed in its answers).
const VERIFICATION_URI: &str = "https://microsoft.com/devicelogin";
/// Graph's resource URI and application id: scopes may be prefixed with either.
const GRAPH_PREFIXES: &[&str] = &[
    "https://graph.microsoft.com/",
    "00000003-0000-0000-c000-000000000000/",
];
/// The OpenID Connect scopes, which any app may request (they are not Graph permissions an
/// app must configure).
const OIDC_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];
/// The delegated Graph permissions the sandbox knows, by their canonical names; any other name
/// is an invalid scope.
const KNOWN_SCOPES: &[&str] = &[
    "Mail.Read",
    "Mail.ReadBasic",
    "Mail.ReadWrite",
    "Mail.Read.Shared",
    "Mail.ReadWrite.Shared",
    "Mail.Send",
    "Mail.Send.Shared",
    "MailboxSettings.Read",
    "MailboxSettings.ReadWrite",
    "User.Read",
    "User.ReadBasic.All",
    "User.Read.All",
    "Directory.Read.All",
    "Group.Read.All",
    "GroupMember.Read.All",
    "Application.Read.All",
];

/// What the user does on the sign-in page of `/authorize` (the test plays the user).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InteractiveOutcome {
    /// Signs in and, when asked, consents to the requested permissions.
    #[default]
    Approve,
    /// Cancels: `error=access_denied` (AADSTS65004, "User declined to consent to access the
    /// app.").
    Cancel,
    /// Is asked to consent but may not (an administrator must): `error=consent_required`
    /// (AADSTS65001). Only when consent is needed; a user who already consented signs in.
    ConsentRequired,
}

/// Why a user's existing sign-ins need interaction again ([`crate::Sandbox::require_interaction`]):
/// refresh tokens from sign-ins before the requirement answer `invalid_grant` with the code
/// below; a new interactive sign-in (authorization code or device code) satisfies it, except
/// [`Interaction::Blocked`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interaction {
    /// Multifactor authentication is now required (Conditional Access, per-user MFA):
    /// AADSTS50076, `suberror` `basic_action`.
    Mfa,
    /// Conditional Access sign-in frequency elapsed: AADSTS70043.
    SignInFrequency,
    /// Conditional Access blocks the user: AADSTS53003, also at sign-in.
    Blocked,
}

impl Interaction {
    fn code(self) -> u32 {
        match self {
            Interaction::Mfa => 50_076,
            Interaction::SignInFrequency => 70_043,
            Interaction::Blocked => 53_003,
        }
    }

    fn description(self) -> &'static str {
        match self {
            Interaction::Mfa => {
                "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '00000003-0000-0000-c000-000000000000'."
            }
            Interaction::SignInFrequency => {
                "The refresh token has expired or is invalid due to sign-in frequency checks by conditional access."
            }
            Interaction::Blocked => {
                "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance."
            }
        }
    }

    /// Entra's `suberror`, where one was observed: `basic_action` with AADSTS50076
    /// (microsoftgraph/microsoft-graph-docs#6311).
    fn suberror(self) -> Option<&'static str> {
        match self {
            Interaction::Mfa => Some("basic_action"),
            Interaction::SignInFrequency | Interaction::Blocked => None,
        }
    }
}

/// Counters of the delegated flows, for tests ([`crate::Sandbox::delegated_stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DelegatedStats {
    /// Authorization codes handed out by `/authorize`.
    pub authorization_codes_issued: usize,
    /// Authorization codes redeemed at the token endpoint.
    pub authorization_codes_redeemed: usize,
    /// Device codes handed out by `/devicecode`.
    pub device_codes_issued: usize,
    /// Token requests with the device code grant (every poll, whatever its answer).
    pub device_code_polls: usize,
    /// Refresh tokens issued (by any grant).
    pub refresh_tokens_issued: usize,
    /// Successful refresh token redemptions.
    pub refresh_redemptions: usize,
    /// Redemptions of a refresh token that had already been redeemed, accepted or not (see
    /// [`crate::Sandbox::set_refresh_token_reuse`]).
    pub refresh_token_reuses: usize,
    /// Delegated access tokens issued.
    pub delegated_access_tokens: usize,
}

/// A sign-in, as codes and refresh tokens carry it.
#[derive(Clone, Debug)]
struct Grant {
    tenant: usize,
    client_id: String,
    /// The user's mailbox index.
    user: usize,
    /// Graph scopes requested (canonical names).
    graph: Vec<String>,
    /// OpenID Connect scopes requested.
    oidc: Vec<String>,
    /// When the user signed in interactively (revocation and interaction checks compare it).
    authenticated_at: OffsetDateTime,
    /// Issued to a public client (no credential allowed).
    public: bool,
}

impl Grant {
    fn offline(&self) -> bool {
        self.oidc.iter().any(|s| s == "offline_access")
    }
}

#[derive(Debug)]
struct AuthCode {
    grant: Grant,
    redirect_uri: String,
    /// `(code_challenge, method)`; method "S256" or "plain".
    challenge: Option<(String, String)>,
    expires_at: OffsetDateTime,
    redeemed: bool,
}

#[derive(Debug)]
struct RefreshGrant {
    grant: Grant,
    issued_at: OffsetDateTime,
    redeemed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum DeviceStatus {
    Pending,
    Approved(usize, OffsetDateTime),
    Declined,
    Redeemed,
}

#[derive(Debug)]
struct DeviceGrant {
    tenant: usize,
    client_id: String,
    graph: Vec<String>,
    oidc: Vec<String>,
    user_code: String,
    expires_at: OffsetDateTime,
    interval: u64,
    last_poll: Option<OffsetDateTime>,
    status: DeviceStatus,
}

/// Per-user sign-in state.
#[derive(Clone, Debug, Default)]
struct UserAuth {
    /// Refresh tokens from sign-ins before this are revoked (`revokeSignInSessions`, an admin
    /// revoking the user's tokens).
    tokens_valid_from: Option<OffsetDateTime>,
    /// The user changed their password: public clients' refresh tokens from before are
    /// revoked, confidential clients' stay alive.
    password_changed_at: Option<OffsetDateTime>,
    interaction: Option<(Interaction, OffsetDateTime)>,
}

/// The delegated flows' state, inside the sandbox state.
#[derive(Debug)]
pub(crate) struct DelegatedState {
    codes: HashMap<String, AuthCode>,
    refresh: HashMap<String, RefreshGrant>,
    /// By device code.
    devices: HashMap<String, DeviceGrant>,
    /// User code → device code.
    user_codes: HashMap<String, String>,
    /// Consent (oauth2PermissionGrant): (tenant, lowercased client id, user) → scopes.
    consents: HashMap<(usize, String, usize), BTreeSet<String>>,
    users: HashMap<usize, UserAuth>,
    pub(crate) interactive_user: Option<String>,
    pub(crate) outcome: InteractiveOutcome,
    pub(crate) refresh_inactivity: time::Duration,
    /// Whether a redeemed refresh token may be redeemed again (Entra: yes).
    pub(crate) refresh_reuse: bool,
    pub(crate) device_lifetime: u64,
    pub(crate) device_interval: u64,
    pub(crate) stats: DelegatedStats,
}

impl Default for DelegatedState {
    fn default() -> Self {
        Self {
            codes: HashMap::new(),
            refresh: HashMap::new(),
            devices: HashMap::new(),
            user_codes: HashMap::new(),
            consents: HashMap::new(),
            users: HashMap::new(),
            interactive_user: None,
            outcome: InteractiveOutcome::Approve,
            refresh_inactivity: time::Duration::days(DEFAULT_REFRESH_INACTIVITY_DAYS),
            refresh_reuse: true,
            device_lifetime: DEFAULT_DEVICE_CODE_SECONDS,
            device_interval: DEFAULT_DEVICE_CODE_INTERVAL,
            stats: DelegatedStats::default(),
        }
    }
}

impl DelegatedState {
    /// Every refresh token issued.
    pub(crate) fn refresh_tokens(&self) -> Vec<String> {
        self.refresh.keys().cloned().collect()
    }

    fn consent(&self, tenant: usize, client_id: &str, user: usize) -> Option<&BTreeSet<String>> {
        self.consents
            .get(&(tenant, client_id.to_ascii_lowercase(), user))
    }

    fn grant_consent(&mut self, tenant: usize, client_id: &str, user: usize, scopes: &[String]) {
        self.consents
            .entry((tenant, client_id.to_ascii_lowercase(), user))
            .or_default()
            .extend(scopes.iter().cloned());
    }
}

// ---------------------------------------------------------------------------------------------
// Control (the test plays the user and the administrator).

impl SandboxState {
    /// A user of any tenant by address, if they can sign in (not deleted, not a shared
    /// mailbox, whose account is disabled).
    fn sign_in_user(&self, address: &str) -> Option<usize> {
        let idx = self.find_mailbox(address)?;
        let mb = self.mailbox(idx)?;
        (!mb.deleted && mb.kind != MailboxKind::Shared).then_some(idx)
    }

    /// Approves a pending device code as `user`; false if the code is unknown, expired or no
    /// longer pending, or the user cannot sign in to its tenant (or is blocked).
    pub(crate) fn approve_device_code(
        &mut self,
        user_code: &str,
        user: &str,
        now: OffsetDateTime,
    ) -> bool {
        let Some(user_idx) = self.sign_in_user(user) else {
            return false;
        };
        let user_tenant = self.mailbox(user_idx).map(|m| m.tenant);
        let d = &mut self.delegated;
        let key = normalize_user_code(user_code);
        let Some(device_code) = d.user_codes.get(&key).cloned() else {
            return false;
        };
        let blocked = d
            .users
            .get(&user_idx)
            .and_then(|u| u.interaction)
            .is_some_and(|(i, _)| i == Interaction::Blocked);
        let Some(grant) = d.devices.get_mut(&device_code) else {
            return false;
        };
        if grant.status != DeviceStatus::Pending
            || now >= grant.expires_at
            || user_tenant != Some(grant.tenant)
            || blocked
        {
            return false;
        }
        grant.status = DeviceStatus::Approved(user_idx, now);
        let (tenant, client_id) = (grant.tenant, grant.client_id.clone());
        let mut scopes = grant.graph.clone();
        scopes.extend(grant.oidc.iter().cloned());
        // Approving on the verification page includes consenting to what the app asked for.
        d.grant_consent(tenant, &client_id, user_idx, &scopes);
        true
    }

    pub(crate) fn decline_device_code(&mut self, user_code: &str, now: OffsetDateTime) -> bool {
        let d = &mut self.delegated;
        let key = normalize_user_code(user_code);
        let Some(device_code) = d.user_codes.get(&key).cloned() else {
            return false;
        };
        match d.devices.get_mut(&device_code) {
            Some(g) if g.status == DeviceStatus::Pending && now < g.expires_at => {
                g.status = DeviceStatus::Declined;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn revoke_refresh_tokens(&mut self, user: &str, now: OffsetDateTime) -> bool {
        let Some(idx) = self.find_mailbox(user) else {
            return false;
        };
        self.delegated
            .users
            .entry(idx)
            .or_default()
            .tokens_valid_from = Some(now);
        true
    }

    pub(crate) fn change_password(&mut self, user: &str, now: OffsetDateTime) -> bool {
        let Some(idx) = self.find_mailbox(user) else {
            return false;
        };
        self.delegated
            .users
            .entry(idx)
            .or_default()
            .password_changed_at = Some(now);
        true
    }

    pub(crate) fn withdraw_consent(&mut self, client_id: &str, user: &str) -> bool {
        let Some(idx) = self.find_mailbox(user) else {
            return false;
        };
        let before = self.delegated.consents.len();
        let client = client_id.to_ascii_lowercase();
        self.delegated
            .consents
            .retain(|(_, c, u), _| !(*c == client && *u == idx));
        self.delegated.consents.len() != before
    }

    pub(crate) fn require_interaction(
        &mut self,
        user: &str,
        kind: Option<Interaction>,
        now: OffsetDateTime,
    ) -> bool {
        let Some(idx) = self.find_mailbox(user) else {
            return false;
        };
        self.delegated.users.entry(idx).or_default().interaction = kind.map(|k| (k, now));
        true
    }

    /// The user codes of the device codes still pending, sorted.
    pub(crate) fn pending_user_codes(&self, now: OffsetDateTime) -> Vec<String> {
        let mut v: Vec<String> = self
            .delegated
            .devices
            .values()
            .filter(|g| g.status == DeviceStatus::Pending && now < g.expires_at)
            .map(|g| g.user_code.clone())
            .collect();
        v.sort();
        v
    }
}

fn normalize_user_code(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_ascii_uppercase()
}

// ---------------------------------------------------------------------------------------------
// Scopes.

/// A parsed `scope` parameter.
#[derive(Clone, Debug, Default)]
struct Scopes {
    graph: Vec<String>,
    oidc: Vec<String>,
    /// `https://graph.microsoft.com/.default`: every permission configured on the app.
    default: bool,
}

/// Parses a space-separated scope list into canonical Graph permission names and OIDC
/// scopes; `Err` names the first scope that is not valid.
fn parse_scopes(raw: &str) -> Result<Scopes, String> {
    let mut out = Scopes::default();
    for item in raw.split_whitespace() {
        if let Some(o) = OIDC_SCOPES.iter().find(|o| o.eq_ignore_ascii_case(item)) {
            push_unique(&mut out.oidc, o);
            continue;
        }
        let name = GRAPH_PREFIXES
            .iter()
            .find_map(|p| {
                item.get(..p.len())
                    .filter(|head| head.eq_ignore_ascii_case(p))
                    .and_then(|_| item.get(p.len()..))
            })
            .or_else(|| (!item.contains('/') && !item.contains(':')).then_some(item))
            .ok_or_else(|| item.to_owned())?;
        if name == ".default" {
            out.default = true;
            continue;
        }
        if let Some(o) = OIDC_SCOPES.iter().find(|o| o.eq_ignore_ascii_case(name)) {
            push_unique(&mut out.oidc, o);
            continue;
        }
        let known = KNOWN_SCOPES
            .iter()
            .find(|k| k.eq_ignore_ascii_case(name))
            .ok_or_else(|| item.to_owned())?;
        push_unique(&mut out.graph, known);
    }
    Ok(out)
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_owned());
    }
}

fn invalid_scope(scope: &str) -> AadError {
    AadError::new(
        StatusCode::BAD_REQUEST,
        "invalid_scope",
        70_011,
        format!(
            "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
        ),
    )
}

/// Resolves the requested scopes against the app's configured delegated permissions.
fn resolve_scopes(app: &AppState, raw: &str) -> Result<Scopes, AadError> {
    let mut s = parse_scopes(raw).map_err(|bad| invalid_scope(&bad))?;
    if s.default {
        if !s.graph.is_empty() {
            return Err(AadError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                70_011,
                format!(
                    "The provided value for the input parameter 'scope' is not valid. The scope '{raw}' does not exist: /.default cannot be combined with resource-specific scopes."
                ),
            ));
        }
        s.graph = app
            .delegated_permissions
            .iter()
            .filter_map(|p| KNOWN_SCOPES.iter().find(|k| k.eq_ignore_ascii_case(p)))
            .map(|k| (*k).to_owned())
            .collect();
    }
    if let Some(missing) = s.graph.iter().find(|g| {
        !app.delegated_permissions
            .iter()
            .any(|p| p.eq_ignore_ascii_case(g))
    }) {
        // Entra would ask the user to consent to a permission the registration does not
        // configure (dynamic consent); the sandbox refuses it (docs/graph.md section 13).
        return Err(invalid_scope(&format!(
            "https://graph.microsoft.com/{missing}"
        )));
    }
    if s.graph.is_empty() && s.oidc.iter().all(|o| o == "offline_access") {
        return Err(AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70_011,
            format!(
                "The provided value for the input parameter 'scope' is not valid. The scope '{raw}' asks for no permission of a resource."
            ),
        ));
    }
    Ok(s)
}

fn all_scopes(graph: &[String], oidc: &[String]) -> Vec<String> {
    graph.iter().chain(oidc.iter()).cloned().collect()
}

// ---------------------------------------------------------------------------------------------
// Redirect URIs.

/// Whether `requested` matches `registered`: scheme, host, path (case-sensitive) and query
/// must be equal; the port must be too, except on the loopback hosts, where Entra ignores it
/// (docs/graph.md section 13).
pub(crate) fn redirect_matches(registered: &str, requested: &str) -> bool {
    let (Ok(r), Ok(q)) = (url::Url::parse(registered), url::Url::parse(requested)) else {
        return false;
    };
    if q.fragment().is_some() {
        return false;
    }
    let loopback = matches!(r.host_str(), Some("localhost" | "127.0.0.1"));
    r.scheme() == q.scheme()
        && r.host_str() == q.host_str()
        && (loopback || r.port_or_known_default() == q.port_or_known_default())
        && r.path() == q.path()
        && r.query() == q.query()
}

/// The app's registered redirect URI `requested` matches: `Some(true)` public client,
/// `Some(false)` web (confidential).
fn match_redirect(app: &AppState, requested: &str) -> Option<bool> {
    if app
        .public_redirect_uris
        .iter()
        .any(|r| redirect_matches(r, requested))
    {
        return Some(true);
    }
    app.web_redirect_uris
        .iter()
        .any(|r| redirect_matches(r, requested))
        .then_some(false)
}

// ---------------------------------------------------------------------------------------------
// GET /{tenant}/oauth2/v2.0/authorize

/// How the answer goes back to the app.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Query,
    Fragment,
    FormPost,
}

/// `GET /{tenant}/oauth2/v2.0/authorize`.
pub(crate) async fn authorize(
    State(core): State<Arc<Core>>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let client_id = param("client_id").map(str::to_owned);
    let raw_path = format!("/{tenant}/oauth2/v2.0/authorize");
    let correlation_id = header_str(&headers, "client-request-id")
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let response = {
        let now = core.now();
        let mut st = lock(&core.state);
        authorize_in(&mut st, &tenant, &param, now, &correlation_id)
    };
    let status = response.status().as_u16();
    core.record(RequestRecord {
        method: "GET".to_owned(),
        path: raw_path.clone(),
        raw_path,
        query: String::new(),
        status,
        mailbox: None,
        client_id,
        immutable_ids: false,
        client_request_id: header_str(&headers, "client-request-id").map(str::to_owned),
        request_id: correlation_id,
        fault: None,
        started,
        finished: Instant::now(),
    });
    response
}

/// An error Entra shows on its own page instead of redirecting (the redirect URI cannot be
/// trusted, RFC 6749 section 4.1.2.1).
fn error_page(e: &AadError, now: OffsetDateTime, correlation_id: &str) -> Response {
    let body = e.body(now, correlation_id);
    let description = body["error_description"].as_str().unwrap_or_default();
    let html = format!(
        "<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body><h1>Sorry, but we're having trouble signing you in.</h1><p id=\"error\">{}</p><p id=\"error_description\">{}</p></body></html>",
        html_escape(e.error),
        html_escape(description)
    );
    (
        e.status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Sends `pairs` to the redirect URI the way `mode` says.
fn send_back(redirect_uri: &str, mode: Mode, pairs: &[(&str, &str)]) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return (StatusCode::BAD_REQUEST, "invalid redirect_uri").into_response();
    };
    match mode {
        Mode::Query => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
            }
            redirect(url.as_str())
        }
        Mode::Fragment => {
            let fragment: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs.iter())
                .finish();
            url.set_fragment(Some(&fragment));
            redirect(url.as_str())
        }
        Mode::FormPost => {
            let inputs: String = pairs
                .iter()
                .map(|(k, v)| {
                    format!(
                        "<input type=\"hidden\" name=\"{}\" value=\"{}\" />",
                        html_escape(k),
                        html_escape(v)
                    )
                })
                .collect();
            let html = format!(
                "<html><head><title>Working...</title></head><body><form method=\"POST\" name=\"hiddenform\" action=\"{}\">{inputs}<noscript><p>Script is disabled. Click Submit to continue.</p><input type=\"submit\" value=\"Submit\" /></noscript></form><script language=\"javascript\">document.forms[0].submit();</script></body></html>",
                html_escape(url.as_str())
            );
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html,
            )
                .into_response()
        }
    }
}

fn redirect(location: &str) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    response
}

fn authorize_in<'a>(
    st: &mut SandboxState,
    tenant: &str,
    param: &impl Fn(&str) -> Option<&'a str>,
    now: OffsetDateTime,
    correlation_id: &str,
) -> Response {
    let page = |e: AadError| error_page(&e, now, correlation_id);
    let Some(tenant_idx) = st.find_tenant(tenant) else {
        return page(invalid_tenant(tenant));
    };
    let Some(client_id) = param("client_id") else {
        return page(missing_param("client_id"));
    };
    let Some(app) = st.tenants.get(tenant_idx).and_then(|t| t.app(client_id)) else {
        return page(unknown_app(client_id, tenant));
    };
    let Some(redirect_uri) = param("redirect_uri") else {
        return page(AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900_971,
            "No reply address provided.".to_owned(),
        ));
    };
    let Some(public) = match_redirect(app, redirect_uri) else {
        return page(AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50_011,
            format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix this."
            ),
        ));
    };
    let app_client_id = app.client_id.clone();
    let state_param = param("state");
    let mode = match param("response_mode") {
        None | Some("query") => Mode::Query,
        Some("fragment") => Mode::Fragment,
        Some("form_post") => Mode::FormPost,
        Some(other) => {
            return fail(
                redirect_uri,
                Mode::Query,
                state_param,
                &AadError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    70_007,
                    format!("The response_mode '{other}' is not supported."),
                ),
                now,
                correlation_id,
            );
        }
    };
    let fail_with = |e: AadError| fail(redirect_uri, mode, state_param, &e, now, correlation_id);
    match param("response_type") {
        None => return fail_with(missing_param("response_type")),
        Some("code") => {}
        Some(other) => {
            return fail_with(AadError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_response_type",
                70_005,
                format!(
                    "The sandbox supports response_type 'code' only, not '{other}' (the hybrid and implicit flows are not modelled)."
                ),
            ));
        }
    }
    let Some(raw_scope) = param("scope") else {
        return fail_with(missing_param("scope"));
    };
    let scopes = match resolve_scopes(app, raw_scope) {
        Ok(s) => s,
        Err(e) => return fail_with(e),
    };
    let challenge = match (param("code_challenge"), param("code_challenge_method")) {
        (None, None) => None,
        (None, Some(_)) => return fail_with(missing_param("code_challenge")),
        (Some(c), method) => {
            let method = match method {
                None | Some("plain") => "plain",
                Some("S256") => "S256",
                Some(_) => {
                    return fail_with(AadError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        50_149,
                        "Invalid Code_Challenge_method parameter.".to_owned(),
                    ));
                }
            };
            // RFC 7636 section 4.1-4.2: 43 to 128 characters.
            if !(43..=128).contains(&c.len()) {
                return fail_with(AadError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    501_491,
                    "Invalid size of Code_Challenge parameter.".to_owned(),
                ));
            }
            Some((c.to_owned(), method.to_owned()))
        }
    };
    let prompt = param("prompt");
    if let Some(p) = prompt
        && !["login", "none", "consent", "select_account"].contains(&p)
    {
        return fail_with(AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90_023,
            format!("Invalid prompt value '{p}': use login, none, consent or select_account."),
        ));
    }
    let silent = prompt == Some("none");
    // The user: the login_hint if it names one, else whoever the test set as the person at
    // the browser.
    let in_tenant = |st: &SandboxState, a: &str| {
        st.sign_in_user(a)
            .filter(|i| st.mailbox(*i).is_some_and(|m| m.tenant == tenant_idx))
    };
    let user = param("login_hint")
        .and_then(|h| in_tenant(st, h))
        .or_else(|| {
            st.delegated
                .interactive_user
                .clone()
                .and_then(|u| in_tenant(st, &u))
        });
    let Some(user) = user else {
        return fail_with(AadError::new(
            StatusCode::BAD_REQUEST,
            "login_required",
            50_058,
            "A silent sign-in request was sent but no user is signed in.".to_owned(),
        ));
    };
    let interaction = st.delegated.users.get(&user).and_then(|u| u.interaction);
    if let Some((Interaction::Blocked, _)) = interaction {
        return fail_with(AadError::new(
            StatusCode::BAD_REQUEST,
            "access_denied",
            Interaction::Blocked.code(),
            Interaction::Blocked.description().to_owned(),
        ));
    }
    let outcome = st.delegated.outcome;
    if silent {
        if let Some((kind, _)) = interaction {
            return fail_with(AadError::new(
                StatusCode::BAD_REQUEST,
                "interaction_required",
                kind.code(),
                kind.description().to_owned(),
            ));
        }
    } else if outcome == InteractiveOutcome::Cancel {
        return fail_with(AadError::new(
            StatusCode::BAD_REQUEST,
            "access_denied",
            65_004,
            "User declined to consent to access the app.".to_owned(),
        ));
    }
    let requested = all_scopes(&scopes.graph, &scopes.oidc);
    let consented = st.delegated.consent(tenant_idx, &app_client_id, user);
    let needs_consent = prompt == Some("consent")
        || requested
            .iter()
            .any(|s| !consented.is_some_and(|c| c.contains(s)));
    if needs_consent {
        if silent || outcome == InteractiveOutcome::ConsentRequired {
            return fail_with(AadError::new(
                StatusCode::BAD_REQUEST,
                "consent_required",
                65_001,
                format!(
                    "The user or administrator has not consented to use the application with ID '{app_client_id}'. Send an interactive authorization request for this user and resource."
                ),
            ));
        }
        st.delegated
            .grant_consent(tenant_idx, &app_client_id, user, &requested);
    }
    let code = new_opaque("1.A", 150);
    st.delegated.codes.insert(
        code.clone(),
        AuthCode {
            grant: Grant {
                tenant: tenant_idx,
                client_id: app_client_id,
                user,
                graph: scopes.graph,
                oidc: scopes.oidc,
                authenticated_at: now,
                public,
            },
            redirect_uri: redirect_uri.to_owned(),
            challenge,
            expires_at: now + time::Duration::seconds(AUTHORIZATION_CODE_SECONDS),
            redeemed: false,
        },
    );
    st.delegated.stats.authorization_codes_issued += 1;
    let mut pairs = vec![("code", code.as_str())];
    if let Some(s) = state_param {
        pairs.push(("state", s));
    }
    send_back(redirect_uri, mode, &pairs)
}

/// An error sent back to the app's redirect URI, with the `state` it sent.
fn fail(
    redirect_uri: &str,
    mode: Mode,
    state: Option<&str>,
    e: &AadError,
    now: OffsetDateTime,
    correlation_id: &str,
) -> Response {
    let body = e.body(now, correlation_id);
    let description = body["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let uri = body["error_uri"].as_str().unwrap_or_default().to_owned();
    let mut pairs = vec![
        ("error", e.error),
        ("error_description", description.as_str()),
        ("error_uri", uri.as_str()),
    ];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    send_back(redirect_uri, mode, &pairs)
}

// ---------------------------------------------------------------------------------------------
// POST /{tenant}/oauth2/v2.0/devicecode

/// `POST /{tenant}/oauth2/v2.0/devicecode`.
pub(crate) async fn devicecode(
    State(core): State<Arc<Core>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let form = crate::auth::Form::parse(&body);
    let field = |name: &str| form.get(name).filter(|v| !v.is_empty());
    let correlation_id = header_str(&headers, "client-request-id")
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let now = core.now();
    let outcome = {
        let mut st = lock(&core.state);
        devicecode_in(&mut st, &tenant, &field, now)
    };
    let (status, value) = match outcome {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => (e.status, e.body(now, &correlation_id)),
    };
    let raw_path = format!("/{tenant}/oauth2/v2.0/devicecode");
    core.record(RequestRecord {
        method: "POST".to_owned(),
        path: raw_path.clone(),
        raw_path,
        query: String::new(),
        status: status.as_u16(),
        mailbox: None,
        client_id: field("client_id").map(str::to_owned),
        immutable_ids: false,
        client_request_id: header_str(&headers, "client-request-id").map(str::to_owned),
        request_id: correlation_id,
        fault: None,
        started,
        finished: Instant::now(),
    });
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store, no-cache"),
        ],
        serde_json::to_vec(&value).unwrap_or_default(),
    )
        .into_response()
}

fn devicecode_in<'a>(
    st: &mut SandboxState,
    tenant: &str,
    field: &impl Fn(&str) -> Option<&'a str>,
    now: OffsetDateTime,
) -> Result<Value, AadError> {
    let tenant_idx = st
        .find_tenant(tenant)
        .ok_or_else(|| invalid_tenant(tenant))?;
    let client_id = field("client_id").ok_or_else(|| missing_param("client_id"))?;
    let app = st
        .tenants
        .get(tenant_idx)
        .and_then(|t| t.app(client_id))
        .ok_or_else(|| unknown_app(client_id, tenant))?;
    let raw_scope = field("scope").ok_or_else(|| missing_param("scope"))?;
    let scopes = resolve_scopes(app, raw_scope)?;
    let app_client_id = app.client_id.clone();
    let d = &mut st.delegated;
    let device_code = new_opaque("DAQABAAEAAAD", 180);
    let user_code = loop {
        let c = new_user_code();
        if !d.user_codes.contains_key(&c) {
            break c;
        }
    };
    let lifetime = d.device_lifetime;
    d.devices.insert(
        device_code.clone(),
        DeviceGrant {
            tenant: tenant_idx,
            client_id: app_client_id,
            graph: scopes.graph,
            oidc: scopes.oidc,
            user_code: user_code.clone(),
            expires_at: now + time::Duration::seconds(i64::try_from(lifetime).unwrap_or(900)),
            interval: d.device_interval,
            last_poll: None,
            status: DeviceStatus::Pending,
        },
    );
    d.user_codes.insert(user_code.clone(), device_code.clone());
    d.stats.device_codes_issued += 1;
    Ok(json!({
        "user_code": user_code,
        "device_code": device_code,
        "verification_uri": VERIFICATION_URI,
        "expires_in": lifetime,
        "interval": d.device_interval,
        "message": format!(
            "To sign in, use a web browser to open the page {VERIFICATION_URI} and enter the code {user_code} to authenticate."
        ),
    }))
}

/// Nine characters from an alphabet without look-alikes, as Entra's user codes look.
fn new_user_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..9)
        .map(|_| {
            let i = fastrand::usize(..ALPHABET.len());
            char::from(ALPHABET.get(i).copied().unwrap_or(b'A'))
        })
        .collect()
}

/// An opaque token: a prefix and `n` random bytes, base64url.
fn new_opaque(prefix: &str, n: usize) -> String {
    let mut bytes = vec![0u8; n];
    fastrand::fill(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

// ---------------------------------------------------------------------------------------------
// The token endpoint's delegated grants.

fn invalid_tenant(tenant: &str) -> AadError {
    AadError::new(
        StatusCode::BAD_REQUEST,
        "invalid_tenant",
        90_002,
        format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        ),
    )
}

fn unknown_app(client_id: &str, tenant: &str) -> AadError {
    AadError::new(
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
        700_016,
        format!(
            "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
        ),
    )
}

fn missing_param(name: &str) -> AadError {
    AadError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900_144,
        format!("The request body must contain the following parameter: '{name}'."),
    )
}

fn invalid_grant(code: u32, description: String) -> AadError {
    AadError::new(StatusCode::BAD_REQUEST, "invalid_grant", code, description)
}

fn malformed_grant() -> AadError {
    invalid_grant(
        9_002_313,
        "Invalid request. Request is malformed or invalid.".to_owned(),
    )
}

fn no_consent(client_id: &str) -> AadError {
    invalid_grant(
        65_001,
        format!(
            "The user or administrator has not consented to use the application with ID '{client_id}'. Send an interactive authorization request for this user and resource."
        ),
    )
}

fn device_error(error: &'static str, code: u32, description: &str) -> AadError {
    AadError::new(StatusCode::BAD_REQUEST, error, code, description.to_owned())
}

/// A delegated grant at the token endpoint: `authorization_code`, `refresh_token` or the
/// device code grant. `st` is locked; `tenant` was found.
#[allow(clippy::too_many_arguments)]
pub(crate) fn redeem<'a>(
    core: &Core,
    st: &mut SandboxState,
    tenant_idx: usize,
    tenant: &str,
    base: &str,
    grant_type: &str,
    field: &impl Fn(&str) -> Option<&'a str>,
    credentials: &Credentials<'_>,
    now: OffsetDateTime,
) -> Result<Value, AadError> {
    let client_id = credentials
        .client_id
        .ok_or_else(|| missing_param("client_id"))?;
    let tenant_state = st
        .tenants
        .get(tenant_idx)
        .ok_or_else(|| invalid_tenant(tenant))?;
    let app = tenant_state
        .app(client_id)
        .ok_or_else(|| unknown_app(client_id, tenant))?;
    let app_client_id = app.client_id.clone();
    let authenticate = |public: bool| -> Result<(), AadError> {
        check_client(
            core,
            base,
            tenant,
            tenant_state,
            app,
            credentials,
            public,
            now,
        )
    };
    match grant_type {
        "authorization_code" => {
            let code = field("code").ok_or_else(|| missing_param("code"))?;
            let redirect_uri =
                field("redirect_uri").ok_or_else(|| missing_param("redirect_uri"))?;
            let entry = st.delegated.codes.get(code).ok_or_else(malformed_grant)?;
            if entry.grant.tenant != tenant_idx {
                return Err(invalid_grant(
                    700_005,
                    "Provided Authorization Code is intended to use against other tenant, thus rejected.".to_owned(),
                ));
            }
            if !entry.grant.client_id.eq_ignore_ascii_case(&app_client_id) {
                return Err(invalid_grant(
                    70_000,
                    "The provided value for the 'code' parameter is not valid: it was issued to another client.".to_owned(),
                ));
            }
            if entry.redeemed {
                return Err(invalid_grant(
                    54_005,
                    "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.".to_owned(),
                ));
            }
            if now >= entry.expires_at {
                return Err(invalid_grant(
                    70_008,
                    "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.".to_owned(),
                ));
            }
            if entry.redirect_uri != redirect_uri {
                return Err(invalid_grant(
                    50_011,
                    format!(
                        "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URI the authorization code was issued to."
                    ),
                ));
            }
            if let Some((challenge, method)) = &entry.challenge {
                let verifier =
                    field("code_verifier").ok_or_else(|| missing_param("code_verifier"))?;
                if !pkce_matches(challenge, method, verifier) {
                    return Err(invalid_grant(
                        501_481,
                        "The Code_Verifier does not match the code_challenge supplied in the authorization request.".to_owned(),
                    ));
                }
            }
            authenticate(entry.grant.public)?;
            let grant = entry.grant.clone();
            let scope = field("scope")
                .map(parse_scopes)
                .transpose()
                .map_err(|bad| invalid_scope(&bad))?;
            // Checked before the code is spent, so a refusal leaves it usable. More scopes than
            // were consented to: "consent_required … Returned when a scope parameter was used
            // on the code redemption flow that the client app doesn't have permission to
            // request."
            check_consent(st, &grant, scope.as_ref()).map_err(|e| {
                if scope.is_some() && e.error == "invalid_grant" {
                    AadError::new(
                        StatusCode::BAD_REQUEST,
                        "consent_required",
                        65_001,
                        format!(
                            "The user or administrator has not consented to use the application with ID '{app_client_id}' for the requested scopes. Send an interactive authorization request for this user and resource."
                        ),
                    )
                } else {
                    e
                }
            })?;
            if let Some(entry) = st.delegated.codes.get_mut(code) {
                entry.redeemed = true;
            }
            st.delegated.stats.authorization_codes_redeemed += 1;
            issue_tokens(st, &grant, now)
        }
        "refresh_token" => {
            let token = field("refresh_token").ok_or_else(|| missing_param("refresh_token"))?;
            let entry = st
                .delegated
                .refresh
                .get(token)
                .ok_or_else(malformed_grant)?;
            let grant = entry.grant.clone();
            let (issued_at, redeemed) = (entry.issued_at, entry.redeemed);
            if grant.tenant != tenant_idx || !grant.client_id.eq_ignore_ascii_case(&app_client_id) {
                // "Refresh tokens are bound to a combination of user and client."
                return Err(invalid_grant(
                    70_000,
                    "The provided value for the 'refresh_token' parameter is not valid: it was issued to another client.".to_owned(),
                ));
            }
            authenticate(grant.public)?;
            if redeemed {
                st.delegated.stats.refresh_token_reuses += 1;
                if !st.delegated.refresh_reuse {
                    return Err(invalid_grant(
                        70_000,
                        "The provided value for the 'refresh_token' parameter is not valid: it was already redeemed (the sandbox rejects redeemed refresh tokens: Sandbox::set_refresh_token_reuse(false)).".to_owned(),
                    ));
                }
            }
            let inactive = now - issued_at;
            if inactive >= st.delegated.refresh_inactivity {
                // `suberror` `bad_token`: observed (microsoft/foundry-dev-tools#707).
                return Err(invalid_grant(
                    700_082,
                    format!(
                        "The refresh token has expired due to inactivity. The token was issued on {} and was inactive for {}.",
                        crate::subscriptions::precise_time(issued_at),
                        dotnet_span(st.delegated.refresh_inactivity)
                    ),
                )
                .with_suberror("bad_token"));
            }
            check_user(st, &grant)?;
            let scope = field("scope")
                .map(parse_scopes)
                .transpose()
                .map_err(|bad| invalid_scope(&bad))?;
            check_consent(st, &grant, scope.as_ref())?;
            if let Some(entry) = st.delegated.refresh.get_mut(token) {
                entry.redeemed = true;
            }
            st.delegated.stats.refresh_redemptions += 1;
            issue_tokens(st, &grant, now)
        }
        DEVICE_CODE_GRANT => {
            st.delegated.stats.device_code_polls += 1;
            let device_code = field("device_code").ok_or_else(|| missing_param("device_code"))?;
            let unrecognised = || {
                device_error(
                    "bad_verification_code",
                    70_000,
                    "The provided value for the input parameter 'device_code' is not valid.",
                )
            };
            let d = st
                .delegated
                .devices
                .get(device_code)
                .ok_or_else(unrecognised)?;
            if d.tenant != tenant_idx || !d.client_id.eq_ignore_ascii_case(&app_client_id) {
                return Err(unrecognised());
            }
            // A public client sends nothing; an app without public client flows must
            // authenticate like a confidential client.
            let public = credentials.secret.is_none() && credentials.assertion.is_none();
            if !public || !app.public_client_flows {
                authenticate(false)?;
            }
            let d = st
                .delegated
                .devices
                .get_mut(device_code)
                .ok_or_else(unrecognised)?;
            if now >= d.expires_at && d.status != DeviceStatus::Redeemed {
                return Err(device_error(
                    "expired_token",
                    70_020,
                    "The provided value for the input parameter 'device_code' is not valid. This device code has expired.",
                ));
            }
            let too_soon = d.last_poll.is_some_and(|last| {
                now - last < time::Duration::seconds(i64::try_from(d.interval).unwrap_or(5))
            });
            d.last_poll = Some(now);
            match d.status.clone() {
                DeviceStatus::Declined => Err(device_error(
                    "authorization_declined",
                    70_000,
                    "The user denied the authorization request.",
                )),
                DeviceStatus::Redeemed => Err(invalid_grant(
                    54_005,
                    "The device code was already redeemed; start a new device code flow or use the refresh token.".to_owned(),
                )),
                DeviceStatus::Pending if too_soon => {
                    d.interval += SLOW_DOWN_STEP;
                    Err(device_error(
                        "slow_down",
                        70_016,
                        "The client is polling faster than the interval; wait longer between requests.",
                    ))
                }
                DeviceStatus::Pending => Err(device_error(
                    "authorization_pending",
                    70_016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                )),
                DeviceStatus::Approved(user, authenticated_at) => {
                    d.status = DeviceStatus::Redeemed;
                    let grant = Grant {
                        tenant: tenant_idx,
                        client_id: app_client_id,
                        user,
                        graph: d.graph.clone(),
                        oidc: d.oidc.clone(),
                        authenticated_at,
                        public,
                    };
                    check_consent(st, &grant, None)?;
                    issue_tokens(st, &grant, now)
                }
            }
        }
        _ => Err(AadError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70_003,
            format!("The app requested an unsupported grant type '{grant_type}'."),
        )),
    }
}

/// A public client must send no credential (AADSTS700025); a confidential one must send a
/// valid one (the client-credentials checks).
#[allow(clippy::too_many_arguments)]
fn check_client(
    core: &Core,
    base: &str,
    tenant: &str,
    tenant_state: &TenantState,
    app: &AppState,
    credentials: &Credentials<'_>,
    public: bool,
    now: OffsetDateTime,
) -> Result<(), AadError> {
    if public {
        if credentials.secret.is_some() || credentials.assertion.is_some() {
            return Err(AadError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                700_025,
                "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.".to_owned(),
            ));
        }
        return Ok(());
    }
    verify_client(core, base, tenant, tenant_state, app, credentials, now)
}

/// RFC 7636 section 4.6.
fn pkce_matches(challenge: &str, method: &str, verifier: &str) -> bool {
    match method {
        "S256" => URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == challenge,
        _ => verifier == challenge,
    }
}

/// Revocation and interaction requirements of the grant's user (docs/graph.md section 13).
fn check_user(st: &SandboxState, grant: &Grant) -> Result<(), AadError> {
    let Some(u) = st.delegated.users.get(&grant.user) else {
        return Ok(());
    };
    let revoked_from = u
        .tokens_valid_from
        .into_iter()
        .chain(u.password_changed_at.filter(|_| grant.public))
        .filter(|t| grant.authenticated_at < *t)
        .max();
    if let Some(valid_from) = revoked_from {
        return Err(invalid_grant(
            50_173,
            format!(
                "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. The grant was issued on '{}' and the TokensValidFrom date (before which tokens are not valid) for this user is '{}'.",
                crate::subscriptions::precise_time(grant.authenticated_at),
                crate::subscriptions::precise_time(valid_from)
            ),
        ));
    }
    if let Some((kind, since)) = u.interaction
        && (kind == Interaction::Blocked || grant.authenticated_at < since)
    {
        let e = invalid_grant(kind.code(), kind.description().to_owned());
        return Err(match kind.suberror() {
            Some(sub) => e.with_suberror(sub),
            None => e,
        });
    }
    Ok(())
}

/// The user's consent still covers the grant (and `scope`, if the request names scopes).
fn check_consent(st: &SandboxState, grant: &Grant, scope: Option<&Scopes>) -> Result<(), AadError> {
    let consent = st
        .delegated
        .consent(grant.tenant, &grant.client_id, grant.user)
        .ok_or_else(|| no_consent(&grant.client_id))?;
    let wanted: Vec<&String> = match scope {
        Some(s) if !s.default => s.graph.iter().collect(),
        _ => grant.graph.iter().collect(),
    };
    if wanted.iter().any(|g| !consent.contains(*g)) {
        return Err(no_consent(&grant.client_id));
    }
    Ok(())
}

/// The token response: a delegated access token for every Graph permission the user consented
/// to for this app, a new refresh token when `offline_access` was granted, an ID token when
/// `openid` was.
fn issue_tokens(
    st: &mut SandboxState,
    grant: &Grant,
    now: OffsetDateTime,
) -> Result<Value, AadError> {
    let consent = st
        .delegated
        .consent(grant.tenant, &grant.client_id, grant.user)
        .ok_or_else(|| no_consent(&grant.client_id))?;
    // The access token carries every Graph permission consented for this app and user, not
    // only the ones asked for (observed; docs/graph.md section 13).
    let scp: Vec<String> = consent
        .iter()
        .filter(|s| !OIDC_SCOPES.contains(&s.as_str()))
        .cloned()
        .collect();
    let (access_token, lifetime) = mint_access_token(
        st,
        now,
        grant.tenant,
        &grant.client_id,
        Some(Delegation {
            user: grant.user,
            scopes: scp.clone(),
        }),
    );
    st.delegated.stats.delegated_access_tokens += 1;
    let mut listed = scp;
    for o in ["profile", "openid", "email"] {
        if grant.oidc.iter().any(|g| g == o) {
            listed.push(o.to_owned());
        }
    }
    let mut body = json!({
        "token_type": "Bearer",
        "scope": listed.join(" "),
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access_token,
    });
    if grant.offline() {
        let token = new_opaque("1.AS", 240);
        st.delegated.refresh.insert(
            token.clone(),
            RefreshGrant {
                grant: grant.clone(),
                issued_at: now,
                redeemed: false,
            },
        );
        st.delegated.stats.refresh_tokens_issued += 1;
        body["refresh_token"] = json!(token);
    }
    if grant.oidc.iter().any(|o| o == "openid") {
        body["id_token"] = json!(id_token(st, grant, now, lifetime));
    }
    Ok(body)
}

/// An ID token shaped like Entra's v2.0 one. Its signature is random: the sandbox publishes no
/// keys, so it can be decoded but not verified.
fn id_token(st: &SandboxState, grant: &Grant, now: OffsetDateTime, lifetime: u64) -> String {
    let tenant_id = st
        .tenants
        .get(grant.tenant)
        .map(|t| t.id.clone())
        .unwrap_or_default();
    let (oid, address, name) = st.mailbox(grant.user).map_or_else(
        || (String::new(), String::new(), String::new()),
        |m| (m.id.clone(), m.address.clone(), m.display_name.clone()),
    );
    let iat = now.unix_timestamp();
    let mut claims = json!({
        "aud": grant.client_id,
        "iss": format!("https://login.microsoftonline.com/{tenant_id}/v2.0"),
        "iat": iat,
        "nbf": iat,
        "exp": iat + i64::try_from(lifetime).unwrap_or(3599),
        "oid": oid,
        "sub": URL_SAFE_NO_PAD.encode(Sha256::digest(format!("{oid}/{}", grant.client_id).as_bytes())),
        "tid": tenant_id,
        "ver": "2.0",
    });
    if grant.oidc.iter().any(|o| o == "profile") {
        claims["name"] = json!(name);
        claims["preferred_username"] = json!(address);
    }
    if grant.oidc.iter().any(|o| o == "email") {
        claims["email"] = json!(address);
    }
    let mut signature = [0u8; 64];
    fastrand::fill(&mut signature);
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"RS256","kid":"graph-sandbox"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// A .NET TimeSpan, `d.hh:mm:ss`, as in "was inactive for 90.00:00:00".
fn dotnet_span(d: time::Duration) -> String {
    let s = d.whole_seconds().max(0);
    format!(
        "{}.{:02}:{:02}:{:02}",
        s / 86_400,
        s % 86_400 / 3600,
        s % 3600 / 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_to_canonical_graph_names() {
        let s = parse_scopes(
            "https://graph.microsoft.com/mail.readwrite offline_access OPENID User.Read 00000003-0000-0000-c000-000000000000/Mail.ReadWrite.Shared",
        )
        .unwrap();
        assert_eq!(
            s.graph,
            ["Mail.ReadWrite", "User.Read", "Mail.ReadWrite.Shared"]
        );
        assert_eq!(s.oidc, ["offline_access", "openid"]);
        assert!(
            parse_scopes("https://graph.microsoft.com/.default")
                .unwrap()
                .default
        );
        assert_eq!(
            parse_scopes("Mail.Nope").unwrap_err(),
            "Mail.Nope".to_owned()
        );
        assert!(parse_scopes("https://outlook.office.com/Mail.Read").is_err());
    }

    #[test]
    fn loopback_redirects_ignore_the_port_and_nothing_else() {
        assert!(redirect_matches(
            "http://localhost",
            "http://localhost:53123"
        ));
        assert!(redirect_matches(
            "http://localhost",
            "http://localhost:53123/"
        ));
        assert!(redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:8400/cb"
        ));
        assert!(!redirect_matches(
            "http://localhost/cb",
            "http://localhost:8400/CB"
        ));
        assert!(!redirect_matches(
            "http://localhost",
            "http://127.0.0.1:8400"
        ));
        assert!(!redirect_matches(
            "https://app.contoso.com/cb",
            "https://app.contoso.com:444/cb"
        ));
        assert!(redirect_matches(
            "https://app.contoso.com/cb",
            "https://app.contoso.com:443/cb"
        ));
        assert!(!redirect_matches(
            "http://localhost",
            "http://localhost:1#frag"
        ));
    }

    #[test]
    fn pkce_s256_and_plain() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(challenge, "S256", verifier));
        assert!(!pkce_matches(challenge, "S256", "wrong"));
        assert!(pkce_matches(verifier, "plain", verifier));
    }

    #[test]
    fn spans_print_like_dotnet() {
        assert_eq!(dotnet_span(time::Duration::days(90)), "90.00:00:00");
        assert_eq!(dotnet_span(time::Duration::seconds(3661)), "0.01:01:01");
    }
}
