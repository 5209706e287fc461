//! Set-up diagnostics for one configured mailbox folder: the checks behind `mailroom doctor` and
//! `mailroom mailbox add` ("test connection", "validate on save"); and for a discovery rule, the
//! directory permission it needs ([`check_discovery`]).
//!
//! Each [`Check`] is one line for the operator: what was found and, when it is not a pass, what
//! to do. Checks run in a fixed order; a check whose prerequisite failed is
//! [`CheckStatus::Skipped`] with the reason, so the first failure is the one to fix. Nothing here
//! changes the mailbox: the write-permission probe writes a message's `isRead` back with the value
//! it already has.
//!
//! A delegated credential (a person signed in, docs/delegated.md) is checked as its import uses
//! it: the token check redeems the sign-in and names who signed in, the mailbox checks read with
//! that person's token, and a "sign-in" check says when it was last refreshed. The checks made
//! for application permissions do not apply: the access scope (a delegated credential reaches
//! only what its user can open) and, for a public client, the secret's expiry.

use std::fmt;

use time::OffsetDateTime;

use crate::credentials::{AppCredential, ClientAuth, Delegation, SignedIn};
use crate::discovery::{DiscoverRule, Members};
use crate::domain::{AfterImport, MailboxAddress, MailboxConfig};
use crate::graph::{GraphClient, GraphError, MailFolder, MailboxClient, PasswordManagement};
use crate::redact::Redactor;

/// Check names, in the order the checks run.
const TOKEN: &str = "token";
const MAILBOX: &str = "mailbox";
const FOLDER: &str = "folder";
const PROCESSED_FOLDER: &str = "processed folder";
const PERMISSION: &str = "permission";
const ACCESS_SCOPE: &str = "access scope";
const SECRET_EXPIRY: &str = "secret expiry";
const ROTATION: &str = "rotation";
const SIGN_IN: &str = "sign-in";
const DISCOVERY: &str = "discovery";

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// Works as configured.
    Pass,
    /// Works, but something deserves attention (or could not be proven).
    Warn,
    /// Will not work as configured: the import would fail.
    Fail,
    /// Not run because a check it depends on failed.
    Skipped,
}

impl CheckStatus {
    /// The one-character mark printed before the check's name.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Pass => "✓",
            Self::Warn => "!",
            Self::Fail => "✗",
            Self::Skipped => "-",
        }
    }
}

/// One diagnostic result: a line for the operator, plus the fix when it is not a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// "token", "mailbox", "folder", "processed folder", "permission", "access scope",
    /// "secret expiry", "rotation" or "sign-in" (the CLI adds its own, e.g. "credential").
    pub name: &'static str,
    pub status: CheckStatus,
    /// What was found.
    pub detail: String,
    /// What to do about it; `None` for a pass.
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: CheckStatus::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            status: CheckStatus::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            status: CheckStatus::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn skipped(name: &'static str, reason: &str) -> Self {
        Self {
            name,
            status: CheckStatus::Skipped,
            detail: format!("skipped: {reason}"),
            fix: None,
        }
    }
}

/// `✓ folder: Inbox/Backup Reports (212 messages)`, and for anything but a pass the fix on the
/// next line, indented: `  fix: …`.
impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.symbol(), self.name, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n  fix: {fix}")?;
        }
        Ok(())
    }
}

/// What the doctor needs besides the configuration.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// A mailbox the app must NOT be able to read: proves the app's access is scoped.
    pub scope_probe: Option<MailboxAddress>,
    /// The time the secret's expiry is compared with (injected, docs/conventions.md, "Time").
    pub now: OffsetDateTime,
    /// Warn when the secret expires within this many days.
    pub expiry_warning_days: i64,
}

impl DoctorOptions {
    /// The default warning window for a secret's expiry, in days.
    pub const DEFAULT_EXPIRY_WARNING_DAYS: i64 = 30;

    /// Options with no scope probe and the default warning window.
    pub fn new(now: OffsetDateTime) -> Self {
        Self {
            scope_probe: None,
            now,
            expiry_warning_days: Self::DEFAULT_EXPIRY_WARNING_DAYS,
        }
    }
}

/// Whether the configuration can work: no check failed (warnings and skips allowed; a skip
/// always follows a failure).
pub fn is_valid(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.status != CheckStatus::Fail)
}

