//! Graph error responses (docs/graph.md section 10).

use axum::http::{HeaderName, StatusCode, header};

/// A Graph error: status, code and message, plus extra headers (`Retry-After`, `Allow`, ...).
/// The `innerError` (date, request-id, client-request-id) is added when rendered.
#[derive(Debug)]
pub(crate) struct GraphError {
    pub(crate) status: StatusCode,
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) headers: Vec<(HeaderName, String)>,
}

impl GraphError {
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub(crate) fn with_header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// `400 ErrorInvalidIdMalformed`: an id that does not decode, typically one with a raw `/`
    /// that split the path (docs/graph.md sections 2 and 10).
    pub(crate) fn malformed_id() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidIdMalformed",
            "Id is malformed.",
        )
    }

    pub(crate) fn item_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        )
    }

    pub(crate) fn invalid_user(user: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ErrorInvalidUser",
            format!("The requested user '{user}' is invalid."),
        )
    }

    /// Mailbox outside the app's access policy / RBAC scope: exact doc text (docs/graph.md
    /// section 8).
    pub(crate) fn out_of_scope() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "ErrorAccessDenied",
            "Access to OData is disabled.",
        )
    }

    /// The app lacks the permission the operation needs.
    pub(crate) fn access_denied() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
        )
    }

    /// `403 Authorization_RequestDenied`: a directory operation (users, applications) the app
    /// has no permission for (docs/graph.md section 10).
    pub(crate) fn insufficient_privileges() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }

    /// `404 Request_ResourceNotFound`: an unknown directory object, in the text Graph gives for
    /// one (as recorded in pnp/cli-microsoft365's tests).
    pub(crate) fn directory_object_not_found(key: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{key}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    /// `404 MailboxNotEnabledForRESTAPI`: the user has no Exchange Online mailbox (no licence,
    /// soft-deleted, or on-premises), in the text docs/graph.md section 10 records.
    pub(crate) fn mailbox_not_enabled() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "MailboxNotEnabledForRESTAPI",
            "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
        )
    }

    /// `400 Request_BadRequest`: a directory request Graph refuses.
    pub(crate) fn directory_bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
    }

    pub(crate) fn unauthenticated(message: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
        )
    }

    pub(crate) fn not_found_segment(segment: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!("Resource not found for the segment '{segment}'."),
        )
    }

    pub(crate) fn not_implemented(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            format!("The sandbox does not implement '{what}'."),
        )
    }

    pub(crate) fn method_not_allowed(method: &str, allow: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("The HTTP method '{method}' is not allowed for this resource."),
        )
        .with_header(header::ALLOW, allow)
    }

    /// `429 ApplicationThrottled` (docs/graph.md section 7).
    pub(crate) fn throttled(retry_after: &str) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "ApplicationThrottled",
            "Application is over its MailboxConcurrency limit.",
        )
        .with_header(header::RETRY_AFTER, retry_after)
    }

    pub(crate) fn body_read(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "RequestBodyRead", message)
    }

    /// `400 ValidationError`: the notification or lifecycle URL failed the validation handshake
    /// (docs/graph.md section 6).
    pub(crate) fn validation_failed() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.",
        )
    }

    /// `400 InvalidRequest`: a subscription request Graph refuses.
    pub(crate) fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequest", message)
    }

    /// `404 ResourceNotFound` for an unknown, deleted or expired subscription.
    pub(crate) fn subscription_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!("The object was not found: subscription '{id}'."),
        )
    }
}
