//! Discovery (`[[discover]]`): which mailboxes of a tenant to archive, decided from its
//! directory. Pure: the caller lists the users ([`crate::graph::DirectoryClient`]) and applies
//! the [`Plan`] to its mailbox configuration.
//!
//! A user is archived when it has a mail address, is not a shared mailbox (a disabled account,
//! docs/graph.md §8) unless the rule asks for those, and matches no `exclude` pattern. A user
//! that is gone or newly excluded is disabled, never deleted: what was stored stays.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::{AfterImport, MailboxAddress, MailboxConfig};
use crate::graph::DirectoryUser;

/// Whose mailboxes a rule covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Members {
    /// Every user of the tenant (`users = "all"`).
    All,
    /// The users of a group, through nested groups (`group = "<id or display name>"`).
    Group(String),
}

impl fmt::Display for Members {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("every user"),
            Self::Group(group) => write!(f, "the users of group '{group}'"),
        }
    }
}

/// One `[[discover]]` entry. Stored as JSON (the state store keeps it whole, by [`Self::id`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoverRule {
    pub credential: String,
    pub members: Members,
    /// Addresses or glob patterns (`*` any run of characters, `?` one), case-insensitive.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Include shared mailboxes (disabled accounts).
    #[serde(default)]
    pub shared_mailboxes: bool,
    pub folder: String,
    #[serde(flatten)]
    pub action: AfterImport,
}

impl fmt::Display for DiscoverRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of credential {}, folder {}, {}",
            self.members, self.credential, self.folder, self.action
        )
    }
}

/// The latest discovery of one rule, for `mailroom status` and the daily schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryRun {
    /// The rule's [`DiscoverRule::id`].
    pub rule: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Mailboxes the rule archives now.
    pub archived: usize,
    /// Directory users it does not archive (no mail, shared, excluded).
    pub skipped: usize,
    pub added: usize,
    pub enabled: usize,
    pub disabled: usize,
    /// Why the rule could not be applied; the counts are then zero and nothing changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DiscoveryRun {
    pub fn to_json(&self) -> String {
        // Plain fields and strings: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }
}

/// Why a directory user is not archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// No mail address: no mailbox to archive.
    NoMail,
    /// A shared mailbox, and the rule does not include them.
    Shared,
    /// Matched this `exclude` pattern.
    Excluded(String),
    /// Its address is not one Mailroom accepts.
    InvalidAddress(String),
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoMail => f.write_str("no mail address"),
            Self::Shared => {
                f.write_str("a shared mailbox (set shared_mailboxes = true to include)")
            }
            Self::Excluded(pattern) => write!(f, "excluded by '{pattern}'"),
            Self::InvalidAddress(why) => write!(f, "its address is not usable: {why}"),
        }
    }
}

/// The outcome of applying a rule to the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// The mailboxes to archive, sorted, each once.
    pub mailboxes: Vec<MailboxAddress>,
    /// Everyone else, with the reason (by mail address, or user id without one).
    pub skipped: Vec<(String, Skipped)>,
}

/// A rule that cannot be applied as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error(
        "the exclude patterns {patterns:?} exclude every one of the {users} mailboxes found: nothing would be archived; narrow the patterns"
    )]
    ExcludesEveryone { patterns: Vec<String>, users: usize },
}

impl DiscoverRule {
    /// What identifies the rule, in the state store and on the mailbox folders it discovered:
    /// its credential, whose mailboxes and which folder. Changing the exclusions, the shared
    /// mailboxes or the action keeps the rule; changing those three makes a new one (and the old
    /// one's folders are disabled when it is gone).
    pub fn id(&self) -> String {
        let members = match &self.members {
            Members::All => "all".to_owned(),
            Members::Group(group) => format!("group={group}"),
        };
        format!("{}/{members}/{}", self.credential, self.folder)
    }