/// Whether `credential` may read what `rule` needs from the directory: the tenant's users
/// (User.Read.All) or the rule's group (GroupMember.Read.All). Reads one user or the group, not
/// the directory.
pub async fn check_discovery(
    graph: &GraphClient,
    credential: &AppCredential,
    rule: &DiscoverRule,
) -> Check {
    let directory = graph.directory(credential.clone());
    let found = match &rule.members {
        Members::All => directory
            .can_list_users()
            .await
            .map(|()| "the app can list the tenant's users".to_owned()),
        Members::Group(name) => directory
            .group(name)
            .await
            .map(|group| format!("the app can read group '{name}' ({})", group.id)),
    };
    match found {
        Ok(detail) => Check::pass(DISCOVERY, detail),
        Err(e @ GraphError::ApplicationPermissionDenied { needed, .. }) => Check::fail(
            DISCOVERY,
            e.to_string(),
            format!(
                "grant the app the Microsoft Graph application permission {needed} (Entra admin center > App registrations > the app > API permissions > Add a permission > Microsoft Graph > Application permissions), then Grant admin consent"
            ),
        ),
        Err(e @ GraphError::GroupNotFound { .. }) => Check::fail(
            DISCOVERY,
            e.to_string(),
            "check the group's display name in the Entra admin center (Groups), or use its object id",
        ),
        Err(e) => Check::fail(
            DISCOVERY,
            e.to_string(),
            "check the credential with `mailroom doctor` on one of its mailboxes",
        ),
    }
}

/// Runs every check for one mailbox folder, in order: token, mailbox, folder, processed folder
/// (`move` only), permission, access scope, secret expiry (not for a public client), rotation (a
/// client secret), sign-in (a delegated credential).
///
/// Never changes the mailbox. The only write is the permission probe of a writing action, which
/// sets one message's `isRead` to the value it already has.
pub async fn check_mailbox(
    graph: &GraphClient,
    credential: &AppCredential,
    config: &MailboxConfig,
    options: &DoctorOptions,
) -> Vec<Check> {
    let mut checks = Vec::with_capacity(8);
    let delegation = credential.delegated.as_ref();
    // A delegated credential's sign-in as the last refresh left it, before the token check
    // refreshes it.
    let before = match delegation {
        Some(d) => d.sign_ins.load(&d.name).await.ok().flatten(),
        None => None,
    };
    // A delegated credential's sign-in is redeemed afresh, as the daily credential check does:
    // the proof that it works now.
    let token = match delegation {
        Some(_) => graph.renew_token(credential).await,
        None => graph.check_credential(credential).await,
    };
    let after = match (delegation, &token) {
        (Some(d), Ok(())) => d.sign_ins.load(&d.name).await.ok().flatten(),
        _ => None,
    };
    let signed_in = after.as_ref().or(before.as_ref());
    let secret_expired = matches!(token, Err(GraphError::ExpiredSecret { .. }));
    match &token {
        Ok(()) => {
            checks.push(Check::pass(
                TOKEN,
                match signed_in {
                    None => format!(
                        "Entra ID issued a token for app {} in tenant {}",
                        credential.client_id, credential.tenant_id
                    ),
                    Some(s) => format!(
                        "signed in as {}: Entra ID issued a delegated token for app {} in tenant {} (scopes granted: {})",
                        user_of(s),
                        credential.client_id,
                        credential.tenant_id,
                        if s.scopes.is_empty() {
                            "not listed".to_owned()
                        } else {
                            s.scopes.join(", ")
                        }
                    ),
                },
            ));
            let mailbox = graph.mailbox(credential.clone(), config.address.clone());
            mailbox_checks(&mailbox, config, &mut checks).await;
            checks.push(match signed_in.filter(|_| delegation.is_some()) {
                Some(s) => Check::pass(
                    ACCESS_SCOPE,
                    format!(
                        "not applicable: a delegated credential reaches only what {} can open (their own mailbox and those shared with them), not every mailbox of the tenant",
                        user_of(s)
                    ),
                ),
                None => access_scope_check(graph, credential, config, options).await,
            });
        }
        Err(e) => {
            let mut detail = e.to_string();
            if let Some(s) = before.as_ref().filter(|_| delegation.is_some()) {
                detail.push_str(&format!(
                    " (signed in as {} on {})",
                    user_of(s),
                    format_date(s.signed_in_at)
                ));
            }
            checks.push(Check::fail(TOKEN, detail, token_fix(e, graph, credential)));
            let reason = "no access token (see the token check)";
            for name in [MAILBOX, FOLDER]
                .into_iter()
                .chain(config.action.processed_folder().map(|_| PROCESSED_FOLDER))
                .chain([PERMISSION, ACCESS_SCOPE])
            {
                checks.push(Check::skipped(name, reason));
            }
        }
    }
    // A public client has no secret or certificate to expire: the sign-in check says how long
    // the sign-in lasts. A confidential delegated client's secret or certificate is the app's
    // own, checked as any app credential's: with the client-credentials grant.
    if !matches!(credential.secret, ClientAuth::Public) {
        let app = AppCredential {
            delegated: None,
            ..credential.clone()
        };
        // What the app registration says wins over what was recorded with the credential.
        let from_graph = match &token {
            Ok(()) => Some(crate::expiry::expiry_from_graph(graph, &app).await),
            Err(_) => None,
        };
        let (expires_at, source) = match &from_graph {
            Some(Ok(at)) => (Some(*at), "from the app registration"),
            _ => (app.expires_at, "as recorded with the credential"),
        };
        let mut expiry = expiry_check(&app, expires_at, options, secret_expired);
        if expires_at.is_some() {
            expiry.detail.push_str(&format!(" ({source})"));
        }
        if let (Some(Err(why)), CheckStatus::Warn) = (&from_graph, expiry.status) {
            expiry.fix = Some(format!("{}; {why}", expiry.fix.take().unwrap_or_default()));
        }
        checks.push(expiry);
        if token.is_ok() && app.client_secret().is_some() {
            checks.push(rotation_check(graph, &app).await);
        }
    }
    if let Some(delegation) = delegation {
        checks.push(sign_in_check(
            delegation,
            before.as_ref(),
            after.as_ref(),
            &token,
            options,
        ));
    }
    redact_secret(&mut checks, credential, &[before.as_ref(), after.as_ref()]);
    checks
}

