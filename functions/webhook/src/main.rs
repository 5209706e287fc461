//! The webhook Lambda function: receives Microsoft Graph change and lifecycle notifications
//! through its Function URL (`/notifications`, `/lifecycle`) and turns them into sync jobs on
//! the SQS FIFO queue. It never imports and holds no Graph credentials; the logic is
//! [`mailroom::push::Webhook`], this file only adapts Lambda's HTTP events to it.

use std::sync::Arc;

use lambda_http::http::header::CONTENT_TYPE;
use lambda_http::{Body, Error, Request, Response, service_fn};
use mailroom::adapters::aws::{AwsClients, DynamoStateStore, SqsJobQueue};
use mailroom::config::WebhookSettings;
use mailroom::lambda::init_tracing;
use mailroom::push::{Webhook, WebhookRequest};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();

    // Cold start: settings and clients only, no network calls, so the first request (often
    // Graph's validation handshake, which must be answered within 10 seconds) is not delayed.
    let settings = WebhookSettings::from_env()?;
    let clients = AwsClients::from_env(false).await;
    let webhook = Webhook::new(
        Arc::new(DynamoStateStore::new(clients.dynamodb, &settings.table)),
        Arc::new(SqsJobQueue::new(clients.sqs, settings.queue_url)),
    );
    let webhook = &webhook;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(handle(webhook, request).await)
    }))
    .await
}

/// Copies the request's method, path, query, content type and body into the webhook and its
/// answer back out.
async fn handle(webhook: &Webhook, request: Request) -> Response<Body> {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    // Function URLs deliver at most 6 MB, already decoded from base64 by lambda_http; the
    // webhook refuses anything over its own limit before parsing.
    let body: &[u8] = request.body().as_ref();
    let answer = webhook
        .handle(WebhookRequest {
            method: request.method().as_str(),
            path: request.uri().path(),
            query: request.uri().query(),
            content_type,
            body,
        })
        .await;
    let mut response = Response::new(Body::Text(answer.body));
    *response.status_mut() = lambda_http::http::StatusCode::from_u16(answer.status)
        .unwrap_or(lambda_http::http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = answer.content_type.parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}
