//! The Entra ID token endpoint (docs/graph.md section 1): `POST /{tenant}/oauth2/v2.0/token`.
//! The client-credentials grant is here, authenticated by a client secret (form field or HTTP
//! Basic) or by a client assertion signed with a registered certificate (`assertion.rs`); the
//! delegated grants (authorization code, refresh token, device code) are in `delegated.rs`
//! (docs/graph.md section 13) and reuse the same client authentication.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use time::OffsetDateTime;

use crate::assertion::{Assertion, JWT_BEARER};
use crate::body::{FaultCut, faulty_body};
use crate::core::{Core, lock};
use crate::delegated::DEVICE_CODE_GRANT;
use crate::faults::FaultKind;
use crate::graph::header_str;
use crate::ids::new_access_token;
use crate::requests::RequestRecord;
use crate::state::IssuedToken;

/// The only scope the client-credentials flow accepts here.
const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// Graph's application id; `<id>/.default` is an accepted spelling of the same scope.
const GRAPH_APP_SCOPE: &str = "00000003-0000-0000-c000-000000000000/.default";

/// An Entra (AADSTS) error.
pub(crate) struct AadError {
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    code: u32,
    description: String,
    /// Entra's `suberror` (e.g. `basic_action` with AADSTS50076), when it sends one.
    suberror: Option<&'static str>,
}

impl AadError {
    pub(crate) fn new(
        status: StatusCode,
        error: &'static str,
        code: u32,
        description: String,
    ) -> Self {
        Self {
            status,
            error,
            code,
            description,
            suberror: None,
        }
    }

    pub(crate) fn with_suberror(mut self, suberror: &'static str) -> Self {
        self.suberror = Some(suberror);
        self
    }

    /// The documented body: `error`, `error_description` ("AADSTS<code>: … Trace ID … Correlation
    /// ID … Timestamp …"), `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`.
    pub(crate) fn body(&self, now: OffsetDateTime, correlation_id: &str) -> serde_json::Value {
        let trace_id = uuid::Uuid::new_v4().to_string();
        let t = now.to_offset(time::UtcOffset::UTC);
        let timestamp = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        let mut body = json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}",
                self.code, self.description
            ),
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        });
        if let Some(s) = self.suberror {
            body["suberror"] = json!(s);
        }
        body
    }
}

fn missing(parameter: &str) -> AadError {
    AadError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900_144,
        format!("The request body must contain the following parameter: '{parameter}'."),
    )
}