/// The account that signed in, as Entra named it.
fn user_of(signed_in: &SignedIn) -> String {
    signed_in
        .user
        .clone()
        .unwrap_or_else(|| "a user Entra did not name".to_owned())
}

/// A delegated credential's sign-in: who and when, the scopes granted against those configured,
/// and its last refresh against Entra's inactivity window (docs/graph.md section 13). `before` is
/// the sign-in as the token check found it, `after` as that check's refresh left it.
fn sign_in_check(
    delegation: &Delegation,
    before: Option<&SignedIn>,
    after: Option<&SignedIn>,
    token: &Result<(), GraphError>,
    options: &DoctorOptions,
) -> Check {
    let name = &delegation.name;
    let (Ok(()), Some(now)) = (token, after.or(before)) else {
        return Check::skipped(SIGN_IN, "the sign-in does not work (see the token check)");
    };
    let window = SignedIn::INACTIVITY_DAYS;
    let last = match before {
        Some(before) => {
            let days = (options.now - before.refreshed_at).whole_days().max(0);
            format!(
                "last refreshed {} before this check ({}) and now again",
                plural(days, "day"),
                format_date(before.refreshed_at)
            )
        }
        None => "refreshed now".to_owned(),
    };
    let detail = format!(
        "{} signed in on {}; {last}; it lapses after {window} days without a refresh ({}), which each import and the daily credential check prevent",
        user_of(now),
        format_date(now.signed_in_at),
        format_date(now.lapses_at())
    );
    let missing = crate::expiry::missing_scopes(&delegation.scopes, &now.scopes);
    if missing.is_empty() {
        Check::pass(SIGN_IN, detail)
    } else {
        Check::warn(
            SIGN_IN,
            format!(
                "{detail}; but Entra did not grant {} (granted: {})",
                missing.join(", "),
                now.scopes.join(", ")
            ),
            format!(
                "add {} to the app registration's API permissions (delegated), have the user or an administrator consent, then sign in again: mailroom credentials login {name}",
                missing.join(", ")
            ),
        )
    }
}

