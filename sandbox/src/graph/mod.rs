//! The Microsoft Graph mail API under `/v1.0`: one handler that authenticates, routes, applies
//! scope, permissions, throttling, faults and latency, then calls the per-concept handlers.

mod applications;
mod attachments;
mod delta;
mod directory;
mod drafts;
mod error;
mod extprops;
mod folders;
mod messages;
mod odata;
mod route;
mod send;
mod subscriptions;
mod upload;

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::body::{FaultCut, MimeStream, faulty_body};
use crate::core::{Core, lock};
use crate::faults::FaultKind;
use crate::mime::MimeTemplate;
use crate::requests::RequestRecord;
use crate::state::{Delegation, State as SandboxState};
use crate::throttle::{self, Rejection, SlotGuard, format_seconds};

pub(crate) use attachments::UploadSession;
pub(crate) use error::GraphError;
use odata::{Prefs, Query};
use route::{Need, Op};
pub(crate) use send::transmit;
pub(crate) use upload::handle as handle_upload;

/// Graph request bodies are small JSON documents; Graph itself caps requests at 4 MB.
const MAX_REQUEST_BODY: usize = 4 * 1024 * 1024;

const JSON_CONTENT_TYPE: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// What the handler saw of one request.
pub(crate) struct Ctx {
    pub(crate) method: Method,
    pub(crate) raw_path: String,
    pub(crate) path: String,
    pub(crate) query: Query,
    pub(crate) decoded_query: String,
    pub(crate) prefs: Prefs,
    pub(crate) client_request_id: Option<String>,
    pub(crate) request_id: String,
    pub(crate) authorization: Option<String>,
    /// `Content-Type` (drafts in MIME format come as `text/plain`).
    pub(crate) content_type: Option<String>,
    /// `http://host:port` as the client addressed us, for absolute nextLinks.
    pub(crate) base: String,
    pub(crate) started: Instant,
}

impl Ctx {
    pub(crate) fn new(core: &Core, parts: &Parts) -> Self {
        let headers = &parts.headers;
        let raw_path = parts.uri.path().to_owned();
        let path = percent_encoding::percent_decode_str(&raw_path)
            .decode_utf8_lossy()
            .into_owned();
        let raw_query = parts.uri.query();
        let decoded_query = raw_query
            .map(|q| {
                percent_encoding::percent_decode_str(q)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .unwrap_or_default();
        let base = header_str(headers, header::HOST.as_str())
            .map_or_else(|| core.url(), |h| format!("http://{h}"));
        Self {
            method: parts.method.clone(),
            raw_path,
            path,
            query: Query::parse(raw_query),
            decoded_query,
            prefs: Prefs::parse(headers),
            client_request_id: header_str(headers, "client-request-id").map(str::to_owned),
            request_id: uuid::Uuid::new_v4().to_string(),
            authorization: header_str(headers, header::AUTHORIZATION.as_str()).map(str::to_owned),
            content_type: header_str(headers, header::CONTENT_TYPE.as_str()).map(str::to_owned),
            base,
            started: Instant::now(),
        }
    }

    /// The id to show for a message: immutable when the request preferred it.
    pub(crate) fn message_id<'a>(&self, m: &'a crate::state::Message) -> &'a str {
        if self.prefs.immutable_ids {
            &m.immutable_id
        } else {
            &m.rest_id
        }
    }

    /// `$metadata` context URL prefix.
    pub(crate) fn metadata(&self) -> String {
        format!("{}/v1.0/$metadata", self.base)
    }

    /// This request's URL with `key=value` in the query (for `@odata.nextLink`).
    pub(crate) fn link_with(&self, key: &str, value: &str) -> String {
        format!(
            "{}{}?{}",
            self.base,
            self.raw_path,
            self.query.with(key, value)
        )
    }
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Graph's timestamp format: `2025-02-13T10:17:05Z`.
pub(crate) fn graph_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A handler's answer before it becomes an HTTP response.
pub(crate) enum ReplyBody {
    Json(Value),
    Empty,
    Mime(Arc<MimeTemplate>),
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(HeaderName, String)>,
    pub(crate) body: ReplyBody,
}

impl Reply {
    pub(crate) fn json(status: StatusCode, v: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: ReplyBody::Json(v),
        }
    }

