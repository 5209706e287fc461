//! The Graph client: one per process, shared by every mailbox. It owns the HTTP connection pool,
//! the token cache, the per-mailbox limiter and the retry policy; it is the only place that
//! retries Graph requests (docs/conventions.md, "Retries").

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use url::Url;

use super::auth::{TokenCache, describe};
use super::error::{
    ApiErrorBody, GraphError, Operation, classify_api_error, is_retryable_status, parse_retry_after,
};
use super::limiter::{Limiter, Permit, RequestBudget};
use super::retry::RetryPolicy;
use crate::credentials::AppCredential;
use crate::domain::MailboxAddress;
use crate::tls::CaBundle;

/// Where Graph and Entra are, and how politely to talk to them.
#[derive(Debug, Clone)]
pub struct GraphConfig {
    /// Graph's base URL (`MAILROOM_GRAPH_URL`), e.g. `https://graph.microsoft.com`. The form
    /// Microsoft's SDKs use, with the version (`https://graph.microsoft.com/v1.0`), means the same.
    pub graph_url: Url,
    /// Entra's base URL (`MAILROOM_LOGIN_URL`), e.g. `https://login.microsoftonline.com`.
    pub login_url: Url,
    /// Requests in flight per app and mailbox; Outlook allows 4 (docs/graph.md §7).
    pub per_mailbox_concurrency: usize,
    /// Requests per app and mailbox per window that Graph allows (docs/graph.md §7); the client
    /// paces each mailbox to stay within it. `None` sends as fast as the slots allow.
    pub request_budget: Option<RequestBudget>,
    /// Requests in flight across all mailboxes of this process.
    pub global_concurrency: usize,
    pub retry: RetryPolicy,
    /// Time allowed for one request up to its response headers (bodies stream on their own clock).
    pub request_timeout: Duration,
    /// Longest silence tolerated while reading a response body.
    pub read_timeout: Duration,
    /// The CA certificates to trust: the system's bundle, read once ([`crate::tls`]); `None`
    /// leaves finding them to reqwest.
    pub ca_bundle: Option<CaBundle>,
}

impl GraphConfig {
    pub const DEFAULT_GRAPH_URL: &'static str = "https://graph.microsoft.com";
    pub const DEFAULT_LOGIN_URL: &'static str = "https://login.microsoftonline.com";

    /// Configuration for the given base URLs with the default limits.
    pub fn new(graph_url: Url, login_url: Url) -> Self {
        Self {
            graph_url,
            login_url,
            per_mailbox_concurrency: 4,
            request_budget: Some(RequestBudget::default()),
            global_concurrency: 32,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(60),
            ca_bundle: CaBundle::system(),
        }
    }
}

impl GraphConfig {
    /// `{graph}/v1.0/` followed by `path` (already encoded), with no query. The configured base
    /// may or may not end in `/v1.0`: both name the same API.
    pub(crate) fn v1_url(&self, path: &str) -> Url {
        let mut url = self.graph_url.clone();
        let base = url.path().trim_end_matches('/');
        let base = base.strip_suffix("/v1.0").unwrap_or(base);
        url.set_path(&format!("{base}/v1.0/{}", path.trim_start_matches('/')));
        url.set_query(None);
        url
    }
}

/// The largest JSON response Mailroom reads; a page of 1,000 `$select`ed messages is about 1 MB.
const MAX_JSON_BODY: usize = 16 * 1024 * 1024;

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) config: GraphConfig,
    pub(crate) tokens: TokenCache,
    pub(crate) limiter: Limiter,
}

/// A Microsoft Graph client. Cheap to clone; build one per process.
#[derive(Clone)]
pub struct GraphClient {
    pub(crate) inner: Arc<Inner>,
}

impl GraphClient {
    /// Entra's delegated sign-in endpoints, through this client's HTTP connections and trusted
    /// certificates.
    pub fn sign_in(&self) -> super::signin::SignIn {
        super::signin::SignIn::new(
            self.inner.http.clone(),
            self.inner.config.login_url.clone(),
            self.inner.config.retry,
        )
    }