/// mailbox, folder, processed folder and permission: everything read through the configured
/// mailbox.
async fn mailbox_checks(mailbox: &MailboxClient, config: &MailboxConfig, checks: &mut Vec<Check>) {
    let address = &config.address;
    let action = &config.action;
    // The least request that proves the app may read the mailbox at all (docs/graph.md §8).
    if let Err(e) = mailbox.get_folder("inbox").await {
        checks.push(Check::fail(MAILBOX, e.to_string(), mailbox_fix(&e, config)));
        let reason = "the mailbox cannot be read (see the mailbox check)";
        checks.push(Check::skipped(FOLDER, reason));
        if action.processed_folder().is_some() {
            checks.push(Check::skipped(PROCESSED_FOLDER, reason));
        }
        checks.push(Check::skipped(PERMISSION, reason));
        return;
    }
    checks.push(Check::pass(MAILBOX, format!("{address} is readable")));

    let source = if config.is_every_folder() {
        // Every folder: the permission probe writes to a message of the Inbox.
        match mailbox.archive_folders().await {
            Ok(folders) => {
                checks.push(Check::pass(
                    FOLDER,
                    format!(
                        "every folder: {} now (Deleted Items, Junk Email, Recoverable Items and search folders left out)",
                        folders.len()
                    ),
                ));
                mailbox.resolve_folder_path("inbox").await
            }
            Err(e) => {
                checks.push(Check::fail(
                    FOLDER,
                    e.to_string(),
                    "check that the app may list the mailbox's folders (Mail.Read)",
                ));
                Err(e)
            }
        }
    } else {
        let source = mailbox.resolve_folder_path(&config.folder).await;
        checks.push(match &source {
            Ok((folder, path)) => Check::pass(FOLDER, describe_folder(folder, path)),
            Err(e) => Check::fail(FOLDER, e.to_string(), folder_fix(e, "folder", address)),
        });
        source
    };

    if let Some(processed) = action.processed_folder() {
        checks.push(match mailbox.resolve_folder_path(processed).await {
            Ok((folder, path))
                if source
                    .as_ref()
                    .is_ok_and(|(source, _)| source.id == folder.id) =>
            {
                Check::fail(
                    PROCESSED_FOLDER,
                    format!(
                        "'{processed}' is the folder being imported ({path}): moved messages would never leave it"
                    ),
                    "set processed_folder to another folder, e.g. Inbox/Processed",
                )
            }
            Ok((folder, path)) => Check::pass(PROCESSED_FOLDER, describe_folder(&folder, &path)),
            Err(e) => Check::fail(
                PROCESSED_FOLDER,
                e.to_string(),
                folder_fix(&e, "processed_folder", address),
            ),
        });
    }

    checks.push(if !action.writes() {
        Check::pass(
            PERMISSION,
            "Mail.Read is enough: action `none` never changes the mailbox",
        )
    } else {
        match &source {
            Ok((folder, _)) => permission_check(mailbox, folder, action).await,
            Err(_) => Check::skipped(
                PERMISSION,
                "the probe needs a message of the folder (see the folder check)",
            ),
        }
    });
}

/// Proves Mail.ReadWrite for a writing action with a write that changes nothing: one message's
/// `isRead` written back as it is. A 403 there is exactly what the import's move/mark/delete would
/// get after storing every message.
async fn permission_check(
    mailbox: &MailboxClient,
    folder: &MailFolder,
    action: &AfterImport,
) -> Check {
    let name = action.name();
    let delegated = mailbox.credential().delegated.is_some();
    let cannot_prove = |why: String| {
        Check::warn(
            PERMISSION,
            format!("cannot prove Mail.ReadWrite, which action `{name}` needs: {why}"),
            if delegated {
                "run the check again once the folder holds a message; meanwhile make sure the credential's scopes include Mail.ReadWrite (Mail.ReadWrite.Shared for a mailbox other than the user's own) and the user may change the mailbox"
            } else {
                "run the check again once the folder holds a message; meanwhile make sure the app has the application permission Mail.ReadWrite with admin consent"
            },
        )
    };
    let page = match mailbox.first_messages(&folder.id, 1).await {
        Ok(page) => page,
        Err(e) => return cannot_prove(format!("listing the folder failed: {e}")),
    };
    let Some(message) = page.value.into_iter().find(|m| !m.is_removed()) else {
        return cannot_prove("the folder must hold a message to probe with".to_owned());
    };
    // Without the current value, writing one could change the message: better not to probe.
    let Some(is_read) = message.is_read else {
        return cannot_prove("Graph did not say whether the probe message is read".to_owned());
    };
    match mailbox.rewrite_read_flag(&message.id, is_read).await {
        Ok(()) => Check::pass(
            PERMISSION,
            format!(
                "Mail.ReadWrite granted, as action `{name}` needs (proven by a write that left a message as it was)"
            ),
        ),
        Err(GraphError::PermissionDenied { code, .. }) => Check::fail(
            PERMISSION,
            format!(
                "the action `{name}` needs Mail.ReadWrite, but Graph refused a write (403 {code}): the app may only read"
            ),
            "grant the app the application permission Mail.ReadWrite (Entra ID > App registrations > API permissions > Microsoft Graph > Application permissions) and grant admin consent; if the app is scoped with Exchange RBAC for Applications, assign the role \"Application Mail.ReadWrite\" over its management scope instead; or use action `none`",
        ),
        Err(e @ GraphError::NoDelegatedAccess { .. }) => Check::fail(
            PERMISSION,
            format!("the action `{name}` needs write access, but Graph refused a write: {e}"),
            "give the signed-in user write access to the mailbox (Full Access, or editing rights on the shared folder) and Mail.ReadWrite in the credential's scopes (Mail.ReadWrite.Shared for a mailbox other than the user's own), then sign in again; or use action `none`",
        ),
        Err(e @ GraphError::MailboxOutOfScope { .. }) => Check::fail(
            PERMISSION,
            format!("the action `{name}` needs Mail.ReadWrite, but Graph refused a write: {e}"),
            "give the app write access to this mailbox: the application permission Mail.ReadWrite with admin consent, or the RBAC role \"Application Mail.ReadWrite\" over a scope that includes the mailbox",
        ),
        Err(e) if e.is_not_found() => cannot_prove(
            "the probe message left the folder meanwhile (is an import running?)".to_owned(),
        ),
        Err(e) => cannot_prove(format!("the probe write failed: {e}")),
    }
}

