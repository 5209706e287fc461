//! An HTTP proxy between the AWS SDK and moto that names and counts every call, by service and
//! operation (the benchmark's "AWS calls per message", the inputs of the cost model), and can
//! answer chosen calls with a fault instead: throttling, a server error, a connection cut before
//! or after AWS acted, or a delay. Faults come from rules (the next `times` calls of an
//! operation) or from chaos (each call faulted with a probability, from a seeded generator).
//!
//! The SDK is pointed at the proxy instead of moto; the proxy forwards each request unchanged
//! (moto does not check signatures) and answers with moto's response. Faulted calls never reach
//! moto, as a throttled or failed call does not act on AWS either. Test support only: no
//! production code path goes through it.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

/// The largest request or response the proxy forwards (S3 parts are 8 MiB).
const MAX_BODY: usize = 64 * 1024 * 1024;

#[derive(Clone)]
struct Shared {
    upstream: String,
    http: reqwest::Client,
    calls: Arc<Mutex<BTreeMap<(String, String), u64>>>,
    faults: Arc<Mutex<Vec<FaultRule>>>,
    chaos: Arc<Mutex<Option<ChaosState>>>,
    fired: Arc<Mutex<BTreeMap<String, u64>>>,
}

/// Each call of the listed services faulted with probability `rate`, the fault drawn from
/// `faults`; the generator is seeded, so a run's faults are reproducible given its calls.
#[derive(Debug, Clone)]
pub struct Chaos {
    pub rate: f64,
    pub seed: u64,
    pub faults: Vec<AwsFault>,
    /// The services faulted (e.g. "dynamodb", "s3", "sqs", "secretsmanager"); empty: all.
    pub services: Vec<&'static str>,
}

struct ChaosState {
    chaos: Chaos,
    rng: fastrand::Rng,
}

/// What a faulted call gets, in each service's own wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsFault {
    /// DynamoDB `ProvisionedThroughputExceededException` (400), S3 `SlowDown` (503), otherwise
    /// `ThrottlingException` (400).
    Throttle,
    /// DynamoDB `InternalServerError`, S3 `InternalError`, otherwise `InternalFailure` (500).
    ServerError,
    /// Forwarded after this long, whether or not the caller still waits (past the SDK's
    /// attempt timeout, if longer than it: AWS then acts on the call late, after the SDK's
    /// retry of it).
    Delay(std::time::Duration),
    /// The connection breaks before AWS sees the call: the status line and headers arrive,
    /// then the body errors (as a reset mid-answer does).
    Reset,
    /// AWS acts on the call, then the connection breaks before the answer arrives: the SDK's
    /// retry repeats a call that already succeeded (a conditional write then fails its
    /// condition).
    LoseAnswer,
}

impl AwsFault {
    /// A short name, for counts.
    pub fn name(self) -> &'static str {
        match self {
            AwsFault::Throttle => "throttle",
            AwsFault::ServerError => "server_error",
            AwsFault::Delay(_) => "delay",
            AwsFault::Reset => "reset",
            AwsFault::LoseAnswer => "lose_answer",
        }
    }
}

/// Answers the next `times` calls of `service` (and `operation`, if given) with `fault`, after
/// letting `after` of them through.
#[derive(Debug, Clone)]
pub struct FaultRule {
    pub service: &'static str,
    pub operation: Option<&'static str>,
    pub fault: AwsFault,
    pub times: usize,
    pub after: usize,
}

impl FaultRule {
    pub fn new(
        service: &'static str,
        operation: &'static str,
        fault: AwsFault,
        times: usize,
    ) -> Self {
        Self {
            service,
            operation: Some(operation),
            fault,
            times,
            after: 0,
        }
    }

    /// Lets the first `n` matching calls through before faulting (so faults can be spaced out
    /// below the SDK's three attempts of one call).
    pub fn after(mut self, n: usize) -> Self {
        self.after = n;
        self
    }
}

/// A running proxy in front of one upstream (moto).
pub struct AwsProxy {
    endpoint: String,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl AwsProxy {
    /// Starts a proxy on loopback forwarding to `upstream` (e.g. moto's endpoint).
    pub async fn start(upstream: &str) -> AwsProxy {
        let shared = Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            calls: Arc::default(),
            faults: Arc::default(),
            chaos: Arc::default(),
            fired: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        AwsProxy {
            endpoint,
            shared,
            server,
        }
    }

    /// Where the SDK should send its requests.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Calls so far, by (service, operation), e.g. `("dynamodb", "PutItem")`.
    pub fn calls(&self) -> BTreeMap<(String, String), u64> {
        self.shared.calls.lock().unwrap().clone()
    }

    pub fn reset(&self) {
        self.shared.calls.lock().unwrap().clear();
    }

    /// Adds a fault rule; rules are tried in the order added.
    pub fn inject(&self, rule: FaultRule) {
        self.shared.faults.lock().unwrap().push(rule);
    }

    /// Removes every fault rule, fired or not.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap().clear();
    }

