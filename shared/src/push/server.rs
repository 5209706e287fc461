//! The webhook over plain HTTP (axum), for `mailroom serve --listen` and tests. Every path and
//! method goes to [`Webhook::handle`], which decides; the body is read up to the webhook's limit
//! and refused beyond it, before anything parses it.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::webhook::{MAX_BODY_BYTES, Webhook, WebhookRequest, WebhookResponse};

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
    let answer = match axum::body::to_bytes(body, MAX_BODY_BYTES + 1).await {
        Ok(body) => {
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
