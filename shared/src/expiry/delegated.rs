//! The credential check of a delegated credential: a person's sign-in (docs/delegated.md, "The
//! credential check").
//!
//! 1. **Refresh.** The stored refresh token is redeemed, and its successor stored, as any import
//!    does ([`GraphClient::renew_token`]). That proves the sign-in works today, and it is also a
//!    use: Entra refuses a refresh token left unused for 90 days, so a daily check keeps an
//!    otherwise idle sign-in alive. A sign-in Entra refuses (`invalid_grant`: revoked, consent
//!    withdrawn, a policy wanting the person, past the window) is a finding with its reason and
//!    "mailroom credentials login NAME", and an alert, sent once per sign-in: the claim key holds
//!    the time the person signed in, so only a new sign-in that dies again alerts again.
//! 2. **Scopes.** The configured Graph scopes are compared with those Entra granted in its last
//!    token answer; a missing one is a finding naming it.
//! 3. **Mailboxes.** Each enabled mailbox folder configured with the credential is read with the
//!    person's token (the folder, or the Inbox for `folder = "*"`); a refusal is a finding naming
//!    the mailbox and what to do.
//! 4. **Inactivity.** The days since the last successful refresh before this check, against
//!    Entra's window ([`SignedIn::INACTIVITY_DAYS`]): each threshold alerts once per last-refresh
//!    time, so a check that cannot refresh day after day (or one that did not run for weeks)
//!    alerts as a secret nearing its expiry does.

use std::collections::BTreeSet;

use secrecy::SecretString;

use super::{
    Access, AlertLevel, CredentialReport, ExpiryChecker, MailboxAccess, SignInStatus, Thresholds,
    days_left,
};
use crate::credentials::{AppCredential, Delegation, SignedIn};
use crate::domain::alert::rfc3339;
use crate::graph::GraphError;
use crate::redact::Redactor;

/// Scopes Entra answers with that are not Graph permissions (OpenID Connect), and
/// `offline_access`, which its answers do not list: never reported missing.
const NOT_GRAPH_PERMISSIONS: &[&str] = &["openid", "profile", "email", "offline_access"];

/// The prefixes a Graph scope may carry: its resource URI or its application id.
const GRAPH_PREFIXES: &[&str] = &[
    "https://graph.microsoft.com/",
    "00000003-0000-0000-c000-000000000000/",
];

/// `Mail.ReadWrite` for `https://graph.microsoft.com/Mail.ReadWrite`, lower case.
fn canonical(scope: &str) -> String {
    let scope = scope.trim().to_ascii_lowercase();
    GRAPH_PREFIXES
        .iter()
        .find_map(|prefix| scope.strip_prefix(prefix))
        .map(str::to_owned)
        .unwrap_or(scope)
}

/// The configured Graph scopes that are not among `granted` (Entra may name a granted one with
/// Graph's resource URI, `https://graph.microsoft.com/Mail.ReadWrite`; case does not matter).
/// OpenID Connect scopes and `offline_access` are left out. Nothing is missing when `granted` is
/// empty: Entra then did not say.
pub fn missing_scopes(configured: &[String], granted: &[String]) -> Vec<String> {
    if granted.is_empty() {
        return Vec::new();
    }
    let granted: BTreeSet<String> = granted.iter().map(|g| canonical(g)).collect();
    configured
        .iter()
        .filter(|c| !NOT_GRAPH_PERMISSIONS.contains(&canonical(c).as_str()))
        .filter(|c| !granted.contains(&canonical(c)))
        .cloned()
        .collect()
}

/// Whether the sign-in needs someone: it does not work, lacks a scope or a mailbox, was not
/// refreshed by this check, or had come within the first threshold of its inactivity window.
pub(super) fn needs_attention(status: &SignInStatus, thresholds: &Thresholds) -> bool {
    failing(status)
        || !status.refreshed
        || status
            .inactivity_days_left
            .is_some_and(|days| days <= i64::from(thresholds.first()))
}

