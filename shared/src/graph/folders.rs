//! Folder paths such as `Inbox/Backup Reports` resolved to folder ids (docs/graph.md §3).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::client::{MailboxClient, PagesRead, Request};
use super::error::{GraphError, Operation};
use super::model::{MailFolder, Page};

/// Names that address a default folder in any mailbox language (docs/graph.md §3).
pub const WELL_KNOWN_FOLDERS: &[&str] = &[
    "archive",
    "clutter",
    "conflicts",
    "conversationhistory",
    "deleteditems",
    "drafts",
    "inbox",
    "junkemail",
    "localfailures",
    "msgfolderroot",
    "outbox",
    "recoverableitemsdeletions",
    "scheduled",
    "searchfolders",
    "sentitems",
    "serverfailures",
    "syncissues",
];

/// The well-known folders `folder = "*"` leaves out, with their subfolders, unless a
/// configuration names them: deleted mail, junk and what Exchange keeps after deletion.
pub const ARCHIVE_EXCLUDES: [&str; 3] = ["deleteditems", "junkemail", "recoverableitemsdeletions"];

const FOLDER_SELECT: &str =
    "id,displayName,parentFolderId,childFolderCount,totalItemCount,unreadItemCount";

/// Splits a folder path into its non-empty, trimmed segments.
pub fn path_segments(path: &str) -> Vec<&str> {
    path.split('/')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// The folder lookups of one [`MailboxClient`]: well-known folders by name and folder levels by
/// parent id, each fetched once, even when two resolutions ask at the same moment.
#[derive(Default)]
pub(crate) struct FolderCache {
    well_known: Mutex<HashMap<String, Arc<OnceCell<MailFolder>>>>,
    /// The folders under each parent id (`None`: the top level).
    levels: Mutex<HashMap<Option<String>, Level>>,
}

type Level = Arc<OnceCell<Vec<MailFolder>>>;

impl FolderCache {
    fn well_known(&self, name: &str) -> Arc<OnceCell<MailFolder>> {
        let mut map = self.well_known.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_owned()).or_default().clone()
    }

    fn children(&self, parent: Option<&str>) -> Level {
        let mut map = self.levels.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(parent.map(str::to_owned)).or_default().clone()
    }
}

impl MailboxClient {
    /// Resolves a folder path: the first segment may be a well-known name (`inbox`), else a
    /// top-level display name; later segments are child display names. Display names compare
    /// case-insensitively, as Exchange does. A missing segment names the folders that do exist at
    /// that level.
    pub async fn resolve_folder(&self, path: &str) -> Result<MailFolder, GraphError> {
        self.resolve_folder_path(path)
            .await
            .map(|(folder, _)| folder)
    }

    /// Like [`MailboxClient::resolve_folder`], also returning the path as the mailbox spells it
    /// (display names, e.g. `Inbox/Backup Reports` for `inbox/backup reports`), for reports.
    pub async fn resolve_folder_path(
        &self,
        path: &str,
    ) -> Result<(MailFolder, String), GraphError> {
        let segments = path_segments(path);
        let Some((first, rest)) = segments.split_first() else {
            return Err(GraphError::Config(format!(
                "folder path '{path}' is empty; use a path such as Inbox/Backup Reports"
            )));
        };
        let mut folder = if WELL_KNOWN_FOLDERS.contains(&first.to_ascii_lowercase().as_str()) {
            let name = first.to_ascii_lowercase();
            let cell = self.folders.well_known(&name);
            cell.get_or_try_init(|| self.get_folder(&name))
                .await?
                .clone()
        } else {
            self.find_child(None, first, path, "the mailbox root")
                .await?
        };
        let mut walked = folder.display_name.clone();
        for segment in rest {
            folder = self
                .find_child(Some(&folder.id), segment, path, &format!("'{walked}'"))
                .await?;
            walked.push('/');
            walked.push_str(&folder.display_name);
        }
        Ok((folder, walked))
    }

    /// One folder by id or well-known name.
    pub async fn get_folder(&self, id: &str) -> Result<MailFolder, GraphError> {
        let url = self.url(&["mailFolders", id], &[("$select", FOLDER_SELECT)]);
        self.json(Request::get(Operation::GetFolder, url)).await
    }

    /// The folders directly under `parent` (the top level when `None`), every page.
    pub async fn child_folders(&self, parent: Option<&str>) -> Result<Vec<MailFolder>, GraphError> {
        let query = [("$select", FOLDER_SELECT), ("$top", "100")];
        let url = match parent {
            Some(id) => self.url(&["mailFolders", id, "childFolders"], &query),
            None => self.url(&["mailFolders"], &query),
        };
        let mut folders = Vec::new();
        let mut next = Some(url);
        let mut read = PagesRead::default();
        while let Some(url) = next.take() {
            read.visit(Operation::ListFolders, &url)?;
            let page: Page<MailFolder> =
                self.json(Request::get(Operation::ListFolders, url)).await?;
            folders.extend(page.value);
            if let Some(link) = page.next_link {
                next = Some(self.trusted_link(Operation::ListFolders, &link)?);
            }
        }
        Ok(folders)
    }