    pub(crate) fn empty(status: StatusCode) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: ReplyBody::Empty,
        }
    }

    pub(crate) fn with_header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn from_error(e: GraphError, ctx: &Ctx, now: OffsetDateTime) -> Self {
        let date = graph_time(now);
        let body = json!({
            "error": {
                "code": e.code,
                "message": e.message,
                "innerError": {
                    "date": date.trim_end_matches('Z'),
                    "request-id": ctx.request_id,
                    "client-request-id": ctx.client_request_id.as_deref().unwrap_or(&ctx.request_id),
                }
            }
        });
        Self {
            status: e.status,
            headers: e.headers,
            body: ReplyBody::Json(body),
        }
    }
}

/// What the pipeline learned for the request log.
#[derive(Default)]
struct Draft {
    mailbox: Option<String>,
    client_id: Option<String>,
    fault: Option<String>,
}

/// Entry point for every `/v1.0/...` request.
pub(crate) async fn handle(State(core): State<Arc<Core>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let ctx = Ctx::new(&core, &parts);
    let mut draft = Draft::default();
    let mut slot: Option<SlotGuard> = None;
    let mut cut: Option<FaultCut> = None;
    let result = match axum::body::to_bytes(body, MAX_REQUEST_BODY).await {
        Ok(bytes) => run(&core, &ctx, &bytes, &mut draft, &mut slot, &mut cut).await,
        Err(_) => Err(GraphError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "The request body is larger than the 4 MB Graph allows.",
        )),
    };
    let reply = result.unwrap_or_else(|e| Reply::from_error(e, &ctx, core.now()));
    respond(&core, ctx, reply, draft, slot, cut)
}

/// Who is calling: the app, and for a delegated token the user and the granted scopes.
pub(crate) struct Caller {
    pub(crate) tenant: usize,
    pub(crate) client_id: String,
    /// `None` for an app-only token (docs/graph.md section 13).
    pub(crate) delegation: Option<Delegation>,
}

/// How much of a mailbox a request may reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// All of it (the app's permissions, the user's own mailbox, or FullAccess).
    Full,
    /// Only these folders, shared with the signed-in user (docs/graph.md section 13).
    Folders(Vec<usize>),
}

async fn run(
    core: &Arc<Core>,
    ctx: &Ctx,
    body: &Bytes,
    draft: &mut Draft,
    slot: &mut Option<SlotGuard>,
    cut: &mut Option<FaultCut>,
) -> Result<Reply, GraphError> {
    let caller = authenticate(core, ctx)?;
    let (tenant, client_id) = (caller.tenant, caller.client_id.clone());
    draft.client_id = Some(client_id.clone());

    let after_version = ctx.raw_path.strip_prefix("/v1.0").unwrap_or_default();
    let segments = route::segments(after_version);
    if segments
        .first()
        .is_some_and(|s| s.eq_ignore_ascii_case("subscriptions"))
    {
        not_per_mailbox(core, ctx, draft, cut).await?;
        let rest = segments.get(1..).unwrap_or_default();
        return subscriptions::handle(core, ctx, rest, body, &caller, draft).await;
    }
    if segments
        .first()
        .is_some_and(|s| applications::is_applications_segment(s))
    {
        not_per_mailbox(core, ctx, draft, cut).await?;
        if caller.delegation.is_some() {
            // The sandbox models no directory roles for users (docs/graph.md section 13).
            return Err(GraphError::insufficient_privileges());
        }
        return applications::handle(core, ctx, &segments, body, tenant, &client_id);
    }
    if directory::is_directory_request(&segments) {
        not_per_mailbox(core, ctx, draft, cut).await?;
        return directory::handle(core, ctx, &segments, &caller);
    }
    let mut route = route::parse(&ctx.method, &segments)?;
    if route.me {
        // `/me` is the signed-in user (docs/graph.md section 13).
        let Some(d) = &caller.delegation else {
            return Err(GraphError::bad_request(
                "/me request is only valid with delegated authentication flow.",
            ));
        };
        route.user = lock(&core.state)
            .mailbox(d.user)
            .map(|m| m.address.clone())
            .unwrap_or_default();
    }
    draft.mailbox = Some(route.user.to_ascii_lowercase());

    let (mailbox_idx, address, access) = authorize(core, &caller, &route)?;
    draft.mailbox = Some(address.clone());

    // Outlook limits per app and mailbox (docs/graph.md section 7).
    *slot = Some(
        throttle::admit(&core.throttle, &client_id, &address).map_err(|r| match r {
            Rejection::Concurrency { retry_after } | Rejection::Budget { retry_after } => {
                GraphError::throttled(&retry_after)
            }
        })?,
    );

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

    let now = core.now();
    let (reply, arrivals) = {
        let mut st = lock(&core.state);
        let reply = match &access {
            Access::Full => Ok(()),
            Access::Folders(folders) => check_folders(&st, mailbox_idx, &route.op, body, folders),
        }
        .and_then(|()| dispatch(&mut st, mailbox_idx, &route.op, ctx, body, now, &client_id));
        // A sent draft can bring mail into other mailboxes too.
        let arrivals = if matches!(route.op, Op::SendDraft(_)) {
            st.take_all_arrivals()
        } else {
            st.take_arrivals(mailbox_idx)
        };
        (reply, arrivals)
    };
    // Moves, drafts and sent mail can bring messages into watched folders (docs/graph.md
    // sections 6 and 12).
    core.notify_arrivals(&arrivals);
    // A bigger body takes longer to arrive; the slot stays taken meanwhile.
    if let Ok(Reply {
        body: ReplyBody::Mime(template),
        ..
    }) = &reply
    {
        let transfer = core.transfer_latency(template.len());
        if !transfer.is_zero() {
            tokio::time::sleep(transfer).await;
        }
    }
    reply
}

