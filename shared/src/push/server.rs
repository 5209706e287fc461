//! The webhook over plain HTTP (axum), for `mailroom serve --listen` and tests. Every path and
//! method goes to [`Webhook::handle`], which decides; the body is read up to the webhook's limit
//! and refused beyond it, before anything parses it, and a body that does not arrive within
//! [`BODY_READ_TIMEOUT`] is given up on.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::webhook::{MAX_BODY_BYTES, Webhook, WebhookRequest, WebhookResponse};

/// How long a request's body may take to arrive. Graph counts a delivery only if it is answered
/// 2xx within 3 seconds (docs/graph.md §6): a body still arriving after that cannot be answered
/// in time anyway, and Graph delivers again. Without a limit, a client trickling a byte now and
/// then held its connection and up to [`MAX_BODY_BYTES`] of buffer for ever.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// A router sending every request to `webhook`.
pub fn router(webhook: Webhook) -> axum::Router {
    axum::Router::new().fallback(move |request: Request| {
        let webhook = webhook.clone();
        async move { handle(&webhook, request).await }
    })
}

async fn handle(webhook: &Webhook, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    // One byte over the limit is enough to know it is too large.
    let read = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        axum::body::to_bytes(body, MAX_BODY_BYTES + 1),
    );
    let answer = match read.await {
        Ok(Ok(body)) => {
            webhook
                .handle(WebhookRequest {
                    method: parts.method.as_str(),
                    path: parts.uri.path(),
                    query: parts.uri.query(),
                    content_type,
                    body: &body,
                })
                .await
        }
        Err(_) => {
            tracing::warn!(
                outcome = "rejected",
                reason = "body too slow",
                path = parts.uri.path(),
                "webhook request rejected"
            );
            WebhookResponse {
                status: 408,
                content_type: "text/plain; charset=utf-8",
                body: format!(
                    "the body did not arrive within {} seconds",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            }
        }
        Ok(Err(_)) => {
            tracing::warn!(
                outcome = "rejected",
                reason = "body too large or unreadable",
                path = parts.uri.path(),
                "webhook request rejected"
            );
            WebhookResponse {
                status: 413,
                content_type: "text/plain; charset=utf-8",
                body: format!("the body is limited to {MAX_BODY_BYTES} bytes"),
            }
        }
    };
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(answer.content_type),
    );
    response
}
