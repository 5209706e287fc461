//! The per-folder algorithm (docs/import.md; docs/graph.md §2, §5).
//!
//! - `move` and `delete`: the folder is its own work queue. What is still there is still to do,
//!   so the first page is listed again and again (never a `$skip` nextLink, which goes stale as
//!   messages leave). Listing overlaps with the messages in flight, and messages already seen in
//!   this run are skipped.
//! - `mark_read` and `none`: a delta round. A page's nextLink is saved once every message before
//!   it is stored; the deltaLink only when the whole round is. An expired token restarts from
//!   the last deltaLink, then from scratch: the conditional record create keeps that free of
//!   duplicates.

use std::collections::{HashSet, VecDeque};

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use time::OffsetDateTime;

use super::message::{Action, FolderRun};
use super::report::{FolderReport, MessageOutcome};
use super::{Engine, ImportError, Step};
use crate::domain::{AfterImport, Cursor, FolderKey, MailboxConfig, MessageId, MessageRecord};
use crate::graph::{DeltaStart, GraphError, MailboxClient, MessageSummary, Page};

/// Which folder a run imports.
pub(super) enum FolderTarget<'a> {
    /// The configuration's own folder path, resolved now.
    Configured,
    /// A folder `folder = "*"` found (`config.folder` is its path): its cursor is keyed by its
    /// id, so a renamed or moved folder keeps its place.
    Found {
        key: FolderKey,
        id: String,
        /// For the first folder of the mailbox only: finish the records earlier runs left
        /// pending in any folder but these (configured on their own), whatever the folder's
        /// path was then.
        finish_pending_except: Option<&'a [String]>,
    },
}

/// Which of the mailbox's pending records a folder run finishes.
enum Pending<'a> {
    /// Those of this folder path.
    OfFolder(&'a str),
    /// Those of every folder but these (configured on their own).
    AllBut(&'a [String]),
    None,
}

impl Pending<'_> {
    fn includes(&self, record: &MessageRecord) -> bool {
        match self {
            Self::OfFolder(folder) => record.folder == *folder,
            Self::AllBut(configured) => !configured
                .iter()
                .any(|c| c.eq_ignore_ascii_case(&record.folder)),
            Self::None => false,
        }
    }
}

impl Engine {
    /// Imports one mailbox folder until it is drained, its delta round is complete, or
    /// `stop_at` passes. Counts go into `report`; the error, if any, says why it stopped.
    #[tracing::instrument(skip_all, fields(mailbox = %config.address, folder = %config.folder))]
    pub(super) async fn import_folder(
        &self,
        graph: &MailboxClient,
        config: &MailboxConfig,
        target: FolderTarget<'_>,
        stop_at: OffsetDateTime,
        report: &mut FolderReport,
    ) -> Result<(), ImportError> {
        // Resolve the destination before touching any message: a missing processed folder must
        // fail the folder with nothing written. Both lookups at once: they are independent.
        let destination = async {
            match &config.action {
                AfterImport::Move { processed_folder } => graph
                    .resolve_folder(processed_folder)
                    .await
                    .map(|f| Action::MoveTo(f.id)),
                // Deleted Items rather than DELETE, which goes to Recoverable Items (docs/graph.md §4).
                AfterImport::Delete => Ok(Action::MoveTo("deleteditems".to_owned())),
                AfterImport::MarkRead => Ok(Action::MarkRead),
                AfterImport::None => Ok(Action::None),
            }
        };
        let folder = async {
            match &target {
                FolderTarget::Configured => {
                    graph.resolve_folder(&config.folder).await.map(|f| f.id)
                }
                FolderTarget::Found { id, .. } => Ok(id.clone()),
            }
        };
        let (folder_id, action) = tokio::join!(folder, destination);
        let (folder_id, action) = (folder_id?, action?);
        let (key, pending) = match target {
            FolderTarget::Configured => (config.key(), Pending::OfFolder(&config.folder)),
            FolderTarget::Found {
                key,
                finish_pending_except: Some(configured),
                ..
            } => (key, Pending::AllBut(configured)),
            FolderTarget::Found { key, .. } => (key, Pending::None),
        };
        let run = FolderRun {
            engine: self,
            graph,
            config,
            key,
            action,
        };
        self.finish_pending(&run, pending, report).await?;
        if config.action.uses_delta() {
            self.sync_delta(&run, &folder_id, stop_at, report).await
        } else {
            self.drain_queue(&run, &folder_id, stop_at, report).await
        }
    }