/// What a request that is not about one mailbox (subscriptions, applications, the directory)
/// goes through before it is answered: no Outlook throttling, but faults and latency apply.
async fn not_per_mailbox(
    core: &Core,
    ctx: &Ctx,
    draft: &mut Draft,
    cut: &mut Option<FaultCut>,
) -> Result<(), GraphError> {
    if let Some(kind) = core.take_fault(ctx.method.as_str(), &ctx.raw_path, &ctx.path, None) {
        apply_fault(kind, draft, cut).await?;
    }
    let latency = core.latency_for("");
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    Ok(())
}

/// Applies an injected fault: an error to answer, or a delay or a cut body to arrange.
async fn apply_fault(
    kind: FaultKind,
    draft: &mut Draft,
    cut: &mut Option<FaultCut>,
) -> Result<(), GraphError> {
    draft.fault = Some(kind.name().to_owned());
    match kind {
        FaultKind::Status(status, retry_after) => Err(fault_status(status, retry_after)),
        FaultKind::Throttle(retry_after) => {
            Err(GraphError::throttled(&format_seconds(retry_after)))
        }
        FaultKind::Delay(d) => {
            tokio::time::sleep(d).await;
            Ok(())
        }
        FaultKind::DropConnection => {
            *cut = Some(FaultCut::Drop);
            Ok(())
        }
        FaultKind::TruncateBody => {
            *cut = Some(FaultCut::Truncate);
            Ok(())
        }
    }
}

fn fault_status(status: u16, retry_after: Option<f64>) -> GraphError {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let code = match status.as_u16() {
        503 => "ServiceNotAvailable",
        504 => "GatewayTimeout",
        429 => "TooManyRequests",
        _ => "UnknownError",
    };
    let mut e = GraphError::new(
        status,
        code,
        "The service is temporarily unavailable (injected by the sandbox).",
    );
    if let Some(s) = retry_after {
        e = e.with_header(header::RETRY_AFTER, format_seconds(s));
    }
    e
}

/// Checks the bearer token; returns who is calling.
fn authenticate(core: &Core, ctx: &Ctx) -> Result<Caller, GraphError> {
    let Some(auth) = ctx.authorization.as_deref().map(str::trim) else {
        return Err(GraphError::unauthenticated("Access token is empty."));
    };
    let token = match auth.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("Bearer") => token.trim(),
        _ => return Err(GraphError::unauthenticated("Access token is empty.")),
    };
    if token.is_empty() {
        return Err(GraphError::unauthenticated("Access token is empty."));
    }
    if !token.contains('.') {
        return Err(GraphError::unauthenticated(
            "IDX14100: JWT is not well formed, there are no dots (.).\nThe token needs to be in JWS or JWE Compact Serialization Format. (JWS): 'EncodedHeader.EndcodedPayload.EncodedSignature'. (JWE): 'EncodedProtectedHeader.EncodedEncryptedKey.EncodedInitializationVector.EncodedCiphertext.EncodedAuthenticationTag'.",
        ));
    }
    let now = core.now();
    let st = lock(&core.state);
    match st.tokens.get(token) {
        None => Err(GraphError::unauthenticated(
            "Access token validation failure. Invalid audience.",
        )),
        Some(t) if t.expires_at <= now => Err(GraphError::unauthenticated(
            "Lifetime validation failed, the token is expired.",
        )),
        Some(t) => Ok(Caller {
            tenant: t.tenant,
            client_id: t.client_id.clone(),
            delegation: t.delegation.clone(),
        }),
    }
}

