//! Graph and Entra errors, classified into what an operator can act on (docs/graph.md §1, §10).

use std::time::Duration;

use serde::Deserialize;

use super::client::Target;
use crate::domain::MailboxAddress;

/// What the client was doing when something failed; also decides which permission a 403 lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Token,
    GetFolder,
    ListFolders,
    ListMessages,
    Delta,
    GetMime,
    MoveMessage,
    MarkRead,
    /// `GET /messages/{id}/attachments?$select=name,size,contentType`, for the stored event.
    ListAttachments,
    /// `GET /mailFolders/{f}/messages?$filter=singleValueExtendedProperties/Any(…)`: a sent
    /// message or a draft marked with an idempotency key.
    FindMarked,
    /// `POST /messages`: a draft.
    CreateDraft,
    /// `POST /messages/{id}/createReply`: a draft replying to a stored message.
    CreateReply,
    /// `PATCH /messages/{id}` of a draft: its marks.
    UpdateDraft,
    /// `POST /messages/{id}/attachments`, one request.
    AddAttachment,
    /// `POST …/attachments/createUploadSession` and the upload's `PUT`s.
    UploadAttachment,
    /// `POST /messages/{id}/send`.
    SendDraft,
    /// `DELETE /messages/{id}`: an unfinished draft.
    DeleteMessage,
    CreateSubscription,
    RenewSubscription,
    DeleteSubscription,
    /// `GET /applications(appId='…')`: the app's own registration and its credentials.
    ReadApplication,
    /// `POST /applications(appId='…')/addPassword`.
    AddPassword,
    /// `POST /applications(appId='…')/removePassword`.
    RemovePassword,
    /// `POST /users/{mailbox}/sendMail` (alert mail).
    SendMail,
    /// `GET /users`: the tenant's users, for discovery.
    ListUsers,
    /// `GET /groups?$filter=displayName eq '…'` or `GET /groups/{id}`.
    FindGroup,
    /// `GET /groups/{id}/transitiveMembers/microsoft.graph.user`.
    ListGroupMembers,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Self::Token => "token request",
            Self::GetFolder => "get folder",
            Self::ListFolders => "list folders",
            Self::ListMessages => "list messages",
            Self::Delta => "delta query",
            Self::GetMime => "download message",
            Self::MoveMessage => "move message",
            Self::MarkRead => "mark message read",
            Self::ListAttachments => "list a message's attachments",
            Self::FindMarked => "look for a message by its idempotency key",
            Self::CreateDraft => "create a draft",
            Self::CreateReply => "create a reply",
            Self::UpdateDraft => "update a draft",
            Self::AddAttachment => "attach a file",
            Self::UploadAttachment => "upload an attachment",
            Self::SendDraft => "send a draft",
            Self::DeleteMessage => "delete a message",
            Self::CreateSubscription => "create subscription",
            Self::RenewSubscription => "renew subscription",
            Self::DeleteSubscription => "delete subscription",
            Self::ReadApplication => "read its app registration",
            Self::AddPassword => "add a client secret to its app registration",
            Self::RemovePassword => "remove a client secret from its app registration",
            Self::SendMail => "send mail",
            Self::ListUsers => "list the tenant's users",
            Self::FindGroup => "look up a group",
            Self::ListGroupMembers => "list a group's members",
        }
    }

    /// Whether sending the request twice has the effect of sending it once, so a retry after an
    /// answer that may have come after Graph acted (a 5xx, a timeout, a cut connection) is safe.
    /// Adding a password, creating a subscription and sending mail each do it again: those are
    /// retried only when Graph provably did not act (docs/graph.md §7).
    pub fn is_idempotent(self) -> bool {
        match self {
            Self::AddPassword | Self::CreateSubscription | Self::SendMail => false,
            // Each makes another draft, attachment or sent message; the send engine looks for
            // what an earlier attempt made instead (docs/sending.md).
            Self::CreateDraft
            | Self::CreateReply
            | Self::AddAttachment
            | Self::UploadAttachment
            | Self::SendDraft => false,
            // A move of an immutable id names one message and one destination: repeating it
            // after it succeeded leaves the message where it is (the engine's record of the
            // message makes the rest safe, docs/import.md). Removing a password twice fails the
            // second time instead of removing something else.
            _ => true,
        }
    }

    /// The least application permission the operation needs (docs/graph.md §8).
    pub fn permission(self) -> &'static str {
        match self {
            Self::MoveMessage | Self::MarkRead => "Mail.ReadWrite",
            Self::CreateDraft
            | Self::CreateReply
            | Self::UpdateDraft
            | Self::AddAttachment
            | Self::UploadAttachment
            | Self::DeleteMessage => "Mail.ReadWrite",
            Self::SendMail | Self::SendDraft => "Mail.Send",
            // Application.ReadWrite.OwnedBy reads owned apps too; Read.All is the least for
            // reading alone (docs/graph.md §9).
            Self::ReadApplication => "Application.Read.All",
            Self::AddPassword | Self::RemovePassword => "Application.ReadWrite.OwnedBy",
            // The least for listing users with their mail and accountEnabled (docs/graph.md §8).
            Self::ListUsers => "User.Read.All",
            Self::FindGroup | Self::ListGroupMembers => "GroupMember.Read.All",
            _ => "Mail.Read",
        }
    }
}