    /// Completes what an interrupted run left between "stored" and "done" (docs/import.md, "Invariants": each step
    /// idempotent). Needed because in `move`/`delete` modes the message may already be in its
    /// destination, where listing the source folder would never find it again.
    async fn finish_pending(
        &self,
        run: &FolderRun<'_>,
        which: Pending<'_>,
        report: &mut FolderReport,
    ) -> Result<(), ImportError> {
        if let Pending::None = which {
            return Ok(());
        }
        let pending: Vec<_> = self
            .state
            .pending_records(&run.config.address)
            .await?
            .into_iter()
            .filter(|r| which.includes(r))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        tracing::info!(
            count = pending.len(),
            "finishing messages an earlier run stored but did not finish"
        );
        let mut outcomes = futures::stream::iter(pending)
            .map(|record| async move { run.finish_stored(&record.message_id).await })
            .buffer_unordered(self.options.message_concurrency.max(1));
        while let Some(outcome) = outcomes.next().await {
            report.count(&outcome?);
        }
        Ok(())
    }

    fn before_deadline(&self, stop_at: OffsetDateTime) -> bool {
        self.clock.now() < stop_at && !self.stop.is_cancelled()
    }

    /// `move`/`delete` modes: list the first page, work the messages not seen yet in this run,
    /// list again while they are in flight, until a listing brings nothing new.
    async fn drain_queue(
        &self,
        run: &FolderRun<'_>,
        folder_id: &str,
        stop_at: OffsetDateTime,
        report: &mut FolderReport,
    ) -> Result<(), ImportError> {
        let concurrency = self.options.message_concurrency.max(1);
        let mut seen: HashSet<MessageId> = HashSet::new();
        let mut queue: VecDeque<MessageSummary> = VecDeque::new();
        let mut in_flight = FuturesUnordered::new();
        let mut listing = None;
        // Whether the last listing found anything new; if not, list again only once the
        // messages in flight are done (they are what the listing still showed).
        let mut last_listing_was_new = true;
        // Set when the whole first page is messages that failed in this run: look further.
        let mut next_link: Option<String> = None;
        let mut exhausted = false;

        loop {
            let in_time = self.before_deadline(stop_at);
            if listing.is_none()
                && !exhausted
                && in_time
                // List again before the queue runs dry, so Graph's slots never wait on a listing.
                && queue.len() < concurrency
                && (in_flight.is_empty() || last_listing_was_new)
            {
                let graph = run.graph;
                let page_size = self.options.page_size;
                listing = Some(match next_link.take() {
                    Some(link) => async move { graph.next_messages(&link).await }.boxed(),
                    None => async move { graph.first_messages(folder_id, page_size).await }.boxed(),
                });
            }
            while in_time && in_flight.len() < concurrency {
                let Some(message) = queue.pop_front() else {
                    break;
                };
                in_flight.push(async move { run.import_message(&message).await });
            }
            if listing.is_none() && in_flight.is_empty() {
                report.stopped_at_deadline = !in_time && (!queue.is_empty() || !exhausted);
                return Ok(());
            }

            tokio::select! {
                page = async { Some(listing.as_mut()?.await) }, if listing.is_some() => {
                    listing = None;
                    let Some(page) = page else { continue };
                    let page = page?;
                    let mut found_new = false;
                    for message in page.value {
                        if !message.is_removed() && seen.insert(message.id.clone()) {
                            queue.push_back(message);
                            found_new = true;
                        }
                    }
                    last_listing_was_new = found_new;
                    if !found_new && in_flight.is_empty() && queue.is_empty() {
                        // Everything listed has been dealt with in this run (what is left failed
                        // and waits for the next run): continue past it, or stop.
                        match page.next_link {
                            Some(link) => next_link = Some(link),
                            None => exhausted = true,
                        }
                    }
                }
                Some(outcome) = in_flight.next() => {
                    report.count(&outcome?);
                }
            }
        }
    }