/// The import cannot work until someone acts: the user must sign in again, a configured scope is
/// not granted, or a configured mailbox is out of the user's reach.
pub(super) fn failing(status: &SignInStatus) -> bool {
    status.sign_in_required.is_some()
        || !status.scopes_missing.is_empty()
        || status.mailboxes.iter().any(|m| m.access == Access::Denied)
}

/// Redacts every text of the status (none should hold a token; this makes sure).
pub(super) fn scrub(status: &mut SignInStatus, redactor: &Redactor) {
    if let Some(reason) = &mut status.sign_in_required {
        redactor.scrub(reason);
    }
    for mailbox in &mut status.mailboxes {
        if let Some(detail) = &mut mailbox.detail {
            redactor.scrub(detail);
        }
    }
}

impl ExpiryChecker {
    /// Checks the sign-in of a delegated credential: refresh, scopes, mailboxes, inactivity
    /// (the module's comment). Sets `report.delegated` and adds findings; returns the refresh
    /// tokens it saw, for the caller to redact.
    pub(super) async fn check_sign_in(
        &self,
        report: &mut CredentialReport,
        credential: &AppCredential,
        delegation: &Delegation,
    ) -> Vec<SecretString> {
        let name = delegation.name.as_str();
        let now = self.clock.now();
        let mut tokens = Vec::new();
        let mut status = SignInStatus {
            user: None,
            signed_in_at: None,
            scopes_configured: delegation.scopes.clone(),
            scopes_granted: Vec::new(),
            scopes_missing: Vec::new(),
            last_refresh_at: None,
            days_since_refresh: None,
            inactivity_window_days: SignedIn::INACTIVITY_DAYS,
            inactivity_days_left: None,
            refreshed: false,
            lapses_at: None,
            sign_in_required: None,
            mailboxes: Vec::new(),
        };
        // What the last successful refresh left, before this check's own. A sign-in that cannot
        // be read is reported by the refresh below, which reads it too.
        if let Ok(Some(before)) = delegation.sign_ins.load(name).await {
            status.user = before.user.clone();
            status.signed_in_at = Some(before.signed_in_at);
            status.scopes_granted = before.scopes.clone();
            status.last_refresh_at = Some(before.refreshed_at);
            status.days_since_refresh = Some((now - before.refreshed_at).whole_days().max(0));
            // At most the window: a refresh stamped by a clock a little ahead of this one is not
            // more than a whole window away.
            status.inactivity_days_left =
                Some(days_left(before.lapses_at(), now).min(SignedIn::INACTIVITY_DAYS));
            status.lapses_at = Some(before.lapses_at());
            tokens.push(before.refresh_token);
        }
        let user =
            |status: &SignInStatus| status.user.clone().unwrap_or_else(|| "the user".to_owned());
        match self.graph.renew_token(credential).await {
            Ok(()) => {
                status.refreshed = true;
                match delegation.sign_ins.load(name).await {
                    Ok(Some(after)) => {
                        status.user = after.user.clone().or(status.user);
                        status.signed_in_at = Some(after.signed_in_at);
                        status.scopes_granted = after.scopes.clone();
                        status.lapses_at = Some(after.lapses_at());
                        tokens.push(after.refresh_token);
                    }
                    Ok(None) => report.findings.push(format!(
                        "the sign-in of credential '{name}' was refreshed, but is no longer stored"
                    )),
                    Err(e) => report.findings.push(format!(
                        "the sign-in of credential '{name}' was refreshed, but cannot be read back: {e}"
                    )),
                }
            }
            Err(e @ GraphError::SignInRequired { .. }) => {
                if let GraphError::SignInRequired { reason, .. } = &e {
                    status.sign_in_required = Some(reason.clone());
                }
                // Entra refuses it already: nothing is left to lapse.
                status.lapses_at = None;
                report.findings.push(e.to_string());
            }
            Err(e @ GraphError::SignInNotKept { .. }) => report.findings.push(e.to_string()),
            Err(e) => report.findings.push(format!(
                "the sign-in of credential '{name}' could not be refreshed: {e}; the next check tries again"
            )),
        }

        status.scopes_missing = missing_scopes(&delegation.scopes, &status.scopes_granted);
        if !status.scopes_missing.is_empty() {
            report.findings.push(format!(
                "credential '{name}' asks for {} but Entra did not grant {} to {} (granted: {}): add {} to the app registration's API permissions (delegated), have the user or an administrator consent, then sign in again: mailroom credentials login {name}",
                status.scopes_missing.join(", "),
                if status.scopes_missing.len() == 1 { "it" } else { "them" },
                user(&status),
                status.scopes_granted.join(", "),
                if status.scopes_missing.len() == 1 { "it" } else { "them" },
            ));
        }

        if let (Some(since), Some(left)) = (status.days_since_refresh, status.inactivity_days_left)
            && left <= i64::from(self.thresholds.first())
        {
            let window = SignedIn::INACTIVITY_DAYS;
            report.findings.push(if status.refreshed {
                format!(
                    "the sign-in of credential '{name}' had not been refreshed for {since} days ({} of Entra's {window}-day inactivity window left) until this check refreshed it: find out why the imports and the daily check did not",
                    left.max(0)
                )
            } else {
                format!(
                    "the sign-in of credential '{name}' has not been refreshed for {since} days: {} of Entra's {window}-day inactivity window left; once it passes, the user must sign in again: mailroom credentials login {name}",
                    left.max(0)
                )
            });
        }

        status.mailboxes = self
            .mailbox_access(report, credential, name, status.refreshed)
            .await;
        report.delegated = Some(status);
        tokens
    }