    /// Faults each call with a probability from now on (`None`: no more chaos). Rules still
    /// come first.
    pub fn set_chaos(&self, chaos: Option<Chaos>) {
        *self.shared.chaos.lock().unwrap() = chaos.map(|chaos| ChaosState {
            rng: fastrand::Rng::with_seed(chaos.seed),
            chaos,
        });
    }

    /// Faults fired so far, rules' and chaos's, by [`AwsFault::name`].
    pub fn faults_fired(&self) -> BTreeMap<String, u64> {
        self.shared.fired.lock().unwrap().clone()
    }

    /// Faults still to fire.
    pub fn pending_faults(&self) -> usize {
        self.shared
            .faults
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.times)
            .sum()
    }
}

/// The fault for this call: a matching rule with calls left (using one up), else chaos's draw.
fn take_fault(shared: &Shared, call: &(String, String)) -> Option<AwsFault> {
    let fault = rule_fault(shared, call).or_else(|| chaos_fault(shared, &call.0))?;
    *shared
        .fired
        .lock()
        .unwrap()
        .entry(fault.name().to_owned())
        .or_default() += 1;
    Some(fault)
}

fn rule_fault(shared: &Shared, (service, operation): &(String, String)) -> Option<AwsFault> {
    let mut faults = shared.faults.lock().unwrap();
    let mut matching = faults.iter_mut().filter(|r| {
        r.times > 0 && r.service == service && r.operation.is_none_or(|o| o == operation)
    });
    // Every matching rule still waiting counts this call; the first one due fires.
    let mut fired = None;
    for rule in &mut matching {
        if rule.after > 0 {
            rule.after -= 1;
        } else if fired.is_none() {
            rule.times -= 1;
            fired = Some(rule.fault);
        }
    }
    fired
}

fn chaos_fault(shared: &Shared, service: &str) -> Option<AwsFault> {
    let mut chaos = shared.chaos.lock().unwrap();
    let ChaosState { chaos, rng } = chaos.as_mut()?;
    let listed = chaos.services.is_empty() || chaos.services.contains(&service);
    if !listed || chaos.faults.is_empty() || rng.f64() >= chaos.rate {
        return None;
    }
    Some(chaos.faults[rng.usize(..chaos.faults.len())])
}

/// A `200` whose body breaks at once: the connection dropped mid-answer.
fn cut_response() -> Response {
    let broken = futures::stream::once(async {
        Err::<bytes::Bytes, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "proxy: connection reset",
        ))
    });
    Response::new(Body::from_stream(broken))
}

/// The fault's response as `service` would send it.
fn fault_response(service: &str, fault: AwsFault) -> Response {
    let (status, code, message) = match (service, fault) {
        ("dynamodb", AwsFault::Throttle) => (
            StatusCode::BAD_REQUEST,
            "ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded.",
        ),
        ("s3", AwsFault::Throttle) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            "Please reduce your request rate.",
        ),
        (_, AwsFault::Throttle) => (
            StatusCode::BAD_REQUEST,
            "ThrottlingException",
            "Rate exceeded",
        ),
        ("dynamodb", _) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "Internal server error",
        ),
        ("s3", _) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "We encountered an internal error. Please try again.",
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            "Internal failure",
        ),
    };
    let mut response = if service == "s3" {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>proxy</RequestId></Error>"
        );
        let mut r = Response::new(Body::from(body));
        r.headers_mut()
            .insert("content-type", "application/xml".parse().unwrap());
        r
    } else {
        let prefix = match service {
            "dynamodb" => "com.amazonaws.dynamodb.v20120810#",
            _ => "",
        };
        let body = serde_json::json!({"__type": format!("{prefix}{code}"), "message": message});
        let mut r = Response::new(Body::from(body.to_string()));
        r.headers_mut().insert(
            "content-type",
            "application/x-amz-json-1.0".parse().unwrap(),
        );
        r.headers_mut()
            .insert("x-amzn-errortype", code.parse().unwrap());
        r
    };
    *response.status_mut() = status;
    response
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn forward(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let call = name_call(&parts.method, &parts.uri, &parts.headers);
    *shared
        .calls
        .lock()
        .unwrap()
        .entry(call.clone())
        .or_default() += 1;
    let fault = take_fault(&shared, &call);
    let delay = match fault {
        Some(AwsFault::Delay(d)) => Some(d),
        Some(AwsFault::Reset) => return cut_response(),
        Some(AwsFault::LoseAnswer) | None => None,
        Some(fault) => return fault_response(&call.0, fault),
    };

    let Ok(body) = to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "proxy: body too large").into_response();
    };
    if let Some(delay) = delay {
        // In a task of its own, so the call reaches moto even after the caller gave up on it.
        let (shared, parts, body) = (shared.clone(), parts.clone(), body.clone());
        let late = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            send_upstream(&shared, &parts, body, fault).await
        });
        return late
            .await
            .unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, format!("proxy: {e}")).into_response());
    }
    send_upstream(&shared, &parts, body, fault).await
}