    pub fn new(config: GraphConfig) -> Result<Self, GraphError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(config.read_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("mailroom/", env!("CARGO_PKG_VERSION")));
        if let Some(bundle) = &config.ca_bundle {
            let certificates =
                reqwest::Certificate::from_pem_bundle(bundle.pem()).map_err(|e| {
                    GraphError::Config(format!(
                        "cannot read the CA certificates in {}: {}",
                        bundle.path().display(),
                        describe(&e)
                    ))
                })?;
            builder = builder.tls_certs_only(certificates);
        }
        let http = builder.build().map_err(|e| {
            GraphError::Config(format!("cannot build the HTTP client: {}", describe(&e)))
        })?;
        let tokens = TokenCache::new(http.clone(), config.login_url.clone(), config.retry);
        let limiter = Limiter::new(
            config.per_mailbox_concurrency,
            config.request_budget,
            config.global_concurrency,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                config,
                tokens,
                limiter,
            }),
        })
    }

    pub fn config(&self) -> &GraphConfig {
        &self.inner.config
    }

    /// Obtains (or reuses) an access token: proves the credential works.
    pub async fn check_credential(&self, credential: &AppCredential) -> Result<(), GraphError> {
        self.inner.tokens.token(credential).await.map(drop)
    }

    /// Obtains a new access token even when one is cached. For a delegated credential this
    /// redeems the stored refresh token and stores its successor before returning: proof that the
    /// sign-in works today, and a use that restarts Entra's inactivity window (docs/delegated.md,
    /// "The credential check").
    pub async fn renew_token(&self, credential: &AppCredential) -> Result<(), GraphError> {
        self.inner.tokens.renew(credential).await
    }

    /// Checks that a link Graph returned (nextLink, deltaLink) points back at the configured Graph
    /// origin before it is followed with a bearer token (the token never leaves Graph).
    pub(crate) fn trusted_link(&self, operation: Operation, link: &str) -> Result<Url, GraphError> {
        let url = Url::parse(link).map_err(|_| GraphError::MalformedResponse {
            operation: operation.name(),
            detail: "a paging link is not a URL".into(),
        })?;
        if url.origin() != self.inner.config.graph_url.origin() {
            return Err(GraphError::MalformedResponse {
                operation: operation.name(),
                detail: format!(
                    "a paging link points at {} instead of the configured Graph URL; refusing to send the token there",
                    url.origin().ascii_serialization()
                ),
            });
        }
        Ok(url)
    }

    /// A handle for one mailbox, authenticating with `credential`.
    pub fn mailbox(&self, credential: AppCredential, mailbox: MailboxAddress) -> MailboxClient {
        MailboxClient {
            client: self.clone(),
            credential,
            mailbox,
            folders: Arc::default(),
        }
    }
}

/// A delegated token's 403 means the signed-in user lacks access to the mailbox (or the scope),
/// not the app: say so, and what the user or an administrator can do.
fn as_delegated(credential: &AppCredential, error: GraphError) -> GraphError {
    let Some(delegation) = &credential.delegated else {
        return error;
    };
    match error {
        GraphError::MailboxOutOfScope { mailbox } => GraphError::NoDelegatedAccess {
            credential: delegation.name.clone(),
            mailbox,
            operation: "read mail",
            needed: "Mail.Read",
            code: "ErrorAccessDenied".into(),
        },
        GraphError::PermissionDenied {
            mailbox,
            operation,
            needed,
            code,
        } => GraphError::NoDelegatedAccess {
            credential: delegation.name.clone(),
            mailbox,
            operation,
            needed,
            code,
        },
        other => other,
    }
}

/// The pages of one listing read so far. A listing follows `@odata.nextLink` until there is
/// none; a link that leads back to a page already read (a broken or hostile server) would be
/// followed for ever, so it is an error instead.
#[derive(Default)]
pub(crate) struct PagesRead {
    urls: HashSet<String>,
}

impl PagesRead {
    /// Notes that `url` is about to be read; an error if it was read before.
    pub(crate) fn visit(&mut self, operation: Operation, url: &Url) -> Result<(), GraphError> {
        if self.urls.insert(url.as_str().to_owned()) {
            return Ok(());
        }
        Err(GraphError::MalformedResponse {
            operation: operation.name(),
            detail: "a paging link leads back to a page already read".into(),
        })
    }
}

/// One Graph request, as the retry loop needs it: rebuilt identically for every attempt.
pub(crate) struct Request {
    pub(crate) operation: Operation,
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) json: Option<serde_json::Value>,
    /// `Prefer: odata.maxpagesize` for delta queries.
    pub(crate) max_page_size: Option<u32>,
}