    /// Reads each enabled mailbox folder configured with credential `name` with the user's token
    /// (which `has_token` says this check obtained).
    async fn mailbox_access(
        &self,
        report: &mut CredentialReport,
        credential: &AppCredential,
        name: &str,
        has_token: bool,
    ) -> Vec<MailboxAccess> {
        let configs = match self.mailboxes.list_mailboxes().await {
            Ok(configs) => configs,
            Err(e) => {
                report.findings.push(format!(
                    "access to the mailboxes of credential '{name}' was not checked: the mailbox list cannot be read: {e}"
                ));
                return Vec::new();
            }
        };
        let mut seen = BTreeSet::new();
        let mut found = Vec::new();
        for config in configs
            .into_iter()
            .filter(|c| c.enabled && c.credential == name)
        {
            if !seen.insert((config.address.clone(), config.folder.clone())) {
                continue;
            }
            let mut access = MailboxAccess {
                mailbox: config.address.to_string(),
                folder: config.folder.clone(),
                access: Access::Unknown,
                detail: None,
            };
            if !has_token {
                access.detail = Some("not checked: the sign-in could not be refreshed".into());
                found.push(access);
                continue;
            }
            let mailbox = self
                .graph
                .mailbox(credential.clone(), config.address.clone());
            // The cheapest read that proves the configured folder is within the user's reach.
            let read = if config.is_every_folder() {
                mailbox.get_folder("inbox").await.map(drop)
            } else {
                mailbox.resolve_folder_path(&config.folder).await.map(drop)
            };
            match read {
                Ok(()) => access.access = Access::Readable,
                Err(
                    e @ (GraphError::NoDelegatedAccess { .. }
                    | GraphError::MailboxNotFound { .. }
                    | GraphError::FolderNotFound { .. }
                    | GraphError::AmbiguousFolder { .. }),
                ) => {
                    access.access = Access::Denied;
                    report.findings.push(e.to_string());
                    access.detail = Some(e.to_string());
                }
                Err(e) => {
                    let detail = format!(
                        "access to {} ({}) could not be checked: {e}",
                        config.address, config.folder
                    );
                    report.findings.push(detail.clone());
                    access.detail = Some(detail);
                }
            }
            found.push(access);
        }
        found
    }