    /// `mark_read`/`none` modes: one delta round, resumable.
    async fn sync_delta(
        &self,
        run: &FolderRun<'_>,
        folder_id: &str,
        stop_at: OffsetDateTime,
        report: &mut FolderReport,
    ) -> Result<(), ImportError> {
        let key = &run.key;
        let page_size = self.options.page_size;
        let mut cursor = self.state.get_cursor(key).await?.unwrap_or_default();
        let mut page = self
            .first_delta_page(run.graph, folder_id, &mut cursor)
            .await?;

        loop {
            let Page {
                value,
                next_link,
                delta_link,
            } = page;
            // Fetch the next page while this one's messages are imported: it does not depend on
            // them, and the nextLink is only saved once they are stored.
            let fetch_next = async {
                match &next_link {
                    Some(link) => Some(
                        run.graph
                            .delta_page(DeltaStart::Link(link), page_size)
                            .await,
                    ),
                    None => None,
                }
            };
            let (imported, prefetched) =
                tokio::join!(self.import_page(run, value, report), fetch_next);
            imported?;
            if report.failed > 0 {
                // Never move the cursor past a message that is not stored: the next run replays
                // this page, skipping what is already stored.
                return Ok(());
            }
            self.observer.before(Step::SaveCursor, key, None)?;
            if let Some(delta_link) = delta_link {
                cursor = Cursor {
                    delta_link: Some(delta_link),
                    next_link: None,
                };
                self.state.put_cursor(key, &cursor).await?;
                return Ok(());
            }
            let (Some(next_link), Some(prefetched)) = (next_link, prefetched) else {
                return Err(GraphError::MalformedResponse {
                    operation: "delta query",
                    detail: "a page has neither @odata.nextLink nor @odata.deltaLink".into(),
                }
                .into());
            };
            cursor.next_link = Some(next_link);
            self.state.put_cursor(key, &cursor).await?;
            if !self.before_deadline(stop_at) {
                report.stopped_at_deadline = true;
                return Ok(());
            }
            page = match prefetched {
                Ok(page) => page,
                Err(e) if e.is_delta_expired() => {
                    tracing::info!(
                        "delta token expired mid-round; resuming from the last complete round"
                    );
                    self.first_delta_page(run.graph, folder_id, &mut cursor)
                        .await?
                }
                Err(e) => return Err(e.into()),
            };
        }
    }

    /// The page a delta round starts from: the saved nextLink, else the saved deltaLink, else a
    /// fresh round. An expired link falls back one level at a time (docs/graph.md §5).
    async fn first_delta_page(
        &self,
        graph: &MailboxClient,
        folder_id: &str,
        cursor: &mut Cursor,
    ) -> Result<Page<MessageSummary>, ImportError> {
        let page_size = self.options.page_size;
        loop {
            let start = match (&cursor.next_link, &cursor.delta_link) {
                (Some(link), _) | (None, Some(link)) => DeltaStart::Link(link),
                (None, None) => DeltaStart::Initial { folder_id },
            };
            let from_scratch = matches!(start, DeltaStart::Initial { .. });
            match graph.delta_page(start, page_size).await {
                Ok(page) => return Ok(page),
                Err(e) if e.is_delta_expired() && !from_scratch => {
                    tracing::info!(error = %e, "saved delta link expired; falling back");
                    if cursor.next_link.take().is_none() {
                        cursor.delta_link = None;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Imports one delta page's messages, up to `message_concurrency` at a time.
    async fn import_page(
        &self,
        run: &FolderRun<'_>,
        messages: Vec<MessageSummary>,
        report: &mut FolderReport,
    ) -> Result<(), ImportError> {
        let mut outcomes = futures::stream::iter(messages.into_iter().filter(|m| !m.is_removed()))
            .map(|message| async move { run.import_message(&message).await })
            .buffer_unordered(self.options.message_concurrency.max(1));
        while let Some(outcome) = outcomes.next().await {
            let outcome: MessageOutcome = outcome?;
            report.count(&outcome);
        }
        Ok(())
    }
}