impl Request {
    pub(crate) fn get(operation: Operation, url: Url) -> Self {
        Self {
            operation,
            method: Method::GET,
            url,
            json: None,
            max_page_size: None,
        }
    }
}

/// What a successful request hands back.
pub(crate) enum Reply {
    /// The whole (JSON) body, read inside the retry loop so a cut-off body is retried too.
    Body(Bytes),
    /// The response with its body still to be streamed, and the in-flight permit it holds.
    Stream(reqwest::Response, Permit),
}

/// What a request is about: one mailbox (Outlook's limits and errors are per app and mailbox),
/// the app's own registration (`/applications`, docs/graph.md §9), or the directory (`/users`,
/// `/groups`, §8).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    Mailbox(&'a MailboxAddress),
    Application,
    Directory,
}

impl Target<'_> {
    /// The limiter's second key: the mailbox, or one gate for every `/applications` request.
    fn limiter_key(&self) -> &str {
        match self {
            Self::Mailbox(mailbox) => mailbox.as_str(),
            Self::Application => "/applications",
            Self::Directory => "/directory",
        }
    }
}

/// Graph access to one mailbox with one credential.
#[derive(Clone)]
pub struct MailboxClient {
    pub(crate) client: GraphClient,
    pub(crate) credential: AppCredential,
    pub(crate) mailbox: MailboxAddress,
    /// Folders looked up through this handle (and its clones), each once: a handle lives for
    /// one run of one mailbox.
    pub(crate) folders: Arc<super::folders::FolderCache>,
}

impl MailboxClient {
    pub fn mailbox(&self) -> &MailboxAddress {
        &self.mailbox
    }

    pub fn credential(&self) -> &AppCredential {
        &self.credential
    }

    /// `{graph}/v1.0/users/{mailbox}/` followed by `segments`, each percent-encoded: ids contain
    /// `/`, `+` and `=` and must not be sent raw (docs/graph.md, "Every Graph call").
    pub(crate) fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut path = format!("users/{}", encode(self.mailbox.as_str()));
        for segment in segments {
            path.push('/');
            path.push_str(&encode(segment));
        }
        let mut url = self.client.inner.config.v1_url(&path);
        if !query.is_empty() {
            let query: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{k}={}", encode(v)))
                .collect();
            url.set_query(Some(&query.join("&")));
        }
        url
    }

    /// Checks that a link Graph returned (nextLink, deltaLink) points back at the configured Graph
    /// origin before it is followed with a bearer token (the token never leaves Graph).
    pub(crate) fn trusted_link(&self, operation: Operation, link: &str) -> Result<Url, GraphError> {
        self.client.trusted_link(operation, link)
    }

    /// Sends a request about this mailbox and parses its JSON reply.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        request: Request,
    ) -> Result<T, GraphError> {
        self.client
            .json(&self.credential, Target::Mailbox(&self.mailbox), request)
            .await
    }

    /// Sends a request whose reply body is not needed (204, or a message echo).
    pub(crate) async fn send(&self, request: Request) -> Result<(), GraphError> {
        self.execute(request, false).await.map(drop)
    }

    /// [`GraphClient::execute`] for this mailbox.
    pub(crate) async fn execute(
        &self,
        request: Request,
        stream: bool,
    ) -> Result<Reply, GraphError> {
        self.client
            .execute(
                &self.credential,
                Target::Mailbox(&self.mailbox),
                request,
                stream,
            )
            .await
    }
}

