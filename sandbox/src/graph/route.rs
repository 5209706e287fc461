//! Path routing for `/v1.0/...`, done by hand on the raw path so that an id with an unencoded
//! `/` (which adds a segment) is recognised and answered `400 ErrorInvalidIdMalformed` like Graph
//! does (docs/graph.md section 2), while `%2F` inside a segment is decoded into the id.

use axum::http::Method;

use super::error::GraphError;

/// What a request asks for; ids are percent-decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    ListFolders,
    GetFolder(String),
    ChildFolders(String),
    /// `None`: `users/{u}/messages` (every folder).
    ListMessages(Option<String>),
    Delta(String),
    GetMessage(String),
    PatchMessage(String),
    DeleteMessage(String),
    MessageValue(String),
    MoveMessage(String),
    ListAttachments(String),
    SendMail,
    GetUser,
    /// `POST …/messages` (`None`: Drafts) or `POST …/mailFolders/{id}/messages`.
    CreateDraft(Option<String>),
    /// `POST …/messages/{id}/send`.
    SendDraft(String),
    /// `POST …/messages/{id}/createReply` (`false`) or `createReplyAll` (`true`).
    CreateReply(String, bool),
    /// `POST …/messages/{id}/attachments`.
    AddAttachment(String),
    /// `POST …/messages/{id}/attachments/createUploadSession`.
    CreateUploadSession(String),
}

/// The permission an operation needs (docs/graph.md section 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    Read,
    Write,
    Send,
    Directory,
}