/// Reads the inbox of `options.scope_probe`, which must fail: Mail application permissions cover
/// every mailbox of the tenant unless restricted (docs/graph.md §8).
async fn access_scope_check(
    graph: &GraphClient,
    credential: &AppCredential,
    config: &MailboxConfig,
    options: &DoctorOptions,
) -> Check {
    let advice = restrict_advice(credential, &config.action);
    let Some(probe) = &options.scope_probe else {
        return Check::warn(
            ACCESS_SCOPE,
            "not verified: set scope_probe to a mailbox the app must not read",
            advice,
        );
    };
    if probe == &config.address {
        return Check::warn(
            ACCESS_SCOPE,
            format!("not verified: scope_probe {probe} is the configured mailbox itself"),
            "set scope_probe to an existing mailbox the app must not read, e.g. an executive's",
        );
    }
    let client = graph.mailbox(credential.clone(), probe.clone());
    match client.get_folder("inbox").await {
        Ok(_) => Check::warn(
            ACCESS_SCOPE,
            format!(
                "the app can read {probe}, a mailbox it was not configured for: Mail application permissions cover every mailbox unless restricted"
            ),
            advice,
        ),
        // An access policy answers "Access to OData is disabled." (MailboxOutOfScope); RBAC for
        // Applications' wording is not documented (docs/graph.md §8), so any 403 counts as denied.
        Err(GraphError::MailboxOutOfScope { .. } | GraphError::PermissionDenied { .. }) => {
            Check::pass(
                ACCESS_SCOPE,
                format!(
                    "the app cannot read {probe} (403 ErrorAccessDenied): its access is scoped"
                ),
            )
        }
        Err(GraphError::MailboxNotFound { code, .. }) => Check::pass(
            ACCESS_SCOPE,
            format!(
                "the app cannot read {probe} (404 {code}); this proves the scope only if {probe} is an existing mailbox"
            ),
        ),
        Err(e) => Check::warn(
            ACCESS_SCOPE,
            format!("not verified: reading {probe} failed for another reason: {e}"),
            "run the check again",
        ),
    }
}

/// Compares the expiry with `options.now`: a certificate's notAfter, or for a secret the recorded
/// expiry. Entra does not tell a client when its secret expires (reading `passwordCredentials`
/// needs Application.Read.All, docs/graph.md §9), so the operator records it with the credential.
fn expiry_check(
    credential: &AppCredential,
    expires_at: Option<OffsetDateTime>,
    options: &DoctorOptions,
    rejected_as_expired: bool,
) -> Check {
    let (what, rotate) = match &credential.secret {
        ClientAuth::Public => {
            return Check::pass(
                SECRET_EXPIRY,
                "a public client has no client secret or certificate to expire",
            );
        }
        ClientAuth::Secret(_) => (
            "client secret",
            "create a new client secret in Entra ID > App registrations > Certificates & secrets, store its Value and its expires_at in the credential, then delete the old secret",
        ),
        ClientAuth::Certificate(_) => (
            "certificate",
            "create a new certificate and key, upload the certificate in Entra ID > App registrations > Certificates & secrets > Certificates, store both in the credential (certificate_pem and private_key_pem), then delete the old certificate from the app",
        ),
    };
    let Some(expires_at) = expires_at else {
        return if rejected_as_expired {
            Check::fail(
                SECRET_EXPIRY,
                "Entra ID says the client secret has expired (AADSTS7000222)",
                rotate,
            )
        } else {
            Check::warn(
                SECRET_EXPIRY,
                "expiry unknown",
                "record expires_at with the credential (Entra ID > App registrations > Certificates & secrets shows it)",
            )
        };
    };
    let date = format_date(expires_at);
    let left = expires_at - options.now;
    let days = left.whole_days();
    // Days still to go, counting a started day: a secret set to expire in 300 days says 300,
    // not 299, a few milliseconds later.
    let days_left = (left + time::Duration::DAY - time::Duration::NANOSECOND).whole_days();
    let warning = time::Duration::days(options.expiry_warning_days);
    if !left.is_positive() {
        Check::fail(
            SECRET_EXPIRY,
            format!(
                "the {what} expired on {date} ({} ago)",
                plural(-days, "day")
            ),
            rotate,
        )
    } else if rejected_as_expired {
        Check::fail(
            SECRET_EXPIRY,
            format!(
                "Entra ID says the client secret has expired (AADSTS7000222), though expires_at says {date}"
            ),
            rotate,
        )
    } else if left < warning {
        Check::warn(
            SECRET_EXPIRY,
            format!(
                "the {what} expires on {date}, in {}",
                plural(days_left, "day")
            ),
            format!("rotate it before then: {rotate}"),
        )
    } else {
        Check::pass(
            SECRET_EXPIRY,
            format!(
                "the {what} expires on {date}, in {}",
                plural(days_left, "day")
            ),
        )
    }
}

