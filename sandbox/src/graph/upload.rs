//! The `uploadUrl` of an attachment upload session (docs/graph.md section 12,
//! <https://learn.microsoft.com/graph/outlook-large-attachments>): `PUT /upload/{token}` with
//! `Content-Range: bytes {start}-{end}/{total}` uploads the next byte range; `DELETE` cancels
//! the session (204).
//!
//! - Each range but the last answers 200 with `nextExpectedRanges` (a single `"{start}"`, "the
//!   location in the file where the next upload should begin") and the expiry, spelled
//!   `ExpirationDateTime` as in the walkthrough's example; the last answers 201 with an empty
//!   body and a `Location` naming the new attachment (`…/Attachments('{id}')`).
//! - "Do not specify an `Authorization` request header": the URL is pre-authenticated. The
//!   Outlook pages say no more; the OneDrive upload page warns that one "may result in an HTTP
//!   401 Unauthorized response" (<https://learn.microsoft.com/graph/api/driveitem-createuploadsession>),
//!   and the sandbox always answers so.
//! - "You must upload bytes in a file in order." The Outlook pages document no error for a
//!   range out of order; the sandbox answers as the OneDrive page does for a range already
//!   received, `416 Requested Range Not Satisfiable`, for any range not starting at the next
//!   expected byte. A total that is not the session's size, a range outside the file or a body
//!   whose length is not the range's is a 400; a range over 4 MB a 413. Codes are the
//!   sandbox's (`InvalidRange`, `InvalidRequest`): the docs name none.
//! - An unknown, cancelled, completed or expired session is a 404, which the OneDrive page
//!   documents as "the upload session no longer exists".
//!
//! Uploads are not counted against Outlook's per-mailbox throttling (the URL is another
//! service's); faults and latency apply, and the request log records them, as for Graph
//! requests (with no client id: the URL carries no token).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use serde_json::json;

use super::attachments::{self, MAX_CHUNK};
use super::{Ctx, Draft, GraphError, Reply, apply_fault, graph_time, header_str, respond};
use crate::core::{Core, lock};

/// Entry point for `/upload/{token}`.
pub(crate) async fn handle(State(core): State<Arc<Core>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let ctx = Ctx::new(&core, &parts);
    let mut draft = Draft::default();
    let mut cut = None;
    let result = run(&core, &ctx, &parts.headers, body, &mut draft, &mut cut).await;
    let reply = result.unwrap_or_else(|e| Reply::from_error(e, &ctx, core.now()));
    respond(&core, ctx, reply, draft, None, cut)
}

fn session_gone() -> GraphError {
    GraphError::new(
        StatusCode::NOT_FOUND,
        "ErrorItemNotFound",
        "The upload session does not exist: it expired, was cancelled or is complete.",
    )
}

fn invalid(message: impl Into<String>) -> GraphError {
    GraphError::new(StatusCode::BAD_REQUEST, "InvalidRequest", message)
}

async fn run(
    core: &Arc<Core>,
    ctx: &Ctx,
    headers: &HeaderMap,
    body: axum::body::Body,
    draft: &mut Draft,
    cut: &mut Option<crate::body::FaultCut>,
) -> Result<Reply, GraphError> {
    let token = ctx
        .path
        .strip_prefix("/upload/")
        .unwrap_or_default()
        .to_owned();
    if ctx.authorization.is_some() {
        return Err(GraphError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "The upload URL is pre-authenticated: do not send an Authorization header.",
        ));
    }
    let address = session_mailbox(core, &token)?;
    draft.mailbox = Some(address.clone());
    if let Some(kind) = core.take_fault(
        ctx.method.as_str(),
        &ctx.raw_path,
        &ctx.path,
        Some(&address),
    ) {
        apply_fault(kind, draft, cut).await?;
    }
    let latency = core.latency_for(&address);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match ctx.method {
        Method::DELETE => {
            lock(&core.state).uploads.remove(&token);
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        Method::PUT => put(core, &token, headers, body).await,
        _ => Err(GraphError::method_not_allowed(
            ctx.method.as_str(),
            "PUT, DELETE",
        )),
    }
}

/// The address of the session's mailbox; a 404 for an unknown or expired session (which is
/// forgotten).
fn session_mailbox(core: &Core, token: &str) -> Result<String, GraphError> {
    let now = core.now();
    let mut st = lock(&core.state);
    let session = st.uploads.get(token).ok_or_else(session_gone)?;
    if session.expires <= now {
        st.uploads.remove(token);
        return Err(session_gone());
    }
    let mailbox = session.mailbox;
    st.mailbox(mailbox)
        .map(|m| m.address.clone())
        .ok_or_else(session_gone)
}

/// `Content-Range: bytes {start}-{end}/{total}`.
fn content_range(headers: &HeaderMap) -> Result<(u64, u64, u64), GraphError> {
    let raw = header_str(headers, header::CONTENT_RANGE.as_str()).ok_or_else(|| {
        invalid("The Content-Range header is required: bytes {start}-{end}/{total}.")
    })?;
    let parse = || -> Option<(u64, u64, u64)> {
        let rest = raw.trim().strip_prefix("bytes")?.trim_start();
        let (range, total) = rest.split_once('/')?;
        let (start, end) = range.split_once('-')?;
        Some((
            start.trim().parse().ok()?,
            end.trim().parse().ok()?,
            total.trim().parse().ok()?,
        ))
    };
    parse().ok_or_else(|| {
        invalid(format!(
            "Content-Range '{raw}' is not of the form bytes {{start}}-{{end}}/{{total}}."
        ))
    })
}

async fn put(
    core: &Core,
    token: &str,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Reply, GraphError> {
    let (start, end, total) = content_range(headers)?;
    let too_large = || {
        GraphError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("Upload at most {MAX_CHUNK} bytes (4 MB) per request."),
        )
    };
    let declared = header_str(headers, header::CONTENT_LENGTH.as_str())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_CHUNK) {
        return Err(too_large());
    }
    let limit = usize::try_from(MAX_CHUNK).unwrap_or(usize::MAX);
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;
    let now = core.now();
    let mut st = lock(&core.state);
    let session = st.uploads.get_mut(token).ok_or_else(session_gone)?;
    if total != session.size() {
        return Err(invalid(format!(
            "The total in Content-Range ({total}) is not the size given when the session was created ({}).",
            session.size()
        )));
    }
    if start != session.next() {
        return Err(GraphError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "InvalidRange",
            format!(
                "Bytes must be uploaded in order: the next range starts at {}, not {start}.",
                session.next()
            ),
        ));
    }
    if end < start || end >= total {
        return Err(invalid(format!(
            "The range {start}-{end} is not inside the file of {total} bytes."
        )));
    }
    if bytes.len() as u64 != end - start + 1 {
        return Err(invalid(format!(
            "The body has {} bytes; the range {start}-{end} needs {}.",
            bytes.len(),
            end - start + 1
        )));
    }
    session.push(&bytes);
    if !session.is_complete() {
        return Ok(Reply::json(
            StatusCode::OK,
            json!({
                "@odata.context": session.context(),
                "ExpirationDateTime": graph_time(session.expires),
                "nextExpectedRanges": [session.next().to_string()],
            }),
        ));
    }
    let session = st.uploads.remove(token).ok_or_else(session_gone)?;
    let location = attachments::complete(&mut st, session, now).ok_or_else(session_gone)?;
    Ok(Reply::empty(StatusCode::CREATED).with_header(header::LOCATION, location))
}
