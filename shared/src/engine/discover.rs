//! Discovery runs: each `[[discover]]` rule applied to its tenant's directory. What a rule
//! archives and how the configuration changes is decided in `shared/src/discovery.rs`; this file
//! reads the directory and the store, and writes the plan.
//!
//! One runner discovers at a time (the `discovery` lease), so a scheduled run and `mailroom
//! discover` never interleave their writes. A rule that fails (its credential, a missing
//! permission or group) changes nothing and does not stop the other rules.

use std::time::Duration;

use super::{Engine, ImportError};
use crate::discovery::{DiscoverRule, DiscoveryError, DiscoveryRun, Members, Plan, Selection};
use crate::domain::MailboxConfig;
use crate::ports::{LeaseOutcome, StoreError};

/// The lease that serialises discovery runs.
const LEASE: &str = "discovery";
/// How long a discovery run may hold the lease: reading a directory of 100,000 users takes about
/// a hundred requests.
const LEASE_FOR: Duration = Duration::from_secs(10 * 60);

/// Why a rule could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// Its credential or the directory (a missing permission, an unknown group).
    #[error(transparent)]
    Graph(#[from] ImportError),
    #[error(transparent)]
    Rule(#[from] DiscoveryError),
}

/// What one rule found and changed.
#[derive(Debug)]
pub struct RuleReport {
    pub rule: DiscoverRule,
    pub outcome: Result<RuleChanges, RuleError>,
}

/// The directory's answer for one rule and the resulting changes.
#[derive(Debug, Default)]
pub struct RuleChanges {
    pub selection: Selection,
    pub plan: Plan,
    /// Folders the rule would add but that are configured already, by hand or by another rule:
    /// those stay as they are.
    pub configured_otherwise: Vec<MailboxConfig>,
}

/// The outcome of a discovery run.
#[derive(Debug, Default)]
pub struct DiscoveryReport {
    /// The rules that ran, in id order.
    pub rules: Vec<RuleReport>,
    /// Folders whose rule is gone from the configuration: disabled, their mail kept.
    pub orphaned: Vec<MailboxConfig>,
    /// Nothing was written: `mailroom discover --dry-run`.
    pub dry_run: bool,
    /// Another runner was discovering; nothing ran.
    pub busy: Option<String>,
}

impl DiscoveryReport {
    /// Rules that could not be applied.
    pub fn failed(&self) -> usize {
        self.rules.iter().filter(|r| r.outcome.is_err()).count()
    }
}

impl Engine {
    /// Applies every rule now; with `dry_run`, only says what would change.
    pub async fn discover(&self, dry_run: bool) -> Result<DiscoveryReport, StoreError> {
        let rules = self.state.list_discover_rules().await?;
        self.discover_where(dry_run, rules, |_| true).await
    }

    /// Applies the rules whose latest discovery is older than `every` (or that never ran): the
    /// schedule of the import function and of `mailroom serve`.
    pub async fn discover_due(&self, every: Duration) -> Result<DiscoveryReport, StoreError> {
        let now = self.clock.now();
        let rules = self.state.list_discover_rules().await?;
        let mut due = std::collections::BTreeSet::new();
        for rule in &rules {
            let id = rule.id();
            let last = self.state.last_discovery_run(&id).await?;
            if last.is_none_or(|run| now - run.at >= every) {
                due.insert(id);
            }
        }
        self.discover_where(false, rules, |rule| due.contains(&rule.id()))
            .await
    }

    /// Applies those of `rules` (every rule configured) that are `due`; the others only count
    /// when telling which discovered folders lost their rule.
    async fn discover_where(
        &self,
        dry_run: bool,
        rules: Vec<DiscoverRule>,
        due: impl Fn(&DiscoverRule) -> bool,
    ) -> Result<DiscoveryReport, StoreError> {
        let mut report = DiscoveryReport {
            dry_run,
            ..DiscoveryReport::default()
        };
        let mut configs = self.state.list_mailboxes().await?;
        let orphaned: Vec<MailboxConfig> = configs
            .iter()
            .filter(|c| {
                c.enabled
                    && c.discovered_by
                        .as_ref()
                        .is_some_and(|id| !rules.iter().any(|r| &r.id() == id))
            })
            .map(|c| MailboxConfig {
                enabled: false,
                ..c.clone()
            })
            .collect();
        let rules: Vec<DiscoverRule> = rules.into_iter().filter(|r| due(r)).collect();
        if rules.is_empty() && orphaned.is_empty() {
            return Ok(report);
        }

        let owner = &self.options.owner;
        let now = self.clock.now();
        if !dry_run
            && let LeaseOutcome::HeldBy { owner, until } = self
                .state
                .acquire_lease(LEASE, owner, now, now + LEASE_FOR)
                .await?
        {
            report.busy = Some(format!(
                "another runner ({owner}) is discovering until {until}"
            ));
            return Ok(report);
        }
        let result = self
            .apply_rules(rules, orphaned, &mut configs, &mut report)
            .await;
        if !dry_run && let Err(e) = self.state.release_lease(LEASE, owner).await {
            tracing::warn!(error = %e, "could not release the discovery lease");
        }
        result.map(|()| report)
    }

    async fn apply_rules(
        &self,
        rules: Vec<DiscoverRule>,
        orphaned: Vec<MailboxConfig>,
        configs: &mut Vec<MailboxConfig>,
        report: &mut DiscoveryReport,
    ) -> Result<(), StoreError> {
        for rule in rules {
            let outcome = self.changes_for(&rule, configs).await;
            let run = DiscoveryRun {
                rule: rule.id(),
                at: self.clock.now(),
                archived: 0,
                skipped: 0,
                added: 0,
                enabled: 0,
                disabled: 0,
                error: None,
            };
            let run = match &outcome {
                Ok(changes) => {
                    if !report.dry_run {
                        for config in changes.plan.changes() {
                            self.state.put_mailbox(config).await?;
                        }
                    }
                    // Later rules see this one's folders as configured.
                    configs.extend(changes.plan.add.iter().cloned());
                    DiscoveryRun {
                        archived: changes.selection.mailboxes.len(),
                        skipped: changes.selection.skipped.len(),
                        added: changes.plan.add.len(),
                        enabled: changes.plan.enable.len(),
                        disabled: changes.plan.disable.len(),
                        ..run
                    }
                }
                Err(e) => DiscoveryRun {
                    error: Some(e.to_string()),
                    ..run
                },
            };
            tracing::info!(
                rule = %run.rule,
                archived = run.archived,
                skipped = run.skipped,
                added = run.added,
                enabled = run.enabled,
                disabled = run.disabled,
                error = run.error.as_deref(),
                dry_run = report.dry_run,
                "discovery rule applied"
            );
            if !report.dry_run {
                self.state.put_discovery_run(&run).await?;
            }
            report.rules.push(RuleReport { rule, outcome });
        }
        if !report.dry_run {
            for config in &orphaned {
                tracing::info!(mailbox = %config.address, folder = %config.folder, "its discovery rule is gone: disabled");
                self.state.put_mailbox(config).await?;
            }
        }
        report.orphaned = orphaned;
        Ok(())
    }

    /// What `rule` finds in the directory and changes in `configs`.
    async fn changes_for(
        &self,
        rule: &DiscoverRule,
        configs: &[MailboxConfig],
    ) -> Result<RuleChanges, RuleError> {
        let credential = self.working_credential(&rule.credential).await?;
        let directory = self.graph.directory(credential);
        let read = async {
            match &rule.members {
                Members::All => directory.users().await,
                Members::Group(name) => {
                    let group = directory.group(name).await?;
                    directory.group_users(&group.id).await
                }
            }
        };
        let users = read.await.map_err(ImportError::from)?;
        let selection = rule.select(&users)?;
        let id = rule.id();
        let mine: Vec<MailboxConfig> = configs
            .iter()
            .filter(|c| c.discovered_by.as_deref() == Some(id.as_str()))
            .cloned()
            .collect();
        let mut plan = rule.plan(&selection.mailboxes, &mine);
        let (add, configured_otherwise) =
            std::mem::take(&mut plan.add)
                .into_iter()
                .partition(|new: &MailboxConfig| {
                    !configs.iter().any(|c| {
                        c.address == new.address && c.folder.eq_ignore_ascii_case(&new.folder)
                    })
                });
        plan.add = add;
        Ok(RuleChanges {
            selection,
            plan,
            configured_otherwise,
        })
    }
}