    pub fn to_json(&self) -> String {
        // Plain fields and strings: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    /// The mailboxes of `users` this rule archives.
    pub fn select(&self, users: &[DirectoryUser]) -> Result<Selection, DiscoveryError> {
        let mut selected = BTreeSet::new();
        let mut skipped = Vec::new();
        let mut excluded = 0;
        for user in users {
            let Some(mail) = user.mail.as_deref().filter(|m| !m.trim().is_empty()) else {
                skipped.push((user.id.clone(), Skipped::NoMail));
                continue;
            };
            if user.account_enabled == Some(false) && !self.shared_mailboxes {
                skipped.push((mail.to_owned(), Skipped::Shared));
                continue;
            }
            if let Some(pattern) = self.exclude.iter().find(|p| glob_matches(p, mail)) {
                excluded += 1;
                skipped.push((mail.to_owned(), Skipped::Excluded(pattern.clone())));
                continue;
            }
            match MailboxAddress::parse(mail) {
                Ok(address) => {
                    selected.insert(address);
                }
                Err(e) => skipped.push((mail.to_owned(), Skipped::InvalidAddress(e.to_string()))),
            }
        }
        if selected.is_empty() && excluded > 0 {
            return Err(DiscoveryError::ExcludesEveryone {
                patterns: self.exclude.clone(),
                users: excluded,
            });
        }
        Ok(Selection {
            mailboxes: selected.into_iter().collect(),
            skipped,
        })
    }

    /// What discovery changes in the configuration: `current` is what this rule discovered
    /// before (enabled or not); `selected` what it archives now.
    pub fn plan(&self, selected: &[MailboxAddress], current: &[MailboxConfig]) -> Plan {
        let wanted: BTreeSet<&MailboxAddress> = selected.iter().collect();
        let known: BTreeSet<&MailboxAddress> = current.iter().map(|c| &c.address).collect();
        let mut plan = Plan::default();
        for address in selected {
            if !known.contains(address) {
                plan.add.push(self.config(address.clone()));
            }
        }
        for config in current {
            let desired = self.config(config.address.clone());
            match (wanted.contains(&config.address), config.enabled) {
                (true, true) if *config == desired => plan.unchanged += 1,
                (true, true) => plan.update.push(desired),
                (true, false) => plan.enable.push(desired),
                (false, true) => plan.disable.push(MailboxConfig {
                    enabled: false,
                    ..config.clone()
                }),
                (false, false) => plan.unchanged += 1,
            }
        }
        plan
    }

    /// The configuration of a mailbox this rule archives.
    pub fn config(&self, address: MailboxAddress) -> MailboxConfig {
        MailboxConfig {
            address,
            folder: self.folder.clone(),
            action: self.action.clone(),
            credential: self.credential.clone(),
            enabled: true,
            discovered_by: Some(self.id()),
        }
    }
}

/// Changes to the mailbox configuration, each a configuration to put.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// New users.
    pub add: Vec<MailboxConfig>,
    /// Users that came back (or are no longer excluded).
    pub enable: Vec<MailboxConfig>,
    /// Users that are gone or now excluded; their stored mail stays.
    pub disable: Vec<MailboxConfig>,
    /// Users still archived whose configuration follows a changed rule (its action).
    pub update: Vec<MailboxConfig>,
    pub unchanged: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes().next().is_none()
    }

    /// Every configuration to put, in the order add, enable, update, disable.
    pub fn changes(&self) -> impl Iterator<Item = &MailboxConfig> {
        self.add
            .iter()
            .chain(&self.enable)
            .chain(&self.update)
            .chain(&self.disable)
    }
}

