//! Helpers shared by the integration tests: a minimal Graph client over reqwest.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use graph_sandbox::{DEFAULT_CLIENT_ID, DEFAULT_SECRET, DEFAULT_TENANT, Sandbox};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// Percent-encodes a path segment (ids contain `/ + =`).
pub fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// Requests a token with explicit parameters.
pub async fn token_response(
    sb: &Sandbox,
    tenant: &str,
    client_id: &str,
    secret: &str,
    scope: &str,
) -> (u16, Value) {
    let r = http()
        .post(format!("{}/{}/oauth2/v2.0/token", sb.url(), tenant))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// A token for the default app.
pub async fn token(sb: &Sandbox) -> String {
    let (status, body) = token_response(
        sb,
        DEFAULT_TENANT,
        DEFAULT_CLIENT_ID,
        DEFAULT_SECRET,
        GRAPH_SCOPE,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// A small Graph client: bearer token, optional immutable ids.
#[derive(Clone)]
pub struct Graph {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
    pub immutable: bool,
}

impl Graph {
    pub async fn new(sb: &Sandbox, immutable: bool) -> Self {
        Self {
            http: http(),
            base: sb.url(),
            token: token(sb).await,
            immutable,
        }
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}/v1.0{}", self.base, path)
        }
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut b = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if self.immutable {
            b = b.header("Prefer", "IdType=\"ImmutableId\"");
        }
        b
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.req(reqwest::Method::GET, path).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .req(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .req(reqwest::Method::PATCH, path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn delete(&self, path: &str) -> u16 {
        let r = self
            .req(reqwest::Method::DELETE, path)
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    }

    /// Follows `@odata.nextLink`s from `path`, collecting `value`.
    pub async fn get_all(&self, path: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut next = Some(self.url(path));
        while let Some(url) = next {
            let (status, body) = self.get(&url).await;
            assert_eq!(status, 200, "{body}");
            out.extend(body["value"].as_array().unwrap().iter().cloned());
            next = body["@odata.nextLink"].as_str().map(str::to_owned);
        }
        out
    }
}

/// The Graph error code of a body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

pub fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}