/// Forwards the call to moto and relays its answer (or loses it, for [`AwsFault::LoseAnswer`]).
async fn send_upstream(
    shared: &Shared,
    parts: &axum::http::request::Parts,
    body: bytes::Bytes,
    fault: Option<AwsFault>,
) -> Response {
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = shared
        .http
        .request(
            parts.method.clone(),
            format!("{}{path_and_query}", shared.upstream),
        )
        .body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("proxy: {e}")).into_response(),
    };
    if fault == Some(AwsFault::LoseAnswer) {
        // Moto has acted; its answer is lost.
        let _ = answer.bytes().await;
        return cut_response();
    }
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

/// (service, operation) of an SDK request: the JSON protocols name the operation in
/// `X-Amz-Target`; S3's REST protocol in its method, path and query.
fn name_call(method: &Method, uri: &axum::http::Uri, headers: &HeaderMap) -> (String, String) {
    let service = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|scope| scope.split('/').nth(3))
        .unwrap_or("unknown")
        .to_owned();
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let operation = target.rsplit('.').next().unwrap_or(target);
        return (service, operation.to_owned());
    }
    let query = uri.query().unwrap_or("");
    let has = |key: &str| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some(key))
    };
    // Path-style: /bucket or /bucket/key.
    let object = uri.path().trim_start_matches('/').contains('/');
    let operation = match *method {
        Method::PUT if has("partNumber") => "UploadPart",
        Method::PUT if headers.contains_key("x-amz-copy-source") => "CopyObject",
        Method::PUT if object => "PutObject",
        Method::PUT => "CreateBucket",
        Method::POST if has("uploads") => "CreateMultipartUpload",
        Method::POST if has("uploadId") => "CompleteMultipartUpload",
        Method::POST if has("delete") => "DeleteObjects",
        Method::DELETE if has("uploadId") => "AbortMultipartUpload",
        Method::DELETE if object => "DeleteObject",
        Method::GET if object => "GetObject",
        Method::GET => "ListObjectsV2",
        Method::HEAD => "HeadObject",
        _ => "Other",
    };
    (service, operation.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(method: Method, uri: &str, headers: &[(&str, &str)]) -> (String, String) {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        name_call(&method, &uri.parse().unwrap(), &map)
    }

    #[test]
    fn calls_are_named_by_service_and_operation() {
        let auth = |service: &str| {
            format!(
                "AWS4-HMAC-SHA256 Credential=testing/20261204/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=00"
            )
        };
        assert_eq!(
            name(
                Method::POST,
                "/",
                &[
                    ("authorization", &auth("dynamodb")),
                    ("x-amz-target", "DynamoDB_20120810.PutItem")
                ]
            ),
            ("dynamodb".into(), "PutItem".into())
        );
        assert_eq!(
            name(
                Method::PUT,
                "/bucket/a/b.eml?partNumber=2&uploadId=x",
                &[("authorization", &auth("s3"))]
            ),
            ("s3".into(), "UploadPart".into())
        );
        assert_eq!(
            name(
                Method::PUT,
                "/bucket/a/b.eml",
                &[("authorization", &auth("s3"))]
            ),
            ("s3".into(), "PutObject".into())
        );
        assert_eq!(
            name(
                Method::POST,
                "/bucket/a/b.eml?uploads",
                &[("authorization", &auth("s3"))]
            ),
            ("s3".into(), "CreateMultipartUpload".into())
        );
    }
}