/// An error from Entra ID or Microsoft Graph. Messages say what went wrong and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    #[error(
        "the client secret of app {client_id} was rejected (AADSTS7000215): Mailroom needs the secret's Value, not its Secret ID; the value is shown only once, when the secret is created in Entra ID > App registrations > Certificates & secrets, so create a new secret if it was not saved"
    )]
    InvalidSecret { client_id: String },

    #[error(
        "the client secret of app {client_id} has expired (AADSTS7000222): create a new client secret in Entra ID > App registrations > Certificates & secrets and store its value in Mailroom's credential"
    )]
    ExpiredSecret { client_id: String },

    #[error(
        "the certificate of app {client_id} was rejected (AADSTS700027): it is not registered on the app, or the client assertion's signature does not match it; upload the certificate (its public part, PEM or .cer) in Entra ID > App registrations > Certificates & secrets > Certificates, and store its own private key with it"
    )]
    CertificateRejected { client_id: String },

    #[error(
        "the client assertion of app {client_id} is not within its valid time range (AADSTS700024): check this machine's system clock (it must be within a few minutes of the real time; enable NTP time sync)"
    )]
    AssertionOutOfTime { client_id: String },

    #[error(
        "tenant '{tenant}' was not found (AADSTS90002): check the tenant id (a GUID, or a verified domain such as contoso.onmicrosoft.com)"
    )]
    UnknownTenant { tenant: String },

    #[error(
        "app {client_id} was not found in tenant '{tenant}' (AADSTS700016): check the client (application) id, that the app is registered in this tenant, and that an administrator granted consent"
    )]
    UnknownApp { client_id: String, tenant: String },

    #[error("token request for app {client_id} was rejected: {error}: {description}")]
    TokenRejected {
        client_id: String,
        error: String,
        description: String,
        code: Option<u64>,
    },

    #[error(
        "credential '{credential}' needs its user to sign in again: {reason}; run: mailroom credentials login {credential}"
    )]
    SignInRequired { credential: String, reason: String },

    #[error(
        "the sign-in of credential '{credential}' could not be {action}: {detail}; the stored refresh token still works, and the next attempt tries again"
    )]
    SignInNotKept {
        credential: String,
        /// `read` or `stored`.
        action: &'static str,
        detail: String,
    },

    #[error(
        "{}",
        no_delegated_access_message(.credential, .mailbox, .operation, .needed, .code)
    )]
    NoDelegatedAccess {
        credential: String,
        mailbox: MailboxAddress,
        operation: &'static str,
        needed: &'static str,
        code: String,
    },

    #[error(
        "mailbox {mailbox} is outside the app's access scope (403 ErrorAccessDenied): add the mailbox to the app's Exchange RBAC management scope (or application access policy), or configure a mailbox the app may read; changes can take an hour to reach Graph"
    )]
    MailboxOutOfScope { mailbox: MailboxAddress },

    #[error(
        "the app may not {operation} in {mailbox} (403 {code}): grant the application permission {needed} to the app and have an administrator grant admin consent"
    )]
    PermissionDenied {
        mailbox: MailboxAddress,
        operation: &'static str,
        needed: &'static str,
        code: String,
    },

    #[error(
        "app {client_id} may not {operation} (403 {code}): grant the app the application permission {needed}{} and have an administrator grant admin consent",
        application_permission_note(.needed)
    )]
    ApplicationPermissionDenied {
        client_id: String,
        operation: &'static str,
        needed: &'static str,
        code: String,
    },

    #[error(
        "group '{group}' was not found: name it by its display name or object id, as Entra ID > Groups shows it"
    )]
    GroupNotFound { group: String },

    #[error("{operation} of app {client_id}: not found ({code})")]
    ApplicationNotFound {
        client_id: String,
        operation: &'static str,
        code: String,
    },

    #[error(
        "mailbox {mailbox} was not found or has no Exchange Online mailbox ({code}): check the address, that the user has an Exchange Online licence and is not hosted on-premises"
    )]
    MailboxNotFound {
        mailbox: MailboxAddress,
        code: String,
    },

    #[error("{}", folder_not_found_message(.mailbox, .path, .missing, .parent, .existing))]
    FolderNotFound {
        mailbox: MailboxAddress,
        path: String,
        missing: String,
        parent: String,
        existing: Vec<String>,
    },

    #[error(
        "folder path '{path}' in {mailbox} is ambiguous: more than one folder named '{segment}' under {parent}; rename one of them"
    )]
    AmbiguousFolder {
        mailbox: MailboxAddress,
        path: String,
        segment: String,
        parent: String,
    },

    #[error(
        "Graph kept throttling {operation} in {mailbox} (429) after {attempts} attempts; Mailroom will continue on the next run"
    )]
    Throttled {
        mailbox: MailboxAddress,
        operation: &'static str,
        attempts: u32,
    },

    #[error("the delta token for {mailbox} has expired ({code}); a full re-sync is needed")]
    DeltaExpired {
        mailbox: MailboxAddress,
        code: String,
    },

    #[error("{operation} in {mailbox}: item not found ({code})")]
    NotFound {
        mailbox: MailboxAddress,
        operation: &'static str,
        code: String,
    },

    #[error(
        "{operation} failed: Graph answered {status} {code}: {message} (client-request-id {client_request_id})"
    )]
    Api {
        operation: &'static str,
        status: u16,
        code: String,
        message: String,
        client_request_id: String,
    },

    #[error("{operation} failed after {attempts} attempts: {detail}")]
    Transport {
        operation: &'static str,
        attempts: u32,
        detail: String,
    },

    #[error("{operation}: malformed response from Graph: {detail}")]
    MalformedResponse {
        operation: &'static str,
        detail: String,
    },

    #[error("invalid Graph configuration: {0}")]
    Config(String),
}