/// Resolves the mailbox and checks what the caller may do there: an app's scope and
/// permissions (docs/graph.md section 8), or a user's delegated scopes and what was shared with
/// them (section 13).
fn authorize(
    core: &Core,
    caller: &Caller,
    route: &route::Route,
) -> Result<(usize, String, Access), GraphError> {
    let tenant = caller.tenant;
    let st = lock(&core.state);
    let mb_idx = st
        .find_mailbox(&route.user)
        .filter(|i| st.mailbox(*i).is_some_and(|m| m.tenant == tenant))
        .ok_or_else(|| GraphError::invalid_user(&route.user))?;
    let mailbox = st
        .mailbox(mb_idx)
        .ok_or_else(|| GraphError::invalid_user(&route.user))?;
    let address = mailbox.address.clone();
    let app = st
        .tenants
        .get(tenant)
        .and_then(|t| t.app(&caller.client_id))
        .ok_or_else(GraphError::access_denied)?;
    let need = route.op.need();
    let unlicensed = mailbox.kind == crate::world::MailboxKind::Unlicensed;
    if unlicensed && need != Need::Directory {
        return Err(GraphError::mailbox_not_enabled());
    }
    if let Some(d) = &caller.delegation {
        let access = delegated_access(&st, d, mb_idx, need)?;
        return Ok((mb_idx, address, access));
    }
    if need == Need::Directory {
        let allowed = ["User.Read.All", "User.ReadBasic.All", "Directory.Read.All"]
            .iter()
            .any(|p| app.has(p));
        if !allowed {
            return Err(GraphError::insufficient_privileges());
        }
        return Ok((mb_idx, address, Access::Full));
    }
    let permitted = match need {
        Need::Read => app.can_read(),
        Need::Write => app.can_write(),
        Need::Send => app.has("Mail.Send"),
        Need::Directory => true,
    };
    if need != Need::Send && !app.can_read() {
        return Err(GraphError::access_denied());
    }
    if !app.in_scope(&address) {
        return Err(GraphError::out_of_scope());
    }
    if !permitted {
        return Err(GraphError::access_denied());
    }
    Ok((mb_idx, address, Access::Full))
}

/// A delegated token reaches the user's own mailbox with the plain mail scopes, and another
/// mailbox shared with the user with the `.Shared` ones; the app's application permissions and
/// its RBAC / application access policy scope play no part (docs/graph.md section 13).
fn delegated_access(
    st: &SandboxState,
    d: &Delegation,
    mb_idx: usize,
    need: Need,
) -> Result<Access, GraphError> {
    let own = d.user == mb_idx;
    if need == Need::Directory {
        let allowed = if own {
            d.has_any(&[
                "User.Read",
                "User.ReadWrite",
                "User.ReadBasic.All",
                "User.Read.All",
                "Directory.Read.All",
            ])
        } else {
            d.has_any(&["User.ReadBasic.All", "User.Read.All", "Directory.Read.All"])
        };
        return if allowed {
            Ok(Access::Full)
        } else {
            Err(GraphError::insufficient_privileges())
        };
    }
    if own {
        let allowed = match need {
            Need::Read => d.has_any(&[
                "Mail.Read",
                "Mail.ReadWrite",
                "Mail.Read.Shared",
                "Mail.ReadWrite.Shared",
            ]),
            Need::Write => d.has_any(&["Mail.ReadWrite", "Mail.ReadWrite.Shared"]),
            Need::Send => d.has_any(&["Mail.Send", "Mail.Send.Shared"]),
            Need::Directory => true,
        };
        return if allowed {
            Ok(Access::Full)
        } else {
            Err(GraphError::access_denied())
        };
    }
    let scoped = match need {
        Need::Read => d.has_any(&["Mail.Read.Shared", "Mail.ReadWrite.Shared"]),
        Need::Write => d.has("Mail.ReadWrite.Shared"),
        // Sending as another mailbox needs Send As rights, which the sandbox does not model.
        Need::Send | Need::Directory => false,
    };
    if !scoped {
        return Err(GraphError::access_denied());
    }
    let user = st
        .mailbox(d.user)
        .map(|m| m.address.clone())
        .unwrap_or_default();
    // The shares that allow what the request needs.
    let shares: Vec<&crate::state::Share> = st
        .mailbox(mb_idx)
        .map(|m| {
            m.shares
                .iter()
                .filter(|s| s.user == user && (need != Need::Write || s.write))
                .collect()
        })
        .unwrap_or_default();
    if shares.iter().any(|s| s.folder.is_none()) {
        return Ok(Access::Full);
    }
    let folders: Vec<usize> = shares.iter().filter_map(|s| s.folder).collect();
    if folders.is_empty() {
        return Err(GraphError::access_denied());
    }
    Ok(Access::Folders(folders))
}