    /// Claims the sign-in alerts the report is due (the user must sign in again; each threshold
    /// of the inactivity window reached) and sends one, for the most urgent, with `findings`.
    pub(super) async fn alert_sign_in(
        &self,
        report: &mut CredentialReport,
        credential: &AppCredential,
        findings: Vec<String>,
        redactor: &Redactor,
    ) {
        let Some(status) = report.delegated.clone() else {
            return;
        };
        let mut due = Vec::new();
        if status.sign_in_required.is_some() {
            // Once per sign-in: the person signing in again makes a new one, which may alert.
            let signed_in = status
                .signed_in_at
                .map_or_else(|| "none".to_owned(), rfc3339);
            due.push((
                AlertLevel::SignInRequired,
                format!("sign-in#{signed_in}#required"),
            ));
        }
        if let (Some(left), Some(last)) = (status.inactivity_days_left, status.last_refresh_at) {
            // Once per threshold of one stretch without a refresh: a refresh starts a new one.
            let last = rfc3339(last);
            for threshold in self.thresholds.days() {
                if left <= i64::from(*threshold) {
                    let level = AlertLevel::Inactive(*threshold);
                    due.push((level, format!("sign-in#{last}#{}", level.label())));
                }
            }
        }
        self.claim_and_send(
            report,
            due,
            findings,
            Some(redactor),
            Some(credential),
            Some(status),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn granted_scopes_match_with_or_without_graphs_prefix_and_oidc_is_ignored() {
        let configured = strings(&["Mail.ReadWrite", "Mail.Send", "offline_access", "openid"]);
        assert_eq!(
            missing_scopes(
                &configured,
                &strings(&["https://graph.microsoft.com/Mail.ReadWrite", "profile"])
            ),
            ["Mail.Send"]
        );
        assert!(
            missing_scopes(
                &configured,
                &strings(&[
                    "mail.readwrite",
                    "00000003-0000-0000-c000-000000000000/Mail.Send"
                ])
            )
            .is_empty()
        );
        // Entra listed nothing: nothing can be said to be missing.
        assert!(missing_scopes(&configured, &[]).is_empty());
        // A broader scope does not stand in for another one.
        assert_eq!(
            missing_scopes(
                &strings(&["Mail.ReadWrite.Shared"]),
                &strings(&["Mail.ReadWrite"])
            ),
            ["Mail.ReadWrite.Shared"]
        );
    }

    fn status() -> SignInStatus {
        SignInStatus {
            user: Some("alice@contoso.com".into()),
            signed_in_at: None,
            scopes_configured: strings(&["Mail.ReadWrite"]),
            scopes_granted: strings(&["Mail.ReadWrite"]),
            scopes_missing: Vec::new(),
            last_refresh_at: None,
            days_since_refresh: Some(1),
            inactivity_window_days: 90,
            inactivity_days_left: Some(89),
            refreshed: true,
            lapses_at: None,
            sign_in_required: None,
            mailboxes: vec![MailboxAccess {
                mailbox: "alice@contoso.com".into(),
                folder: "Inbox".into(),
                access: Access::Readable,
                detail: None,
            }],
        }
    }

    #[test]
    fn a_sign_in_needs_attention_when_broken_unrefreshed_or_near_its_window() {
        let thresholds = Thresholds::default();
        let healthy = status();
        assert!(!needs_attention(&healthy, &thresholds) && !failing(&healthy));
        let near = SignInStatus {
            days_since_refresh: Some(61),
            inactivity_days_left: Some(29),
            ..status()
        };
        assert!(needs_attention(&near, &thresholds) && !failing(&near));
        let unrefreshed = SignInStatus {
            refreshed: false,
            ..status()
        };
        assert!(needs_attention(&unrefreshed, &thresholds) && !failing(&unrefreshed));
        let required = SignInStatus {
            sign_in_required: Some("revoked".into()),
            refreshed: false,
            ..status()
        };
        assert!(failing(&required));
        let mut denied = status();
        denied.mailboxes[0].access = Access::Denied;
        assert!(failing(&denied) && needs_attention(&denied, &thresholds));
        let missing = SignInStatus {
            scopes_missing: strings(&["Mail.Send"]),
            ..status()
        };
        assert!(failing(&missing));
    }
}
