//! One mailbox: take its lease, connect to Graph, import its folders, release the lease.

use time::OffsetDateTime;

use super::folder::FolderTarget;
use super::report::{FolderReport, MailboxReport, MailboxStatus};
use super::{Engine, ImportError};
use crate::credentials::AppCredential;
use crate::domain::{FolderKey, MailboxAddress, MailboxConfig, RunSummary};
use crate::graph::MailboxClient;
use crate::ports::LeaseOutcome;

impl Engine {
    /// Imports the given folders of one mailbox under the mailbox's lease. Triggers are
    /// at-least-once; the lease makes sure only one runner works a mailbox at a time.
    #[tracing::instrument(skip_all, fields(mailbox = %address))]
    pub async fn import_mailbox(
        &self,
        address: MailboxAddress,
        configs: Vec<MailboxConfig>,
        stop_at: OffsetDateTime,
    ) -> MailboxReport {
        self.import_mailbox_with(address, configs, stop_at, false)
            .await
    }

    /// [`Self::import_mailbox`]; with `full_resync`, each delta folder's saved cursor is dropped
    /// first (under the lease), so the folder is read in full. Stored messages are skipped, so
    /// that creates no duplicates.
    pub(super) async fn import_mailbox_with(
        &self,
        address: MailboxAddress,
        configs: Vec<MailboxConfig>,
        stop_at: OffsetDateTime,
        full_resync: bool,
    ) -> MailboxReport {
        let started_at = self.clock.now();
        let lease = format!("mailbox#{address}");
        let owner = &self.options.owner;
        let until = stop_at + self.options.lease_margin;
        let mut report = MailboxReport {
            mailbox: address.clone(),
            status: MailboxStatus::Ok,
            folders: Vec::new(),
            error: None,
            events: None,
        };
        match self
            .state
            .acquire_lease(&lease, owner, self.clock.now(), until)
            .await
        {
            Ok(LeaseOutcome::Acquired) => {}
            Ok(LeaseOutcome::HeldBy { owner, until }) => {
                tracing::info!(holder = %owner, %until, "mailbox is being imported by another runner; skipped");
                report.status = MailboxStatus::Busy;
                report.error = Some(format!(
                    "another runner ({owner}) holds the mailbox until {until}"
                ));
                return report;
            }
            Err(e) => {
                report.status = MailboxStatus::Failed;
                report.error = Some(e.to_string());
                return report;
            }
        }

        // `folder = "*"` stands for the folders found in the mailbox now, less those configured on
        // their own.
        let configured: Vec<String> = configs
            .iter()
            .filter(|c| !c.is_every_folder())
            .map(|c| c.folder.clone())
            .collect();
        let mut work: Vec<(MailboxConfig, Option<(FolderKey, String)>)> = Vec::new();
        for config in configs {
            if !config.is_every_folder() {
                work.push((config, None));
                continue;
            }
            match self.every_folder(&config, &configured).await {
                Ok(found) => work.extend(found.into_iter().map(|(c, k, id)| (c, Some((k, id))))),
                Err(e) => {
                    report.status = status_after(&e);
                    report.folders.push(FolderReport {
                        folder: config.folder.clone(),
                        action: config.action.to_string(),
                        error: Some(e.to_string()),
                        ..FolderReport::default()
                    });
                }
            }
        }

        let mut first_found = true;
        for (config, found) in work {
            let mut folder = FolderReport {
                folder: config.folder.clone(),
                action: config.action.to_string(),
                ..FolderReport::default()
            };
            let key = found
                .as_ref()
                .map_or_else(|| config.key(), |(key, _)| key.clone());
            let reset = async {
                if full_resync && config.action.uses_delta() {
                    tracing::info!(folder = %config.folder, "full resync: reading the folder from scratch");
                    self.state.put_cursor(&key, &Default::default()).await?;
                }
                Ok::<(), ImportError>(())
            };
            let target = match found {
                None => FolderTarget::Configured,
                Some((key, id)) => FolderTarget::Found {
                    key,
                    id,
                    finish_pending_except: std::mem::take(&mut first_found)
                        .then_some(configured.as_slice()),
                },
            };
            let result = match reset.await {
                Err(e) => Err(e),
                Ok(()) => match self.connect(&config).await {
                    Ok(graph) => {
                        self.import_folder(&graph, &config, target, stop_at, &mut folder)
                            .await
                    }
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = result {
                if let ImportError::Interrupted(_) = e {
                    // As if the process died here: no lease release, no summary.
                    report.status = MailboxStatus::Failed;
                    report.error = Some(e.to_string());
                    report.folders.push(folder);
                    return report;
                }
                folder.error = Some(e.to_string());
                if report.status != MailboxStatus::NeedsSignIn {
                    report.status = status_after(&e);
                }
            }
            if folder.failed > 0 && report.status == MailboxStatus::Ok {
                report.status = MailboxStatus::Failed;
            }
            tracing::info!(
                folder = %folder.folder,
                action = %folder.action,
                imported = folder.imported,
                already_stored = folder.already_stored,
                unchanged = folder.unchanged,
                vanished = folder.vanished,
                failed = folder.failed,
                bytes = folder.bytes,
                stopped_at_deadline = folder.stopped_at_deadline,
                error = folder.error.as_deref(),
                "folder import finished"
            );
            report.folders.push(folder);
        }

        if self.events.is_some() {
            // Publishing fails alone: the messages are stored, and the events wait in the outbox.
            report.events = Some(match self.publish_events(&address).await {
                Ok(events) => events,
                Err(e @ ImportError::Interrupted(_)) => {
                    report.status = MailboxStatus::Failed;
                    report.error = Some(e.to_string());
                    return report;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not publish the mailbox's events; the next run does");
                    super::EventsReport {
                        error: Some(e.to_string()),
                        ..Default::default()
                    }
                }
            });
        }

        if let Err(e) = self.state.release_lease(&lease, owner).await {
            // The lease expires on its own; the next run only waits for it.
            tracing::warn!(error = %e, "could not release the mailbox lease");
        }
        let summary = RunSummary {
            mailbox: address.clone(),
            started_at,
            finished_at: self.clock.now(),
            status: report.status.as_str().to_owned(),
            imported: report.imported(),
            failed: report.failed(),
            error: report.folders.iter().find_map(|f| f.error.clone()),
        };
        if let Err(e) = self.state.put_run(&summary).await {
            tracing::warn!(error = %e, "could not record the run summary");
        }
        tracing::info!(
            status = ?report.status,
            folders = report.folders.len(),
            imported = report.imported(),
            failed = report.failed(),
            "mailbox import finished"
        );
        report
    }

    /// The folders `config` (`folder = "*"`) archives now, less those `configured` on their own:
    /// each as a configuration of its own path, with the cursor key of its id.
    async fn every_folder(
        &self,
        config: &MailboxConfig,
        configured: &[String],
    ) -> Result<Vec<(MailboxConfig, FolderKey, String)>, ImportError> {
        let graph = self.connect(config).await?;
        let folders = graph.archive_folders().await?;
        Ok(folders
            .into_iter()
            .filter(|(path, _)| !configured.iter().any(|c| c.eq_ignore_ascii_case(path)))
            .map(|(path, folder)| {
                let key = config.every_folder_key(&folder.id);
                let child = MailboxConfig {
                    folder: path,
                    ..config.clone()
                };
                (child, key, folder.id)
            })
            .collect())
    }
}

/// A mailbox's status after a folder of it failed with `error`: a delegated credential that needs
/// its person again is told apart, because only a sign-in fixes it (and `status` says so).
fn status_after(error: &ImportError) -> MailboxStatus {
    match error {
        ImportError::Graph(e) if e.is_sign_in_required() => MailboxStatus::NeedsSignIn,
        _ => MailboxStatus::Failed,
    }
}

impl Engine {
    /// A Graph handle for the folder's mailbox, after proving the credential works.
    pub async fn connect(&self, config: &MailboxConfig) -> Result<MailboxClient, ImportError> {
        let credential = self.working_credential(&config.credential).await?;
        Ok(self.graph.mailbox(credential, config.address.clone()))
    }

    /// The credential `name`, after proving Graph accepts it. A rejected secret is read again
    /// once before giving up: it may have just been rotated.
    pub async fn working_credential(&self, name: &str) -> Result<AppCredential, ImportError> {
        let credential = self.credentials.get(name).await?;
        match self.graph.check_credential(&credential).await {
            Ok(()) => Ok(credential),
            Err(e) if e.is_credential_rejected() => {
                let fresh = self.credentials.refresh(name).await?;
                if fresh.same_secret(&credential) {
                    return Err(e.into());
                }
                self.graph.check_credential(&fresh).await?;
                tracing::info!(credential = %name, "using the credential's new secret");
                Ok(fresh)
            }
            Err(e) => Err(e.into()),
        }
    }
}