/// Whether `text` matches `pattern`: `*` any run of characters (none included), `?` exactly
/// one, everything else itself, ignoring ASCII case.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.trim().to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.trim().to_ascii_lowercase().chars().collect();
    // Iterative matching with backtracking to the last `*`: linear for practical patterns.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(mail: Option<&str>, enabled: bool) -> DirectoryUser {
        DirectoryUser {
            id: format!("id-{}", mail.unwrap_or("none")),
            mail: mail.map(str::to_owned),
            user_principal_name: mail.map(str::to_owned),
            account_enabled: Some(enabled),
        }
    }

    fn rule(exclude: &[&str], shared: bool) -> DiscoverRule {
        DiscoverRule {
            credential: "contoso".into(),
            members: Members::All,
            exclude: exclude.iter().map(|s| (*s).to_owned()).collect(),
            shared_mailboxes: shared,
            folder: "Inbox".into(),
            action: AfterImport::None,
        }
    }

    fn addresses(selection: &Selection) -> Vec<&str> {
        selection
            .mailboxes
            .iter()
            .map(MailboxAddress::as_str)
            .collect()
    }

    #[test]
    fn globs_match_like_shell_patterns_ignoring_case() {
        assert!(glob_matches("*-admin@contoso.com", "IT-Admin@Contoso.com"));
        assert!(glob_matches("ceo@contoso.com", "CEO@contoso.com"));
        assert!(!glob_matches("ceo@contoso.com", "ceo@contoso.com.evil"));
        assert!(glob_matches("user?@*", "user7@fabrikam.com"));
        assert!(!glob_matches("user?@*", "user77@fabrikam.com"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("a*b*c", "aXXbYYc"));
        assert!(!glob_matches("a*b*c", "aXXbYY"));
    }

    #[test]
    fn users_without_mail_shared_mailboxes_and_exclusions_are_skipped_with_the_reason() {
        let users = [
            user(Some("alice@contoso.com"), true),
            user(Some("it-admin@contoso.com"), true),
            user(Some("info@contoso.com"), false),
            user(None, true),
            user(Some("Alice@Contoso.com"), true),
        ];
        let selection = rule(&["*-admin@contoso.com"], false)
            .select(&users)
            .unwrap();
        assert_eq!(addresses(&selection), ["alice@contoso.com"], "each once");
        let reasons: Vec<_> = selection.skipped.iter().map(|(_, r)| r.clone()).collect();
        assert_eq!(
            reasons,
            [
                Skipped::Excluded("*-admin@contoso.com".into()),
                Skipped::Shared,
                Skipped::NoMail
            ]
        );
        let with_shared = rule(&[], true).select(&users).unwrap();
        assert!(addresses(&with_shared).contains(&"info@contoso.com"));
    }

    #[test]
    fn a_pattern_that_excludes_everyone_is_an_error_naming_it() {
        let users = [
            user(Some("a@contoso.com"), true),
            user(Some("b@contoso.com"), true),
        ];
        let error = rule(&["*@contoso.com"], false).select(&users).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("*@contoso.com") && text.contains('2'),
            "{text}"
        );
        // An empty directory is not the patterns' fault.
        assert!(
            rule(&["*"], false)
                .select(&[])
                .unwrap()
                .mailboxes
                .is_empty()
        );
    }

    #[test]
    fn a_plan_adds_new_users_disables_gone_ones_and_enables_returning_ones() {
        let r = rule(&[], false);
        let parse = |a: &str| MailboxAddress::parse(a).unwrap();
        let disabled = |address| MailboxConfig {
            enabled: false,
            ..r.config(parse(address))
        };
        let current = [
            r.config(parse("kept@contoso.com")),
            r.config(parse("gone@contoso.com")),
            disabled("back@contoso.com"),
            disabled("still-gone@contoso.com"),
        ];
        let selected = [
            parse("back@contoso.com"),
            parse("kept@contoso.com"),
            parse("new@contoso.com"),
        ];
        let plan = r.plan(&selected, &current);
        let names = |configs: &[MailboxConfig]| -> Vec<String> {
            configs.iter().map(|c| c.address.to_string()).collect()
        };
        assert_eq!(names(&plan.add), ["new@contoso.com"]);
        assert!(plan.add[0].enabled && plan.add[0].credential == "contoso");
        assert_eq!(plan.add[0].discovered_by.as_deref(), Some(r.id().as_str()));
        assert_eq!(names(&plan.enable), ["back@contoso.com"]);
        assert_eq!(names(&plan.disable), ["gone@contoso.com"]);
        assert!(!plan.disable[0].enabled);
        assert_eq!(plan.unchanged, 2);
        assert!(r.plan(&selected[1..2], &current[..1]).is_empty());
    }

    #[test]
    fn a_changed_action_updates_what_the_rule_discovered_before() {
        let before = rule(&[], false);
        let address = MailboxAddress::parse("kept@contoso.com").unwrap();
        let current = [before.config(address.clone())];
        let after = DiscoverRule {
            action: AfterImport::MarkRead,
            exclude: vec!["nobody@contoso.com".into()],
            ..before.clone()
        };
        assert_eq!(after.id(), before.id(), "the same rule");
        let plan = after.plan(std::slice::from_ref(&address), &current);
        assert_eq!(plan.update.len(), 1);
        assert_eq!(plan.update[0].action, AfterImport::MarkRead);
        assert_eq!(plan.changes().count(), 1);
    }

    #[test]
    fn a_rule_and_its_last_run_round_trip_as_json() {
        let r = DiscoverRule {
            members: Members::Group("Sales Team".into()),
            action: AfterImport::Move {
                processed_folder: "Archive".into(),
            },
            ..rule(&["ceo@contoso.com"], true)
        };
        assert_eq!(DiscoverRule::from_json(&r.to_json()).unwrap(), r);
        assert_eq!(r.id(), "contoso/group=Sales Team/Inbox");
        let run = DiscoveryRun {
            rule: r.id(),
            at: OffsetDateTime::UNIX_EPOCH,
            archived: 3,
            skipped: 1,
            added: 2,
            enabled: 0,
            disabled: 1,
            error: None,
        };
        assert_eq!(DiscoveryRun::from_json(&run.to_json()).unwrap(), run);
    }
}