/// A form-urlencoded request body, as Entra's endpoints take it.
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub(crate) fn parse(body: &[u8]) -> Self {
        Self(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of field `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub(crate) async fn token(
    State(core): State<Arc<Core>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let form = Form::parse(&body);
    let field = |name: &str| form.get(name);
    // client_secret_basic: "Basic base64(urlencoded id:urlencoded secret)".
    let basic = header_str(&headers, header::AUTHORIZATION.as_str())
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let (id, secret) = s.split_once(':')?;
            let decode = |v: &str| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            Some((decode(id), decode(secret)))
        });
    // With a client assertion `client_id` is optional (RFC 7523 section 3): the assertion's
    // subject names the client.
    let client_id = field("client_id")
        .map(str::to_owned)
        .or_else(|| basic.as_ref().map(|(id, _)| id.clone()))
        .or_else(|| {
            let jwt = Assertion::parse(field("client_assertion")?).ok()?;
            jwt.claim("sub").map(str::to_owned)
        });
    let client_secret = field("client_secret")
        .map(str::to_owned)
        .or_else(|| basic.as_ref().map(|(_, s)| s.clone()));
    // The URL the client posted to, which a client assertion's `aud` must name.
    let base = header_str(&headers, header::HOST.as_str())
        .map_or_else(|| core.url(), |h| format!("http://{h}"));
    let client_request_id = header_str(&headers, "client-request-id").map(str::to_owned);
    let correlation_id = client_request_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let raw_path = format!("/{tenant}/oauth2/v2.0/token");

    lock(&core.log).token_requests += 1;
    let mut record = RequestRecord {
        method: "POST".to_owned(),
        path: raw_path.clone(),
        raw_path: raw_path.clone(),
        query: String::new(),
        status: 200,
        mailbox: None,
        client_id: client_id.clone(),
        immutable_ids: false,
        client_request_id,
        request_id: correlation_id.clone(),
        fault: None,
        started,
        finished: started,
    };

    let mut cut = None;
    let fault = core.take_fault("POST", &raw_path, &raw_path, None);
    let outcome = match fault {
        Some(kind) => {
            record.fault = Some(kind.name().to_owned());
            match kind {
                FaultKind::Status(status, retry_after) => Err((
                    AadError::new(
                        StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                        "temporarily_unavailable",
                        50_196,
                        "The server is temporarily unavailable (injected by the sandbox)."
                            .to_owned(),
                    ),
                    retry_after,
                )),
                FaultKind::Throttle(retry_after) => Err((
                    AadError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "temporarily_unavailable",
                        50_196,
                        "The server encountered too many requests (injected by the sandbox)."
                            .to_owned(),
                    ),
                    Some(retry_after),
                )),
                FaultKind::Delay(d) => {
                    tokio::time::sleep(d).await;
                    Ok(())
                }
                FaultKind::DropConnection => {
                    cut = Some(FaultCut::Drop);
                    Ok(())
                }
                FaultKind::TruncateBody => {
                    cut = Some(FaultCut::Truncate);
                    Ok(())
                }
            }
        }
        None => Ok(()),
    };
    // Delays and cuts still answer with a real token (cut on the wire later); status faults don't.
    let outcome = outcome.and_then(|()| {
        let credentials = Credentials {
            client_id: client_id.as_deref(),
            secret: client_secret.as_deref(),
            assertion: field("client_assertion"),
            assertion_type: field("client_assertion_type"),
        };
        issue(&core, &tenant, &base, &field, &credentials).map_err(|e| (e, None))
    });

    let mut response_headers = HeaderMap::new();
    response_headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    if let Ok(v) = HeaderValue::from_str(&correlation_id) {
        response_headers.insert(HeaderName::from_static("client-request-id"), v);
    }
    let (status, value) = match outcome {
        Ok(value) => {
            lock(&core.log).tokens_issued += 1;
            (StatusCode::OK, value)
        }
        Err((e, retry_after)) => {
            if let Some(s) = retry_after
                && let Ok(v) = HeaderValue::from_str(&crate::throttle::format_seconds(s))
            {
                response_headers.insert(header::RETRY_AFTER, v);
            }
            (e.status, e.body(core.now(), &correlation_id))
        }
    };
    record.status = status.as_u16();
    record.finished = Instant::now();
    core.record(record);
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    let bytes = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
    match cut {
        None => (status, response_headers, bytes).into_response(),
        Some(cut) => {
            if let Ok(v) = HeaderValue::from_str(&bytes.len().to_string()) {
                response_headers.insert(header::CONTENT_LENGTH, v);
            }
            (status, response_headers, faulty_body(bytes, cut)).into_response()
        }
    }
}

/// How the client authenticates.
pub(crate) struct Credentials<'a> {
    pub(crate) client_id: Option<&'a str>,
    pub(crate) secret: Option<&'a str>,
    pub(crate) assertion: Option<&'a str>,
    pub(crate) assertion_type: Option<&'a str>,
}

/// Validates the request and issues a token, or says why not, in Entra's order: tenant, grant,
/// client, scope, credential.
fn issue<'a>(
    core: &Core,
    tenant: &str,
    base: &str,
    field: &impl Fn(&str) -> Option<&'a str>,
    credentials: &Credentials<'_>,
) -> Result<serde_json::Value, AadError> {
    let now = core.now();
    let mut st = lock(&core.state);
    let tenant_idx = st.find_tenant(tenant).ok_or_else(|| {
        AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            90_002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        )
    })?;
    match field("grant_type") {
        None => return Err(missing("grant_type")),
        Some("client_credentials") => {}
        Some(grant @ ("authorization_code" | "refresh_token" | DEVICE_CODE_GRANT)) => {
            return crate::delegated::redeem(
                core,
                &mut st,
                tenant_idx,
                tenant,
                base,
                grant,
                field,
                credentials,
                now,
            );
        }
        Some(other) => {
            return Err(AadError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70_003,
                format!(
                    "The app requested an unsupported grant type '{other}'; the sandbox supports client_credentials, authorization_code, refresh_token and {DEVICE_CODE_GRANT}."
                ),
            ));
        }
    }
    let client_id = credentials.client_id.ok_or_else(|| missing("client_id"))?;
    let tenant_state = st
        .tenants
        .get(tenant_idx)
        .ok_or_else(|| missing("tenant"))?;
    let app = tenant_state.app(client_id).ok_or_else(|| {
        AadError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700_016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        )
    })?;
    let scope = field("scope").map(str::trim).unwrap_or_default();
    if scope.is_empty() {
        return Err(AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70_011,
            "The provided request must include a 'scope' input parameter.".to_owned(),
        ));
    }
    let scope_ok =
        scope.eq_ignore_ascii_case(GRAPH_SCOPE) || scope.eq_ignore_ascii_case(GRAPH_APP_SCOPE);
    if !scope_ok {
        return Err(AadError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70_011,
            format!(
                "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid; client credential flows must use {GRAPH_SCOPE}."
            ),
        ));
    }
    verify_client(core, base, tenant, tenant_state, app, credentials, now)?;
    let app_client_id = app.client_id.clone();
    let (token, lifetime) = mint_access_token(&mut st, now, tenant_idx, &app_client_id, None);
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": token,
    }))
}

/// Authenticates a confidential client: exactly one of a client secret and a client assertion,
/// valid for `app` (docs/graph.md sections 1 and 9).
pub(crate) fn verify_client(
    core: &Core,
    base: &str,
    tenant: &str,
    tenant_state: &crate::state::TenantState,
    app: &crate::state::AppState,
    credentials: &Credentials<'_>,
    now: OffsetDateTime,
) -> Result<(), AadError> {
    match (credentials.secret, credentials.assertion) {
        (Some(_), Some(_)) => {
            // RFC 6749 section 2.3: one client authentication method per request.
            Err(AadError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                90_023,
                "The authentication service request isn't valid: send either 'client_secret' or 'client_assertion', not both.".to_owned(),
            ))
        }
        (None, None) => Err(AadError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7_000_218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'."
                .to_owned(),
        )),
        (None, Some(jwt)) => {
            match credentials.assertion_type {
                None => return Err(missing("client_assertion_type")),
                Some(JWT_BEARER) => {}
                // AzureAD/azure-activedirectory-library-for-ruby#53 [obs].
                Some(_) => {
                    return Err(AadError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        90_011,
                        "Unexpected client assertion type.".to_owned(),
                    ));
                }
            }
            let mut audiences = token_urls(base, tenant, tenant_state);
            let own = core.url();
            if !own.eq_ignore_ascii_case(base) {
                audiences.extend(token_urls(&own, tenant, tenant_state));
            }
            Assertion::parse(jwt)?.verify(app, &audiences, now)
        }
        (Some(secret), None) => check_secret(app, secret, now),
    }
}

/// Stores a new access token (app-only, or delegated with `delegation`) and returns it with
/// its lifetime in seconds.
pub(crate) fn mint_access_token(
    st: &mut crate::state::State,
    now: OffsetDateTime,
    tenant: usize,
    client_id: &str,
    delegation: Option<crate::state::Delegation>,
) -> (String, u64) {
    let lifetime = st.token_lifetime;
    let token = new_access_token();
    let expires_at = now
        .checked_add(time::Duration::seconds(
            i64::try_from(lifetime).unwrap_or(i64::MAX),
        ))
        .unwrap_or(now);
    st.prune_tokens(now);
    st.tokens.insert(
        token.clone(),
        IssuedToken {
            tenant,
            client_id: client_id.to_owned(),
            expires_at,
            delegation,
        },
    );
    (token, lifetime)
}

/// The token URLs a client assertion may name in `aud` under `base` (the origin the client
/// posted to; the sandbox's own URL is accepted too): this endpoint with the tenant as posted,
/// or as its id or any verified domain.
fn token_urls(base: &str, posted: &str, tenant: &crate::state::TenantState) -> Vec<String> {
    std::iter::once(posted)
        .chain(std::iter::once(tenant.id.as_str()))
        .chain(tenant.domains.iter().map(String::as_str))
        .map(|t| format!("{base}/{t}/oauth2/v2.0/token"))
        .collect()
}

/// A client secret is accepted if it matches a password credential that has started, has not
/// expired and has propagated (sandbox clock). One not yet propagated is refused exactly like
/// an unknown value, as a secret fresh from addPassword is on Entra (docs/graph.md section 9).
fn check_secret(
    app: &crate::state::AppState,
    secret: &str,
    now: OffsetDateTime,
) -> Result<(), AadError> {
    let matching: Vec<_> = app
        .passwords
        .iter()
        .filter(|p| p.value == secret && p.starts_at <= now && p.usable_from <= now)
        .collect();
    if matching.iter().any(|p| now < p.ends_at) {
        return Ok(());
    }
    if !matching.is_empty() {
        return Err(AadError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7_000_222,
            format!(
                "The provided client secret keys for app '{}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.",
                app.client_id
            ),
        ));
    }
    // The key id ("Secret ID") is not a secret value: same error as any wrong value, as on
    // Entra (docs/graph.md sections 1 and 11).
    Err(AadError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7_000_215,
        format!(
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
            app.client_id
        ),
    ))
}