    /// Every folder of the mailbox with its full path (`Inbox/Backup Reports`), depth first,
    /// children in Graph's order. Each folder is placed by its `parentFolderId`: the top-level
    /// listing also includes search folders (docs/graph.md §3), which may live under another
    /// folder, and such a folder is shown there, once.
    pub async fn folder_tree(&self) -> Result<Vec<(String, MailFolder)>, GraphError> {
        let root = self.get_folder("msgfolderroot").await?;
        let mut top = Vec::new();
        // Folders the top-level listing gave whose parent is another folder, by parent id.
        let mut elsewhere: HashMap<String, Vec<MailFolder>> = HashMap::new();
        for folder in self.child_folders(None).await? {
            match &folder.parent_folder_id {
                Some(parent) if *parent != root.id => {
                    elsewhere.entry(parent.clone()).or_default().push(folder);
                }
                _ => top.push(folder),
            }
        }
        let mut tree = Vec::new();
        let mut stack: Vec<(String, MailFolder)> = top
            .into_iter()
            .rev()
            .map(|f| (f.display_name.clone(), f))
            .collect();
        // Each folder once: a folder listed among its own descendants (a broken or hostile reply)
        // would otherwise be walked for ever.
        let mut placed: HashSet<String> = HashSet::new();
        while let Some((path, folder)) = stack.pop() {
            if !placed.insert(folder.id.clone()) {
                continue;
            }
            let mut children = if folder.child_folder_count > 0 {
                self.child_folders(Some(&folder.id)).await?
            } else {
                Vec::new()
            };
            for stray in elsewhere.remove(&folder.id).unwrap_or_default() {
                if !children.iter().any(|c| c.id == stray.id) {
                    children.push(stray);
                }
            }
            stack.extend(
                children
                    .into_iter()
                    .rev()
                    .map(|child| (format!("{path}/{}", child.display_name), child)),
            );
            tree.push((path, folder));
        }
        // A parent outside the tree (hidden, say): still show the folder rather than lose it.
        let mut orphans: Vec<MailFolder> = elsewhere
            .into_values()
            .flatten()
            .filter(|f| placed.insert(f.id.clone()))
            .collect();
        orphans.sort_by(|a, b| a.display_name.cmp(&b.display_name));
        tree.extend(orphans.into_iter().map(|f| (f.display_name.clone(), f)));
        Ok(tree)
    }

    /// The folders `folder = "*"` archives: every folder of [`Self::folder_tree`] except Deleted
    /// Items, Junk Email and Recoverable Items (each with its subfolders) and search folders
    /// (their messages live in other folders). Each with its path, as in the tree.
    pub async fn archive_folders(&self) -> Result<Vec<(String, MailFolder)>, GraphError> {
        let mut left_out = Vec::new();
        for name in ARCHIVE_EXCLUDES {
            // A mailbox may lack one (Recoverable Items is outside the tree anyway): skip it.
            match self.get_folder(name).await {
                Ok(folder) => left_out.push(folder.id),
                Err(GraphError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let tree = self.folder_tree().await?;
        let parents: HashMap<&str, Option<&str>> = tree
            .iter()
            .map(|(_, f)| (f.id.as_str(), f.parent_folder_id.as_deref()))
            .collect();
        // Whether `id` or one of its ancestors is left out (bounded by the tree's size, should
        // Graph ever report a cycle).
        let under_left_out = |id: &str| {
            let mut next = Some(id);
            for _ in 0..=tree.len() {
                let Some(current) = next else { return false };
                if left_out.iter().any(|x| x == current) {
                    return true;
                }
                next = parents.get(current).copied().flatten();
            }
            false
        };
        Ok(tree
            .iter()
            .filter(|(_, f)| !f.is_search_folder() && !under_left_out(&f.id))
            .cloned()
            .collect())
    }

    async fn find_child(
        &self,
        parent: Option<&str>,
        name: &str,
        path: &str,
        parent_label: &str,
    ) -> Result<MailFolder, GraphError> {
        // Listing the level (usually a handful of folders) answers both "which one" and, when
        // it is missing, "what is there instead" in one call; and, from the cache, the same
        // question about a sibling (a folder and its processed folder often share a parent).
        let cell = self.folders.children(parent);
        let children = cell.get_or_try_init(|| self.child_folders(parent)).await?;
        let wanted = name.to_lowercase();
        let mut matches = children
            .iter()
            .filter(|f| f.display_name.to_lowercase() == wanted);
        match (matches.next(), matches.next()) {
            (Some(folder), None) => Ok(folder.clone()),
            (Some(_), Some(_)) => Err(GraphError::AmbiguousFolder {
                mailbox: self.mailbox.clone(),
                path: path.to_owned(),
                segment: name.to_owned(),
                parent: parent_label.to_owned(),
            }),
            (None, _) => Err(GraphError::FolderNotFound {
                mailbox: self.mailbox.clone(),
                path: path.to_owned(),
                missing: name.to_owned(),
                parent: parent_label.to_owned(),
                existing: children.iter().map(|f| f.display_name.clone()).collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_on_slashes_and_ignore_blanks() {
        assert_eq!(
            path_segments(" Inbox / Backup Reports/"),
            ["Inbox", "Backup Reports"]
        );
        assert!(path_segments(" / ").is_empty());
    }
}