impl GraphClient {
    /// Sends a request and parses its JSON reply.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        credential: &AppCredential,
        target: Target<'_>,
        request: Request,
    ) -> Result<T, GraphError> {
        let operation = request.operation;
        match self.execute(credential, target, request, false).await? {
            Reply::Body(body) => {
                serde_json::from_slice(&body).map_err(|e| GraphError::MalformedResponse {
                    operation: operation.name(),
                    detail: e.to_string(),
                })
            }
            Reply::Stream(..) => Err(GraphError::MalformedResponse {
                operation: operation.name(),
                detail: "unexpected streamed reply".into(),
            }),
        }
    }

    /// Runs one request with Mailroom's etiquette: a mailbox slot per attempt, `Prefer:
    /// IdType="ImmutableId"`, a fresh `client-request-id`, and retries on throttling, server errors
    /// and connection failures, waiting `Retry-After` when Graph gives one.
    pub(crate) async fn execute(
        &self,
        credential: &AppCredential,
        target: Target<'_>,
        request: Request,
        stream: bool,
    ) -> Result<Reply, GraphError> {
        let inner = &self.inner;
        let policy = inner.config.retry;
        let operation = request.operation;
        let client_id = credential.client_id.as_str();
        let mailbox = target.limiter_key();
        let mut attempt: u32 = 0;
        let mut token_refreshed = false;
        let started = std::time::Instant::now();
        loop {
            attempt += 1;
            let token = inner.tokens.token(credential).await?;
            let permit = inner.limiter.acquire(client_id, mailbox).await;
            let client_request_id = uuid::Uuid::new_v4().to_string();
            let mut prefer = String::from("IdType=\"ImmutableId\"");
            if let Some(size) = request.max_page_size {
                prefer.push_str(&format!(", odata.maxpagesize={size}"));
            }
            let mut builder = inner
                .http
                .request(request.method.clone(), request.url.clone())
                .bearer_auth(token.expose_secret())
                .header("Prefer", prefer)
                .header("client-request-id", &client_request_id)
                .header("return-client-request-id", "true")
                .timeout(inner.config.request_timeout);
            if attempt > 1 {
                builder = builder.header("Retry-Attempt", (attempt - 1).to_string());
            }
            if let Some(body) = &request.json {
                builder = builder.json(body);
            }
            if stream {
                // The per-request timeout would cut a large download short; the read timeout
                // still catches a stalled stream.
                builder = builder.timeout(Duration::from_secs(24 * 3600));
            }

            let failure = match builder.send().await {
                Ok(response) if response.status().is_success() => {
                    if stream {
                        return Ok(Reply::Stream(response, permit));
                    }
                    match read_capped(response).await {
                        Ok(body) => return Ok(Reply::Body(body)),
                        Err(BodyError::TooLarge) => {
                            return Err(GraphError::MalformedResponse {
                                operation: operation.name(),
                                detail: format!("response larger than {MAX_JSON_BODY} bytes"),
                            });
                        }
                        Err(BodyError::Transport(detail)) => Failure::Transport(detail),
                    }
                }
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, time::OffsetDateTime::now_utc()));
                    let body = read_capped(response).await.unwrap_or_default();
                    drop(permit);
                    let parsed: ApiErrorBody = serde_json::from_slice(&body).unwrap_or_default();
                    tracing::debug!(
                        operation = operation.name(),
                        mailbox,
                        status = status.as_u16(),
                        code = %parsed.error.code,
                        client_request_id,
                        attempt,
                        "graph request failed"
                    );
                    if status == StatusCode::UNAUTHORIZED && !token_refreshed {
                        // The token was revoked or expired early: fetch a new one, once. Only
                        // this token is dropped: when many requests meet 401 together, the first
                        // refresh serves them all.
                        inner.tokens.invalidate(credential, &token).await;
                        token_refreshed = true;
                        attempt -= 1;
                        continue;
                    }
                    if !is_retryable_status(status.as_u16()) {
                        let error = classify_api_error(
                            operation,
                            target,
                            client_id,
                            status.as_u16(),
                            parsed,
                            &client_request_id,
                        );
                        return Err(as_delegated(credential, error));
                    }
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        Failure::Throttled(retry_after)
                    } else {
                        Failure::Server {
                            status: status.as_u16(),
                            retry_after,
                            body: parsed,
                            client_request_id,
                        }
                    }
                }
                // No connection: the request provably never reached Graph.
                Err(e) if e.is_connect() => Failure::NotSent(describe(&e)),
                Err(e) => Failure::Transport(describe(&e)),
            };

            let wait = match &failure {
                Failure::Throttled(retry_after) | Failure::Server { retry_after, .. } => {
                    policy.wait(attempt, *retry_after)
                }
                Failure::Transport(_) | Failure::NotSent(_) => policy.backoff(attempt),
            };
            // A request that does something again when repeated is retried only when Graph
            // did not act on it: no connection, or a 429 (a throttled request fails without
            // being carried out: learn.microsoft.com/graph/throttling).
            let repeatable = operation.is_idempotent()
                || matches!(failure, Failure::NotSent(_) | Failure::Throttled(_));
            if attempt > policy.max_retries
                || !repeatable
                || !policy.within_budget(started.elapsed(), wait)
            {
                return Err(match failure {
                    Failure::Throttled(_) => match target {
                        Target::Mailbox(mailbox) => GraphError::Throttled {
                            mailbox: mailbox.clone(),
                            operation: operation.name(),
                            attempts: attempt,
                        },
                        Target::Application | Target::Directory => GraphError::Transport {
                            operation: operation.name(),
                            attempts: attempt,
                            detail: "Graph kept answering 429 Too Many Requests".into(),
                        },
                    },
                    Failure::Server {
                        status,
                        body,
                        client_request_id,
                        ..
                    } => classify_api_error(
                        operation,
                        target,
                        client_id,
                        status,
                        body,
                        &client_request_id,
                    ),
                    Failure::Transport(detail) | Failure::NotSent(detail) => {
                        GraphError::Transport {
                            operation: operation.name(),
                            attempts: attempt,
                            detail,
                        }
                    }
                });
            }
            if let Failure::Throttled(_) = failure {
                // A 429 is about the mailbox, not this request: hold every request back.
                inner.limiter.pause(client_id, mailbox, wait);
            }
            tracing::debug!(
                operation = operation.name(),
                mailbox,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "retrying graph request"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

enum Failure {
    Throttled(Option<Duration>),
    Server {
        status: u16,
        retry_after: Option<Duration>,
        body: ApiErrorBody,
        client_request_id: String,
    },
    /// The request may have reached Graph (a timeout, a connection cut mid-way).
    Transport(String),
    /// No connection was made: Graph never saw the request.
    NotSent(String),
}

enum BodyError {
    TooLarge,
    Transport(String),
}

async fn read_capped(mut response: reqwest::Response) -> Result<Bytes, BodyError> {
    let mut body = BytesMut::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_JSON_BODY {
                    return Err(BodyError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) => return Err(BodyError::Transport(describe(&e))),
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, `@` (addresses read better raw
/// and Graph's own examples use it) and `$` (`$value`, `$select`).
pub(crate) fn encode(raw: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'@')
        .remove(b'$')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(raw, SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(graph: &str) -> MailboxClient {
        let config = GraphConfig::new(
            Url::parse(graph).unwrap(),
            Url::parse("https://login.microsoftonline.com").unwrap(),
        );
        GraphClient::new(config).unwrap().mailbox(
            AppCredential::new("t", "c", "s".to_owned().into()),
            MailboxAddress::parse("a@contoso.com").unwrap(),
        )
    }

    #[test]
    fn ids_are_percent_encoded_as_one_segment() {
        let url = client("https://graph.microsoft.com").url(
            &["messages", "AAMk/a+b=", "$value"],
            &[("$select", "id,subject")],
        );
        assert_eq!(
            url.as_str(),
            "https://graph.microsoft.com/v1.0/users/a@contoso.com/messages/AAMk%2Fa%2Bb%3D/$value?$select=id%2Csubject"
        );
    }

    #[test]
    fn a_base_url_with_a_path_prefix_is_kept() {
        let url = client("http://127.0.0.1:9000/graph/").url(&["mailFolders"], &[]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9000/graph/v1.0/users/a@contoso.com/mailFolders"
        );
    }

    #[test]
    fn a_base_url_with_the_version_is_the_same_api() {
        for base in [
            "https://graph.microsoft.com/v1.0",
            "https://graph.microsoft.com/v1.0/",
            "https://graph.microsoft.com/",
        ] {
            let url = client(base).url(&["mailFolders"], &[]);
            assert_eq!(
                url.as_str(),
                "https://graph.microsoft.com/v1.0/users/a@contoso.com/mailFolders",
                "{base}"
            );
        }
        let url = client("http://127.0.0.1:9000/graph/v1.0").url(&["mailFolders"], &[]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9000/graph/v1.0/users/a@contoso.com/mailFolders"
        );
    }

    #[test]
    fn paging_links_must_stay_on_the_graph_origin() {
        let c = client("https://graph.microsoft.com");
        assert!(
            c.trusted_link(
                Operation::Delta,
                "https://graph.microsoft.com/v1.0/x?$skiptoken=1"
            )
            .is_ok()
        );
        let err = c
            .trusted_link(Operation::Delta, "https://evil.example/v1.0/x")
            .unwrap_err();
        assert!(err.to_string().contains("refusing"), "{err}");
    }
}