/// With only some folders shared, the request must stay inside them: a folder by id, or a
/// message of one (a move also needs its destination shared). Anything about the whole mailbox
/// is refused like an unshared mailbox (docs/graph.md section 13).
fn check_folders(
    st: &SandboxState,
    mb_idx: usize,
    op: &Op,
    body: &[u8],
    folders: &[usize],
) -> Result<(), GraphError> {
    let mb = st
        .mailbox(mb_idx)
        .ok_or_else(|| GraphError::invalid_user("?"))?;
    let folder_ok = |id: &str| -> Result<(), GraphError> {
        let f = folders::resolve(mb, id)?;
        if folders.contains(&f) {
            Ok(())
        } else {
            Err(GraphError::access_denied())
        }
    };
    let message_ok = |id: &str| -> Result<(), GraphError> {
        let folder = mb
            .resolve_message(id)
            .and_then(|k| mb.message(k))
            .map(|m| m.folder);
        match folder {
            // Unknown ids get the operation's own 404.
            None => Ok(()),
            Some(f) if folders.contains(&f) => Ok(()),
            Some(_) => Err(GraphError::access_denied()),
        }
    };
    match op {
        Op::GetFolder(id)
        | Op::ListMessages(Some(id))
        | Op::Delta(id)
        | Op::CreateDraft(Some(id)) => folder_ok(id),
        Op::MoveMessage(id) => {
            message_ok(id)?;
            let destination = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
                v.get("destinationId")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
            match destination {
                Some(dest) => folder_ok(&dest),
                None => Ok(()),
            }
        }
        Op::GetMessage(id)
        | Op::PatchMessage(id)
        | Op::DeleteMessage(id)
        | Op::MessageValue(id)
        | Op::ListAttachments(id)
        | Op::AddAttachment(id)
        | Op::CreateUploadSession(id) => message_ok(id),
        // The mailbox as a whole, or a new item outside the shared folders (a reply's draft
        // goes to Drafts).
        Op::ListFolders
        | Op::ChildFolders(_)
        | Op::ListMessages(None)
        | Op::CreateDraft(None)
        | Op::CreateReply(..)
        | Op::SendDraft(_)
        | Op::SendMail
        | Op::GetUser => Err(GraphError::access_denied()),
    }
}