impl Op {
    pub(crate) fn need(&self) -> Need {
        match self {
            Op::PatchMessage(_)
            | Op::DeleteMessage(_)
            | Op::MoveMessage(_)
            | Op::CreateDraft(_)
            | Op::CreateReply(..)
            | Op::AddAttachment(_)
            | Op::CreateUploadSession(_) => Need::Write,
            Op::SendMail | Op::SendDraft(_) => Need::Send,
            Op::GetUser => Need::Directory,
            _ => Need::Read,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// The `{id | userPrincipalName}` segment, decoded (empty for `/me` until the caller's
    /// user fills it in).
    pub(crate) user: String,
    pub(crate) op: Op,
    /// The path began with `/me`: the signed-in user (docs/graph.md section 13).
    pub(crate) me: bool,
}

/// Real Graph navigation properties under a message that the sandbox does not serve.
const MESSAGE_NAVS: &[&str] = &[
    "extensions",
    "copy",
    "createForward",
    "forward",
    "reply",
    "replyAll",
    "permanentDelete",
    "multiValueExtendedProperties",
    "singleValueExtendedProperties",
];

/// Real Graph navigation properties under a folder that the sandbox does not serve.
const FOLDER_NAVS: &[&str] = &[
    "move",
    "copy",
    "messageRules",
    "permanentDelete",
    "multiValueExtendedProperties",
    "singleValueExtendedProperties",
];

fn is(segment: &str, name: &str) -> bool {
    segment.eq_ignore_ascii_case(name)
}

fn allow(method: &Method, allowed: &[Method]) -> Result<(), GraphError> {
    if allowed.contains(method) {
        return Ok(());
    }
    let list: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    Err(GraphError::method_not_allowed(
        method.as_str(),
        &list.join(", "),
    ))
}

/// Splits the part of a raw path after `/v1.0` into percent-decoded segments.
pub(crate) fn segments(raw_after_version: &str) -> Vec<String> {
    let trimmed = raw_after_version
        .strip_prefix('/')
        .unwrap_or(raw_after_version);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Vec::new();
    }
    trimmed
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

/// Routes decoded segments (after `v1.0`).
pub(crate) fn parse(method: &Method, segs: &[String]) -> Result<Route, GraphError> {
    let strs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match strs.as_slice() {
        [] => Err(GraphError::not_found_segment("v1.0")),
        [me, rest @ ..] if is(me, "me") => {
            let op = parse_user(method, rest)?;
            Ok(Route {
                user: String::new(),
                op,
                me: true,
            })
        }
        [users, user, rest @ ..] if is(users, "users") => {
            let op = parse_user(method, rest)?;
            Ok(Route {
                user: (*user).to_owned(),
                op,
                me: false,
            })
        }
        [first, ..] => Err(GraphError::not_found_segment(first)),
    }
}

fn parse_user(method: &Method, rest: &[&str]) -> Result<Op, GraphError> {
    match rest {
        [] => {
            allow(method, &[Method::GET])?;
            Ok(Op::GetUser)
        }
        [folders, tail @ ..] if is(folders, "mailFolders") => match tail {
            [] => {
                allow(method, &[Method::GET])?;
                Ok(Op::ListFolders)
            }
            [delta] if is(delta, "delta") => Err(GraphError::not_implemented("mailFolders/delta")),
            [folder, tail @ ..] => parse_folder(method, folder, tail),
        },
        [messages, tail @ ..] if is(messages, "messages") => match tail {
            [] => match *method {
                Method::GET => Ok(Op::ListMessages(None)),
                Method::POST => Ok(Op::CreateDraft(None)),
                _ => Err(GraphError::method_not_allowed(method.as_str(), "GET, POST")),
            },
            [delta] if is(delta, "delta") => Err(GraphError::bad_request(
                "Delta query is supported per folder only: use mailFolders/{id}/messages/delta.",
            )),
            [message, tail @ ..] => parse_message(method, message, tail),
        },
        [send] if is(send, "sendMail") => {
            allow(method, &[Method::POST])?;
            Ok(Op::SendMail)
        }
        [other, ..] => Err(GraphError::not_found_segment(other)),
    }
}

fn parse_folder(method: &Method, folder: &str, tail: &[&str]) -> Result<Op, GraphError> {
    let folder = folder.to_owned();
    match tail {
        [] => {
            allow(method, &[Method::GET])?;
            Ok(Op::GetFolder(folder))
        }
        [children] if is(children, "childFolders") => {
            allow(method, &[Method::GET])?;
            Ok(Op::ChildFolders(folder))
        }
        [children, delta] if is(children, "childFolders") && is(delta, "delta") => {
            Err(GraphError::not_implemented("childFolders/delta"))
        }
        // childFolders/{id}/... addresses the child like mailFolders/{id}/... does.
        [children, child, tail @ ..] if is(children, "childFolders") => {
            parse_folder(method, child, tail)
        }
        [messages] if is(messages, "messages") => match *method {
            Method::GET => Ok(Op::ListMessages(Some(folder))),
            Method::POST => Ok(Op::CreateDraft(Some(folder))),
            _ => Err(GraphError::method_not_allowed(method.as_str(), "GET, POST")),
        },
        [messages, delta] if is(messages, "messages") && is(delta, "delta") => {
            allow(method, &[Method::GET])?;
            Ok(Op::Delta(folder))
        }
        [messages, message, tail @ ..] if is(messages, "messages") => {
            parse_message(method, message, tail)
        }
        [nav, ..] if FOLDER_NAVS.iter().any(|n| is(nav, n)) => {
            Err(GraphError::not_implemented(nav))
        }
        // Anything else means the folder id itself contained a raw '/'.
        _ => Err(GraphError::malformed_id()),
    }
}

fn parse_message(method: &Method, message: &str, tail: &[&str]) -> Result<Op, GraphError> {
    let id = message.to_owned();
    match tail {
        [] => match *method {
            Method::GET => Ok(Op::GetMessage(id)),
            Method::PATCH => Ok(Op::PatchMessage(id)),
            Method::DELETE => Ok(Op::DeleteMessage(id)),
            _ => Err(GraphError::method_not_allowed(
                method.as_str(),
                "GET, PATCH, DELETE",
            )),
        },
        [value] if *value == "$value" => {
            allow(method, &[Method::GET])?;
            Ok(Op::MessageValue(id))
        }
        [mv] if is(mv, "move") => {
            allow(method, &[Method::POST])?;
            Ok(Op::MoveMessage(id))
        }
        [attachments] if is(attachments, "attachments") => match *method {
            Method::GET => Ok(Op::ListAttachments(id)),
            Method::POST => Ok(Op::AddAttachment(id)),
            _ => Err(GraphError::method_not_allowed(method.as_str(), "GET, POST")),
        },
        [attachments, session]
            if is(attachments, "attachments") && is(session, "createUploadSession") =>
        {
            allow(method, &[Method::POST])?;
            Ok(Op::CreateUploadSession(id))
        }
        [send] if is(send, "send") => {
            allow(method, &[Method::POST])?;
            Ok(Op::SendDraft(id))
        }
        [reply] if is(reply, "createReply") => {
            allow(method, &[Method::POST])?;
            Ok(Op::CreateReply(id, false))
        }
        [reply] if is(reply, "createReplyAll") => {
            allow(method, &[Method::POST])?;
            Ok(Op::CreateReply(id, true))
        }
        [nav] if MESSAGE_NAVS.iter().any(|n| is(nav, n)) => Err(GraphError::not_implemented(nav)),
        // More segments than any message route: the id contained a raw '/'.
        _ => Err(GraphError::malformed_id()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: Method, path: &str) -> Result<Route, GraphError> {
        parse(&method, &segments(path))
    }

    #[test]
    fn encoded_ids_are_decoded_and_raw_slashes_are_malformed() {
        let r = route(
            Method::GET,
            "/users/a%40b.com/messages/AAMk%2Bx%2Fy%3D/$value",
        )
        .unwrap();
        assert_eq!(r.user, "a@b.com");
        assert_eq!(r.op, Op::MessageValue("AAMk+x/y=".into()));
        let e = route(Method::GET, "/users/a/messages/AAMk+x/y=/$value").unwrap_err();
        assert_eq!(e.code, "ErrorInvalidIdMalformed");
        let e = route(Method::GET, "/users/a/mailFolders/AQMk/x=/messages").unwrap_err();
        assert_eq!(e.code, "ErrorInvalidIdMalformed");
        let e = route(Method::POST, "/users/a/messages/AAMk/x=/move").unwrap_err();
        assert_eq!(e.code, "ErrorInvalidIdMalformed");
    }

    #[test]
    fn shapes_and_methods() {
        assert_eq!(
            route(
                Method::GET,
                "/users/a/mailFolders/inbox/childFolders/x/messages/delta"
            )
            .unwrap()
            .op,
            Op::Delta("x".into())
        );
        assert_eq!(
            route(Method::DELETE, "/users/a/messages/m").unwrap().op,
            Op::DeleteMessage("m".into())
        );
        assert_eq!(
            route(Method::PUT, "/users/a/messages/m")
                .unwrap_err()
                .status,
            405
        );
        assert_eq!(
            route(Method::POST, "/users/a/mailFolders/drafts/messages")
                .unwrap()
                .op,
            Op::CreateDraft(Some("drafts".into()))
        );
        assert_eq!(
            route(
                Method::POST,
                "/users/a/messages/m/attachments/createUploadSession"
            )
            .unwrap()
            .op,
            Op::CreateUploadSession("m".into())
        );
        assert_eq!(
            route(Method::POST, "/users/a/messages/m/createReplyAll")
                .unwrap()
                .op,
            Op::CreateReply("m".into(), true)
        );
        assert_eq!(Op::SendDraft("m".into()).need(), Need::Send);
        assert_eq!(Op::CreateDraft(None).need(), Need::Write);
        assert_eq!(route(Method::GET, "/groups/x").unwrap_err().status, 404);
        assert_eq!(
            route(Method::GET, "/users/a/events").unwrap_err().status,
            404
        );
    }
}