fn no_delegated_access_message(
    credential: &str,
    mailbox: &MailboxAddress,
    operation: &str,
    needed: &str,
    code: &str,
) -> String {
    format!(
        "the user signed in for credential '{credential}' may not {operation} in {mailbox} (403 {code}): a delegated credential reaches the user's own mailbox (with the delegated permission {needed}) and mailboxes shared with them (Full Access or a shared folder, and {needed}.Shared); fix the sharing or add the scope to the credential's scopes, then sign in again: mailroom credentials login {credential}"
    )
}

/// What else works for an `/applications` permission (docs/graph.md §9).
fn application_permission_note(needed: &str) -> &'static str {
    match needed {
        "Application.Read.All" => " (or Application.ReadWrite.OwnedBy)",
        "Application.ReadWrite.OwnedBy" => {
            ", and add the app's service principal as an owner of its own app registration"
        }
        _ => "",
    }
}

fn folder_not_found_message(
    mailbox: &MailboxAddress,
    path: &str,
    missing: &str,
    parent: &str,
    existing: &[String],
) -> String {
    let existing = if existing.is_empty() {
        "no folders".to_owned()
    } else {
        existing
            .iter()
            .map(|f| format!("'{f}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "folder '{missing}' not found in {mailbox} (path '{path}'); {parent} has: {existing}; run `mailroom folders {mailbox}` to browse"
    )
}

impl GraphError {
    /// Graph rejected the credential itself: a re-read of the secret may help (it may just have
    /// been rotated); nothing else will until the operator acts.
    pub fn is_credential_rejected(&self) -> bool {
        matches!(
            self,
            Self::InvalidSecret { .. }
                | Self::ExpiredSecret { .. }
                | Self::CertificateRejected { .. }
                | Self::TokenRejected { .. }
        )
    }

    /// An error that no message of this mailbox folder can get past: stop the folder, report it.
    pub fn is_fatal_for_mailbox(&self) -> bool {
        matches!(
            self,
            Self::InvalidSecret { .. }
                | Self::ExpiredSecret { .. }
                | Self::CertificateRejected { .. }
                | Self::AssertionOutOfTime { .. }
                | Self::UnknownTenant { .. }
                | Self::UnknownApp { .. }
                | Self::TokenRejected { .. }
                | Self::SignInRequired { .. }
                | Self::NoDelegatedAccess { .. }
                | Self::MailboxOutOfScope { .. }
                | Self::PermissionDenied { .. }
                | Self::MailboxNotFound { .. }
                | Self::FolderNotFound { .. }
                | Self::AmbiguousFolder { .. }
                | Self::Config(_)
        )
    }

    /// A delegated credential's person must sign in again (or sign in at all).
    pub fn is_sign_in_required(&self) -> bool {
        matches!(self, Self::SignInRequired { .. })
    }

    pub fn is_delta_expired(&self) -> bool {
        matches!(self, Self::DeltaExpired { .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::NotFound { .. } | Self::ApplicationNotFound { .. }
        )
    }

    pub fn is_throttled(&self) -> bool {
        matches!(self, Self::Throttled { .. })
    }
}

/// The JSON error body of Graph (`{"error":{"code","message","innerError"}}`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ApiErrorBody {
    #[serde(default)]
    pub error: ApiErrorDetail,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ApiErrorDetail {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// The JSON error body of the Entra token endpoint (docs/graph.md §1).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TokenErrorBody {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub error_description: String,
    #[serde(default)]
    pub error_codes: Vec<u64>,
}

impl TokenErrorBody {
    /// Maps the first AADSTS code to an error type; unknown codes keep the description, because
    /// Microsoft warns that codes and texts change.
    pub(crate) fn classify(self, tenant: &str, client_id: &str) -> GraphError {
        let client_id = client_id.to_owned();
        let code = self.error_codes.first().copied().or_else(|| {
            // Older responses carry the code only in the description: "AADSTS7000215: …".
            let rest = self.error_description.strip_prefix("AADSTS")?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        });
        match code {
            Some(7_000_215) => GraphError::InvalidSecret { client_id },
            Some(7_000_222) => GraphError::ExpiredSecret { client_id },
            Some(700_027) => GraphError::CertificateRejected { client_id },
            Some(700_024) => GraphError::AssertionOutOfTime { client_id },
            Some(90_002) => GraphError::UnknownTenant {
                tenant: tenant.to_owned(),
            },
            Some(700_016) => GraphError::UnknownApp {
                client_id,
                tenant: tenant.to_owned(),
            },
            _ => GraphError::TokenRejected {
                client_id,
                error: self.error,
                // The first line only: the rest is trace and correlation ids.
                description: self
                    .error_description
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
                code,
            },
        }
    }
}

/// Classifies a non-success Graph response (docs/graph.md §10). Codes are compared
/// case-insensitively: Outlook answers with Exchange-style codes.
pub(crate) fn classify_api_error(
    operation: Operation,
    target: Target<'_>,
    client_id: &str,
    status: u16,
    body: ApiErrorBody,
    client_request_id: &str,
) -> GraphError {
    let ApiErrorDetail { code, message } = body.error;
    let mailbox = match target {
        Target::Mailbox(mailbox) => mailbox.clone(),
        // Not about a mailbox: a 403 names the app permission; only an app registration's 404
        // has its own error (a group's is mapped by the directory client).
        Target::Application | Target::Directory => {
            return match (status, target) {
                (403, _) => GraphError::ApplicationPermissionDenied {
                    client_id: client_id.to_owned(),
                    operation: operation.name(),
                    needed: operation.permission(),
                    code,
                },
                (404, Target::Application) => GraphError::ApplicationNotFound {
                    client_id: client_id.to_owned(),
                    operation: operation.name(),
                    code,
                },
                _ => GraphError::Api {
                    operation: operation.name(),
                    status,
                    code,
                    message,
                    client_request_id: client_request_id.to_owned(),
                },
            };
        }
    };
    let code_is = |c: &str| code.eq_ignore_ascii_case(c);
    match status {
        _ if code_is("syncStateNotFound") || code_is("resyncRequired") => {
            GraphError::DeltaExpired { mailbox, code }
        }
        // "Access to OData is disabled." is the documented text for a mailbox outside an
        // application access policy (docs/graph.md §8); any other 403 is a missing permission.
        403 if message.contains("OData is disabled") => GraphError::MailboxOutOfScope { mailbox },
        403 => GraphError::PermissionDenied {
            mailbox,
            operation: operation.name(),
            needed: operation.permission(),
            code,
        },
        404 if code_is("ErrorInvalidUser")
            || code_is("MailboxNotEnabledForRESTAPI")
            || code_is("MailboxNotFound") =>
        {
            GraphError::MailboxNotFound { mailbox, code }
        }
        404 => GraphError::NotFound {
            mailbox,
            operation: operation.name(),
            code,
        },
        410 => GraphError::DeltaExpired { mailbox, code },
        _ => GraphError::Api {
            operation: operation.name(),
            status,
            code,
            message,
            client_request_id: client_request_id.to_owned(),
        },
    }
}

/// Whether a status is worth retrying (docs/graph.md §7): throttling and server trouble.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// Parses `Retry-After`: seconds, possibly fractional (a documented sample says `2.128`), or an
/// HTTP date. A number too large for a `Duration` (`1e20`) is the longest wait, which
/// [`super::RetryPolicy::wait`] caps; `Duration::from_secs_f64` would panic on it.
pub(crate) fn parse_retry_after(value: &str, now: time::OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX));
    }
    let at =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let wait = at - now;
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox() -> MailboxAddress {
        MailboxAddress::parse("a@contoso.com").unwrap()
    }

    #[test]
    fn retry_after_accepts_fractions_and_dates() {
        let now = time::macros::datetime!(1994-11-06 08:49:30 UTC);
        assert_eq!(
            parse_retry_after("2.128", now),
            Some(Duration::from_millis(2128))
        );
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn token_errors_are_classified_by_code() {
        let body = |codes: Vec<u64>, description: &str| TokenErrorBody {
            error: "invalid_client".into(),
            error_description: description.into(),
            error_codes: codes,
        };
        assert!(matches!(
            body(vec![7000215], "").classify("t", "c"),
            GraphError::InvalidSecret { .. }
        ));
        assert!(matches!(
            body(vec![], "AADSTS7000222: expired").classify("t", "c"),
            GraphError::ExpiredSecret { .. }
        ));
        assert!(matches!(
            body(vec![90002], "").classify("t", "c"),
            GraphError::UnknownTenant { .. }
        ));
        let certificate = body(
            vec![700027],
            "AADSTS700027: Client assertion contains an invalid signature.",
        )
        .classify("t", "c");
        assert!(
            matches!(certificate, GraphError::CertificateRejected { .. }),
            "{certificate:?}"
        );
        assert!(certificate.is_credential_rejected());
        assert!(
            certificate.to_string().contains("Certificates & secrets"),
            "{certificate}"
        );
        let clock = body(
            vec![],
            "AADSTS700024: Client assertion is not within its valid time range.",
        )
        .classify("t", "c");
        assert!(
            matches!(clock, GraphError::AssertionOutOfTime { .. }),
            "{clock:?}"
        );
        assert!(clock.to_string().contains("system clock"), "{clock}");
        assert!(!clock.is_credential_rejected() && clock.is_fatal_for_mailbox());
        let other = body(vec![1], "AADSTS1: something new\r\nTrace ID: x").classify("t", "c");
        assert!(other.to_string().contains("something new"));
        assert!(!other.to_string().contains("Trace ID"));
        let secret_id = body(vec![7000215], "").classify("t", "c").to_string();
        assert!(
            secret_id.contains("Value, not its Secret ID"),
            "{secret_id}"
        );
    }

    #[test]
    fn forbidden_distinguishes_scope_from_permission() {
        let body = |message: &str| ApiErrorBody {
            error: ApiErrorDetail {
                code: "ErrorAccessDenied".into(),
                message: message.into(),
            },
        };
        let scope = classify_api_error(
            Operation::ListMessages,
            Target::Mailbox(&mailbox()),
            "c",
            403,
            body("Access to OData is disabled."),
            "r",
        );
        assert!(matches!(scope, GraphError::MailboxOutOfScope { .. }));
        let permission = classify_api_error(
            Operation::MoveMessage,
            Target::Mailbox(&mailbox()),
            "c",
            403,
            body("Access is denied. Check credentials and try again."),
            "r",
        );
        assert!(
            permission.to_string().contains("Mail.ReadWrite"),
            "{permission}"
        );
    }

    #[test]
    fn application_errors_name_the_app_and_the_permission() {
        let body = || ApiErrorBody {
            error: ApiErrorDetail {
                code: "Authorization_RequestDenied".into(),
                message: "Insufficient privileges to complete the operation.".into(),
            },
        };
        let read = classify_api_error(
            Operation::ReadApplication,
            Target::Application,
            "app-1",
            403,
            body(),
            "r",
        );
        let text = read.to_string();
        assert!(
            matches!(read, GraphError::ApplicationPermissionDenied { .. }),
            "{read:?}"
        );
        assert!(text.contains("app-1"), "{text}");
        assert!(text.contains("Application.Read.All (or Application.ReadWrite.OwnedBy)"));
        let write = classify_api_error(
            Operation::AddPassword,
            Target::Application,
            "app-1",
            403,
            body(),
            "r",
        )
        .to_string();
        assert!(write.contains("Application.ReadWrite.OwnedBy"), "{write}");
        assert!(write.contains("owner"), "{write}");
        let missing = classify_api_error(
            Operation::RemovePassword,
            Target::Application,
            "app-1",
            404,
            body(),
            "r",
        );
        assert!(missing.is_not_found());
    }

    #[test]
    fn expired_delta_is_recognised_by_status_or_code() {
        let body = |code: &str| ApiErrorBody {
            error: ApiErrorDetail {
                code: code.into(),
                message: String::new(),
            },
        };
        for (status, code) in [
            (410, "SyncStateNotFound"),
            (400, "resyncRequired"),
            (404, "syncStateNotFound"),
        ] {
            let e = classify_api_error(
                Operation::Delta,
                Target::Mailbox(&mailbox()),
                "c",
                status,
                body(code),
                "r",
            );
            assert!(e.is_delta_expired(), "{status} {code}: {e}");
        }
    }

    #[test]
    fn folder_not_found_lists_what_exists() {
        let e = GraphError::FolderNotFound {
            mailbox: mailbox(),
            path: "Inbox/Reprots".into(),
            missing: "Reprots".into(),
            parent: "'Inbox'".into(),
            existing: vec!["Reports".into(), "Invoices".into()],
        };
        let text = e.to_string();
        assert!(text.contains("'Reprots' not found"), "{text}");
        assert!(text.contains("'Reports', 'Invoices'"), "{text}");
    }
}