/// Whether the secret-expiry function could rotate this client secret: the app may manage its
/// own passwords (Application.ReadWrite.OwnedBy and the app an owner of its registration).
/// Rotation is opt-in, so "not possible" is information, not a warning.
async fn rotation_check(graph: &GraphClient, credential: &AppCredential) -> Check {
    match graph
        .app(credential.clone())
        .probe_password_management()
        .await
    {
        Ok(PasswordManagement::NotRefused { status }) => Check::pass(
            ROTATION,
            format!(
                "not refused: Graph did not deny the app its own client secrets (a removePassword that changes nothing answered {status}, not 403); only a rotation proves it works: aws secretsmanager rotate-secret --secret-id <the credential's secret>"
            ),
        ),
        Ok(PasswordManagement::Refused) => Check::pass(
            ROTATION,
            "not possible (opt-in): to let Mailroom rotate this secret, grant Application.ReadWrite.OwnedBy and add the app's service principal as an owner of its own registration",
        ),
        Err(e) => Check::warn(
            ROTATION,
            format!("not verified: {e}"),
            "run the check again",
        ),
    }
}

fn token_fix(error: &GraphError, graph: &GraphClient, credential: &AppCredential) -> String {
    match error {
        GraphError::CertificateRejected { .. } => match credential.certificate() {
            Some(certificate) => format!(
                "upload the certificate (its public part) in Entra ID > App registrations > Certificates & secrets > Certificates; its Thumbprint there must read {}; if it does, the private key stored with it is not the certificate's",
                certificate.thumbprint_sha1_hex()
            ),
            None => "upload the certificate in Entra ID > App registrations > Certificates & secrets > Certificates".to_owned(),
        },
        GraphError::AssertionOutOfTime { .. } => "set this machine's clock right (enable NTP time sync, e.g. `timedatectl set-ntp true`) and run the check again".to_owned(),
        GraphError::InvalidSecret { .. } => "copy the secret's Value column (not the Secret ID) into the credential's client secret; if the value was not saved when the secret was created, create a new secret in Entra ID > App registrations > Certificates & secrets".to_owned(),
        GraphError::ExpiredSecret { .. } => "create a new client secret in Entra ID > App registrations > Certificates & secrets and store its Value and expires_at in the credential".to_owned(),
        GraphError::UnknownTenant { .. } => "set tenant_id to the Directory (tenant) ID shown in Entra ID > Overview, or to a verified domain of the tenant".to_owned(),
        GraphError::UnknownApp { tenant, .. } => format!("set client_id to the Application (client) ID on the app registration's Overview page in tenant {tenant}, and have an administrator grant admin consent"),
        GraphError::SignInRequired { credential, .. } => format!("sign in again: mailroom credentials login {credential} (with --backend aws for a deployed credential)"),
        GraphError::SignInNotKept { .. } => "check that the sign-in's store is reachable (the credential's Secrets Manager secret, or <data dir>/credentials locally) and run the check again".to_owned(),
        GraphError::TokenRejected { .. } => match credential.secret {
            ClientAuth::Secret(_) => "check the credential's tenant_id, client_id and client secret Value against the app registration in Entra ID",
            ClientAuth::Certificate(_) => "check the credential's tenant_id, client_id and certificate against the app registration in Entra ID",
            ClientAuth::Public => "check the credential's tenant_id and client_id against the app registration in Entra ID, and that it allows public client flows (Authentication > Advanced settings)",
        }
        .to_owned(),
        _ => format!(
            "check that {} is reachable from here (DNS, proxy, firewall) and run the check again",
            graph.config().login_url
        ),
    }
}