fn dispatch(
    st: &mut SandboxState,
    mb: usize,
    op: &Op,
    ctx: &Ctx,
    body: &[u8],
    now: OffsetDateTime,
    client_id: &str,
) -> Result<Reply, GraphError> {
    // Operations on more than one mailbox, or on the sandbox's upload sessions.
    match op {
        Op::SendMail => {
            let mb = st
                .mailbox_mut(mb)
                .ok_or_else(|| GraphError::invalid_user("?"))?;
            let (reply, sent) = messages::send_mail(mb, body, now, client_id)?;
            st.sent_mail.push(sent);
            return Ok(reply);
        }
        Op::SendDraft(id) => return send::send(st, mb, id, now, client_id),
        Op::CreateUploadSession(id) => {
            return attachments::create_upload_session(st, mb, ctx, id, body, now);
        }
        _ => {}
    }
    let mb = st
        .mailbox_mut(mb)
        .ok_or_else(|| GraphError::invalid_user("?"))?;
    match op {
        Op::ListFolders => folders::list(mb, ctx, mb.root),
        Op::GetFolder(id) => folders::get(mb, ctx, id),
        Op::ChildFolders(id) => {
            let parent = folders::resolve(mb, id)?;
            folders::list(mb, ctx, parent)
        }
        Op::ListMessages(folder) => messages::list(mb, ctx, folder.as_deref()),
        Op::Delta(folder) => delta::page(mb, ctx, folder),
        Op::GetMessage(id) => messages::get(mb, ctx, id),
        Op::PatchMessage(id) => messages::patch(mb, ctx, id, body, now),
        Op::DeleteMessage(id) => messages::delete(mb, id, now),
        Op::MessageValue(id) => messages::value(mb, id),
        Op::MoveMessage(id) => messages::move_message(mb, ctx, id, body, now),
        Op::ListAttachments(id) => attachments::list(mb, ctx, id),
        Op::AddAttachment(id) => attachments::add(mb, ctx, id, body, now),
        Op::CreateDraft(folder) => drafts::create(mb, ctx, folder.as_deref(), body, now),
        Op::CreateReply(id, all) => drafts::create_reply(mb, ctx, id, *all, body, now),
        // Answered above, before the mailbox is borrowed.
        Op::SendMail | Op::SendDraft(_) | Op::CreateUploadSession(_) => {
            Err(GraphError::not_implemented("this operation"))
        }
        Op::GetUser => Ok(Reply::json(
            StatusCode::OK,
            json!({
                "@odata.context": format!("{}#users/$entity", ctx.metadata()),
                "id": mb.id,
                "displayName": mb.display_name,
                "mail": mb.address,
                "userPrincipalName": mb.address,
            }),
        )),
    }
}

/// Turns a reply into the HTTP response, releasing the in-flight slot before the response can
/// reach the client (streams release it when producing their last chunk) and logging the request.
fn respond(
    core: &Arc<Core>,
    ctx: Ctx,
    reply: Reply,
    draft: Draft,
    slot: Option<SlotGuard>,
    cut: Option<FaultCut>,
) -> Response {
    let status = reply.status;
    let mut record = RequestRecord {
        method: ctx.method.to_string(),
        path: ctx.path.clone(),
        raw_path: ctx.raw_path.clone(),
        query: ctx.decoded_query.clone(),
        status: status.as_u16(),
        mailbox: draft.mailbox,
        client_id: draft.client_id,
        immutable_ids: ctx.prefs.immutable_ids,
        client_request_id: ctx.client_request_id.clone(),
        request_id: ctx.request_id.clone(),
        fault: draft.fault,
        started: ctx.started,
        finished: ctx.started,
    };
    lock(&core.log).graph_requests += 1;

    let mut headers = HeaderMap::new();
    insert_header(
        &mut headers,
        HeaderName::from_static("request-id"),
        &ctx.request_id,
    );
    insert_header(
        &mut headers,
        HeaderName::from_static("client-request-id"),
        ctx.client_request_id.as_deref().unwrap_or(&ctx.request_id),
    );
    for (name, value) in &reply.headers {
        insert_header(&mut headers, name.clone(), value);
    }

    let body = match reply.body {
        ReplyBody::Mime(template) => {
            insert_header(&mut headers, header::CONTENT_TYPE, "text/plain");
            insert_header(
                &mut headers,
                header::CONTENT_LENGTH,
                &template.len().to_string(),
            );
            let stream = MimeStream::new(&template, slot, Arc::clone(core), record, cut);
            Body::from_stream(stream)
        }
        other => {
            let bytes = match other {
                ReplyBody::Json(v) => {
                    insert_header(&mut headers, header::CONTENT_TYPE, JSON_CONTENT_TYPE);
                    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
                }
                _ => Bytes::new(),
            };
            // The slot is freed before the response leaves this function.
            drop(slot);
            record.finished = Instant::now();
            core.record(record);
            match cut {
                None => Body::from(bytes),
                Some(cut) => {
                    if cut == FaultCut::Truncate {
                        insert_header(
                            &mut headers,
                            header::CONTENT_LENGTH,
                            &bytes.len().to_string(),
                        );
                    }
                    faulty_body(bytes, cut)
                }
            }
        }
    };
    (status, headers, body).into_response()
}

fn insert_header(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Any path outside `/v1.0`, the token endpoint and the control API.
pub(crate) async fn fallback(State(core): State<Arc<Core>>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let ctx = Ctx::new(&core, &parts);
    let first = ctx
        .path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let e = GraphError::not_found_segment(&first);
    let reply = Reply::from_error(e, &ctx, core.now());
    respond(&core, ctx, reply, Draft::default(), None, None)
}