fn mailbox_fix(error: &GraphError, config: &MailboxConfig) -> String {
    let address = &config.address;
    let needed = if config.action.writes() {
        "Mail.ReadWrite"
    } else {
        "Mail.Read"
    };
    match error {
        // docs/graph.md §8: scopes and policies take from 30 minutes to over an hour to apply.
        GraphError::MailboxOutOfScope { .. } => format!(
            "add {address} to the app's access scope: with Exchange RBAC for Applications, a management scope whose -RecipientRestrictionFilter matches it (Set-ManagementScope) under the app's role assignment, checked with Test-ServicePrincipalAuthorization -Identity <service principal> -Resource {address}; with an application access policy, add it to the policy's mail-enabled security group, checked with Test-ApplicationAccessPolicy -Identity {address} -AppId <client id>; changes take up to 2 hours to reach Graph"
        ),
        GraphError::MailboxNotFound { .. } => format!(
            "check the address {address}: the user needs an Exchange Online licence and a mailbox in Exchange Online, not on-premises"
        ),
        GraphError::NoDelegatedAccess { credential, .. } => format!(
            "give the signed-in user access to {address} (its owner shares the folder, or an administrator grants Full Access: Add-MailboxPermission -Identity {address} -User <the user> -AccessRights FullAccess); for a mailbox other than the user's own, add {needed}.Shared to the credential's scopes; then sign in again: mailroom credentials login {credential}"
        ),
        GraphError::PermissionDenied { .. } => format!(
            "grant the app the application permission {needed} (Entra ID > App registrations > API permissions > Microsoft Graph > Application permissions) and grant admin consent; if the app is scoped with Exchange RBAC for Applications, its role assignment must cover {address}"
        ),
        _ => "check that Microsoft Graph is reachable from here and run the check again".to_owned(),
    }
}

fn folder_fix(error: &GraphError, setting: &str, address: &MailboxAddress) -> String {
    match error {
        GraphError::FolderNotFound { .. } => format!(
            "set {setting} to one of the folders listed (a path such as Inbox/Backup Reports; well-known names such as inbox work in any language) or create the folder in {address}"
        ),
        GraphError::AmbiguousFolder { .. } => {
            "rename one of the folders that share the name, then run the check again".to_owned()
        }
        GraphError::Config(_) => format!("set {setting} to a path such as Inbox/Backup Reports"),
        _ => "check that Microsoft Graph is reachable from here and run the check again".to_owned(),
    }
}

/// How to restrict the app to the mailboxes it imports (docs/graph.md §8, with the cmdlets).
fn restrict_advice(credential: &AppCredential, action: &AfterImport) -> String {
    let client_id = &credential.client_id;
    let role = if action.writes() {
        "Application Mail.ReadWrite"
    } else {
        "Application Mail.Read"
    };
    format!(
        "restrict it with Exchange RBAC for Applications: New-ServicePrincipal -AppId {client_id} -ObjectId <enterprise app object id>; New-ManagementScope -Name mailroom -RecipientRestrictionFilter \"<filter matching the imported mailboxes>\"; New-ManagementRoleAssignment -App {client_id} -Role \"{role}\" -CustomResourceScope mailroom; then remove the app's tenant-wide Mail.* permission in Entra ID, which would still grant every mailbox; verify with Test-ServicePrincipalAuthorization. Or (legacy) an application access policy: New-ApplicationAccessPolicy -AppId {client_id} -PolicyScopeGroupId <mail-enabled security group> -AccessRight RestrictAccess"
    )
}

fn describe_folder(folder: &MailFolder, path: &str) -> String {
    format!(
        "{path} ({})",
        plural(
            i64::try_from(folder.total_item_count).unwrap_or(i64::MAX),
            "message"
        )
    )
}

fn plural(n: i64, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn format_date(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!("{}-{:02}-{:02}", at.year(), u8::from(at.month()), at.day())
}

/// Belt and braces: no message above contains the secret, but a secret pasted into the wrong
/// field (a client id, a tenant) would be echoed back; the operator sees these lines on screen
/// and in CI logs ([`Redactor`]).
fn redact_secret(checks: &mut [Check], credential: &AppCredential, sign_ins: &[Option<&SignedIn>]) {
    let mut redactor = Redactor::for_credential(credential);
    for signed_in in sign_ins.iter().flatten() {
        use secrecy::ExposeSecret as _;
        redactor = redactor.with(signed_in.refresh_token.expose_secret());
    }
    for check in checks {
        redactor.scrub(&mut check.detail);
        if let Some(fix) = &mut check.fix {
            redactor.scrub(fix);
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use secrecy::ExposeSecret;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2025-06-01 12:00 UTC);

    fn credential(expires_at: Option<OffsetDateTime>) -> AppCredential {
        AppCredential {
            expires_at,
            ..AppCredential::new("t", "c", "Xk48Q~Tr.3vH_pZq9nW2sLd".to_owned().into())
        }
    }

    #[test]
    fn display_puts_the_fix_on_an_indented_second_line() {
        let pass = Check::pass(FOLDER, "Inbox/Backup Reports (212 messages)");
        assert_eq!(
            pass.to_string(),
            "✓ folder: Inbox/Backup Reports (212 messages)"
        );
        let fail = Check::fail(TOKEN, "rejected", "use the Value");
        assert_eq!(fail.to_string(), "✗ token: rejected\n  fix: use the Value");
        assert!(
            Check::warn(ACCESS_SCOPE, "a", "b")
                .to_string()
                .starts_with("! access scope: a")
        );
        assert_eq!(
            Check::skipped(PERMISSION, "no token").to_string(),
            "- permission: skipped: no token"
        );
    }

    #[test]
    fn only_a_failure_makes_the_configuration_invalid() {
        let mut checks = vec![
            Check::pass(TOKEN, "ok"),
            Check::warn(SECRET_EXPIRY, "soon", "rotate"),
            Check::skipped(PERMISSION, "x"),
        ];
        assert!(is_valid(&checks));
        checks.push(Check::fail(FOLDER, "missing", "create it"));
        assert!(!is_valid(&checks));
    }

    #[test]
    fn expiry_passes_warns_and_fails_by_days_left() {
        let options = DoctorOptions::new(NOW);
        let check = |at: Option<OffsetDateTime>, rejected: bool| {
            expiry_check(&credential(at), at, &options, rejected)
        };
        let far = check(Some(NOW + time::Duration::days(200)), false);
        assert_eq!(far.status, CheckStatus::Pass, "{far}");
        assert!(far.detail.contains("2025-12-18, in 200 days"), "{far}");
        let soon = check(Some(NOW + time::Duration::days(10)), false);
        assert_eq!(soon.status, CheckStatus::Warn, "{soon}");
        assert!(soon.detail.contains("in 10 days"), "{soon}");
        let past = check(Some(NOW - time::Duration::days(1)), false);
        assert_eq!(past.status, CheckStatus::Fail, "{past}");
        assert!(
            past.detail.contains("expired on 2025-05-31 (1 day ago)"),
            "{past}"
        );
        let unknown = check(None, false);
        assert_eq!(unknown.status, CheckStatus::Warn);
        assert!(unknown.fix.unwrap_or_default().contains("expires_at"));
        assert_eq!(check(None, true).status, CheckStatus::Fail);
        assert_eq!(
            check(Some(NOW + time::Duration::days(200)), true).status,
            CheckStatus::Fail
        );
    }

    #[test]
    fn a_secret_echoed_in_a_message_is_redacted() {
        let credential = credential(None);
        let secret = credential
            .client_secret()
            .unwrap()
            .expose_secret()
            .to_owned();
        let mut checks = vec![Check::fail(
            TOKEN,
            format!("app {secret} was not found"),
            format!("set client_id, not {secret}"),
        )];
        redact_secret(&mut checks, &credential, &[]);
        let text = checks[0].to_string();
        assert!(!text.contains(&secret), "{text}");
        assert!(text.contains("[REDACTED]"), "{text}");
    }

    #[test]
    fn a_certificate_expires_at_its_not_after() {
        let certificate = crate::credentials::CertificateCredential::from_pem(
            include_str!("../../sandbox/fixtures/app-cert.pem"),
            include_str!("../../sandbox/fixtures/app-key.pem"),
        )
        .unwrap();
        let credential = AppCredential::new("t", "c", certificate.into());
        let check = expiry_check(
            &credential,
            credential.expires_at,
            &DoctorOptions::new(NOW),
            false,
        );
        assert_eq!(check.status, CheckStatus::Pass, "{check}");
        assert!(
            check
                .detail
                .contains("the certificate expires on 2046-11-18"),
            "{check}"
        );
        let later = DoctorOptions::new(datetime!(2046-11-20 12:00 UTC));
        let check = expiry_check(&credential, credential.expires_at, &later, false);
        assert_eq!(check.status, CheckStatus::Fail, "{check}");
        assert!(
            check
                .detail
                .contains("the certificate expired on 2046-11-18 (2 days ago)"),
            "{check}"
        );
        assert!(
            check
                .fix
                .unwrap_or_default()
                .contains("upload the certificate"),
            "the fix says how to rotate a certificate"
        );
    }
}
