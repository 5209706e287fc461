//! The sandbox's mutable state: tenants, apps, issued tokens, mailboxes, folders and messages.
//!
//! One `Mutex<State>` guards it (see `core.rs`); nothing here awaits, and MIME is streamed from
//! shared templates after the lock is released.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use time::OffsetDateTime;

use crate::credentials::{AppCertificate, PasswordCredential};
use crate::ids::{IdKind, fnv1a, new_guid, new_id};
use crate::mime::{self, MimeInput, MimeTemplate};
use crate::world::{Address, AttachmentSpec, MailboxOp, NewMessage, World};

/// A message's key inside its mailbox; never shown on the wire.
pub(crate) type MsgKey = u64;

/// A message as the sandbox sees it, for assertions in tests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageInfo {
    /// The immutable id (`Prefer: IdType="ImmutableId"`); never changes within the mailbox.
    pub immutable_id: String,
    /// The current REST id; changes on every move.
    pub rest_id: String,
    /// The `Message-ID` header, angle brackets included.
    pub internet_message_id: String,
    /// The subject.
    pub subject: String,
    /// Display-name path of the folder, e.g. "Inbox/Backup Reports", "Deleted Items",
    /// "Recoverable Items".
    pub folder_path: String,
    /// `isRead`.
    pub is_read: bool,
    /// `receivedDateTime`.
    #[serde(with = "time::serde::rfc3339")]
    pub received: OffsetDateTime,
    /// Exact byte length of the MIME (`$value`).
    pub size: u64,
    /// Hex SHA-256 of the MIME.
    pub sha256: String,
    /// `isDraft`.
    pub is_draft: bool,
    /// `conversationId`.
    pub conversation_id: String,
}

/// A `singleValueLegacyExtendedProperty`: its id as the client gave it (e.g. "String
/// {00020329-0000-0000-C000-000000000046} Name MailroomIdempotencyKey") and its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtendedProperty {
    /// The property id.
    pub id: String,
    /// The value (the sandbox stores every value as a string).
    pub value: String,
}

/// An attachment of a sent message, as recorded in [`SentMail`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentInfo {
    /// `name`.
    pub name: String,
    /// `contentType`.
    pub content_type: String,
    /// `size`: the length of the content in bytes.
    pub size: u64,
    /// Hex SHA-256 of the content a client attached (`None` for generated attachments).
    pub sha256: Option<String>,
}

/// A message an app sent, with `sendMail` or by sending a draft (`messages/{id}/send`), as
/// recorded by the sandbox. `sendMail` delivers nothing; a sent draft is delivered to the
/// recipients the sandbox hosts (docs/graph.md section 12).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SentMail {
    /// The client id of the app that sent it.
    pub client_id: String,
    /// The mailbox it was sent as (`/users/{mailbox}/sendMail`), lowercased.
    pub from: String,
    /// `toRecipients` addresses.
    pub to: Vec<String>,
    /// `ccRecipients` addresses.
    pub cc: Vec<String>,
    /// `bccRecipients` addresses.
    pub bcc: Vec<String>,
    /// `subject`.
    pub subject: String,
    /// `body.contentType` as sent ("text" or "html"; "text" when absent).
    pub content_type: String,
    /// `body.content`.
    pub body: String,
    /// `saveToSentItems` (default true).
    pub saved_to_sent_items: bool,
    /// When it was sent (sandbox clock).
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: OffsetDateTime,
    /// The immutable id of the sent draft (`None` for `sendMail`); the copy in Sent Items keeps
    /// it.
    pub draft_id: Option<String>,
    /// `internetMessageId` of a sent draft (empty for `sendMail`).
    pub internet_message_id: String,
    /// `conversationId` of a sent draft (empty for `sendMail`).
    pub conversation_id: String,
    /// The draft's `singleValueExtendedProperties` when it was sent.
    pub extended_properties: Vec<ExtendedProperty>,
    /// The draft's attachments when it was sent.
    pub attachments: Vec<AttachmentInfo>,
    /// Recipients (lowercased) whose mailbox, hosted by the sandbox, received a copy.
    pub delivered_to: Vec<String>,
    /// Recipients (lowercased) that bounced ([`crate::Sandbox::set_bouncing`]); the sender got a
    /// non-delivery report.
    pub bounced: Vec<String>,
}

impl SentMail {
    /// The value of the extended property with this id (compared as a `$filter` compares it,
    /// docs/graph.md section 12), if the sent draft had it.
    pub fn extended_property(&self, id: &str) -> Option<&str> {
        self.extended_properties
            .iter()
            .find(|p| extended_ids_match(&p.id, id))
            .map(|p| p.value.as_str())
    }
}

/// Whether two extended property ids name the same property: "Filtering the string name
/// (`Name`) in the id of an extended property is case-sensitive"
/// (<https://learn.microsoft.com/graph/api/singlevaluelegacyextendedproperty-get>); the docs say
/// nothing of the type and the GUID, which the sandbox compares case-insensitively, as GUIDs
/// and type names are.
pub(crate) fn extended_ids_match(a: &str, b: &str) -> bool {
    let (a_head, a_name) = split_extended_id(a);
    let (b_head, b_name) = split_extended_id(b);
    a_head.len() == b_head.len()
        && a_head
            .iter()
            .zip(&b_head)
            .all(|(x, y)| x.eq_ignore_ascii_case(y))
        && a_name == b_name
}

/// "{type} {guid} Name {name}" → ([type, guid, "Name"], name); other forms ("{type} {guid} Id
/// {id}", "{type} {proptag}") are all head.
fn split_extended_id(id: &str) -> (Vec<&str>, &str) {
    let id = id.trim();
    let words: Vec<&str> = id.splitn(3, char::is_whitespace).collect();
    if let [kind, guid, rest] = words.as_slice()
        && rest
            .get(..4)
            .is_some_and(|k| k.eq_ignore_ascii_case("name"))
        && let Some(name) = rest
            .get(4..)
            .and_then(|n| n.strip_prefix(char::is_whitespace))
    {
        return (vec![kind, guid, "Name"], name.trim());
    }
    (id.split_whitespace().collect(), "")
}

/// Well-known folders every mailbox has under the root, with their English display names
/// (docs/graph.md section 3).
const DEFAULT_FOLDERS: &[(&str, &str)] = &[
    ("archive", "Archive"),
    ("conversationhistory", "Conversation History"),
    ("deleteditems", "Deleted Items"),
    ("drafts", "Drafts"),
    ("inbox", "Inbox"),
    ("junkemail", "Junk Email"),
    ("outbox", "Outbox"),
    ("sentitems", "Sent Items"),
];

/// Display name of the hidden folder that `DELETE` moves messages to (docs/graph.md section 4).
pub(crate) const RECOVERABLE_ITEMS: &str = "Recoverable Items";

/// An issued access token.
#[derive(Clone, Debug)]
pub(crate) struct IssuedToken {
    pub(crate) tenant: usize,
    pub(crate) client_id: String,
    pub(crate) expires_at: OffsetDateTime,
    /// `None` for an app-only token (client credentials); the signed-in user and the granted
    /// delegated scopes (`scp`) for a delegated one (docs/graph.md section 13).
    pub(crate) delegation: Option<Delegation>,
}

/// Who a delegated access token acts for, and with which delegated permissions.
#[derive(Clone, Debug)]
pub(crate) struct Delegation {
    /// The signed-in user's mailbox (index in `State::mailboxes`).
    pub(crate) user: usize,
    /// Granted Graph scopes by their short names ("Mail.ReadWrite"), as `scp` lists them.
    pub(crate) scopes: Vec<String>,
}

impl Delegation {
    pub(crate) fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s.eq_ignore_ascii_case(scope))
    }

    pub(crate) fn has_any(&self, scopes: &[&str]) -> bool {
        scopes.iter().any(|s| self.has(s))
    }
}

/// A mailbox (or one folder of it) another user may open with delegated permissions
/// (docs/graph.md section 13): Exchange's FullAccess, or an Outlook folder permission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Share {
    /// The lowercased address of the user it is shared with.
    pub(crate) user: String,
    /// `None`: the whole mailbox (FullAccess); `Some`: that folder only.
    pub(crate) folder: Option<usize>,
    /// Whether the user may also change things (move, mark read, delete, drafts).
    pub(crate) write: bool,
}

#[derive(Debug)]
pub(crate) struct TenantState {
    pub(crate) id: String,
    pub(crate) domains: Vec<String>,
    pub(crate) apps: Vec<AppState>,
    pub(crate) groups: Vec<crate::world::Group>,
}

impl TenantState {
    pub(crate) fn app(&self, client_id: &str) -> Option<&AppState> {
        self.apps
            .iter()
            .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
    }
}

#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) client_id: String,
    /// The application object id (`id` in Graph), distinct from the client id (`appId`).
    pub(crate) object_id: String,
    pub(crate) display_name: String,
    pub(crate) created: OffsetDateTime,
    pub(crate) passwords: Vec<PasswordCredential>,
    pub(crate) certificates: Vec<AppCertificate>,
    pub(crate) permissions: Vec<String>,
    /// Lowercased addresses, or `None` for every mailbox.
    pub(crate) scope_only: Option<Vec<String>>,
    /// Redirect URIs of the "Web" platform (a confidential client redeems codes with its
    /// credential).
    pub(crate) web_redirect_uris: Vec<String>,
    /// Redirect URIs of the "Mobile and desktop applications" platform (a public client: no
    /// credential may be sent).
    pub(crate) public_redirect_uris: Vec<String>,
    /// "Allow public client flows" (`isFallbackPublicClient`): the device code grant without a
    /// credential.
    pub(crate) public_client_flows: bool,
    /// The delegated Graph permissions configured on the registration (short names).
    pub(crate) delegated_permissions: Vec<String>,
}

impl AppState {
    pub(crate) fn has(&self, permission: &str) -> bool {
        self.permissions
            .iter()
            .any(|p| p.eq_ignore_ascii_case(permission))
    }

    /// Reads need `Mail.Read` or `Mail.ReadWrite` (docs/graph.md section 8).
    pub(crate) fn can_read(&self) -> bool {
        self.has("Mail.Read") || self.has("Mail.ReadWrite")
    }

    /// Move, PATCH and DELETE need `Mail.ReadWrite`.
    pub(crate) fn can_write(&self) -> bool {
        self.has("Mail.ReadWrite")
    }

    /// Whether the app may read the application object of `target` (a client id): with
    /// `Application.Read.All` or `Application.ReadWrite.All` any app of its tenant, with
    /// `Application.ReadWrite.OwnedBy` only apps it owns; the sandbox counts every app as an
    /// owner of its own registration and of nothing else (docs/graph.md section 9).
    pub(crate) fn can_read_application(&self, target: &str) -> bool {
        self.has("Application.Read.All")
            || self.has("Application.ReadWrite.All")
            || (self.owns(target) && self.has("Application.ReadWrite.OwnedBy"))
    }

    /// Whether the app may add or remove credentials of `target` (addPassword, removePassword):
    /// `Application.ReadWrite.All`, or `Application.ReadWrite.OwnedBy` on an app it owns.
    pub(crate) fn can_write_application(&self, target: &str) -> bool {
        self.has("Application.ReadWrite.All")
            || (self.owns(target) && self.has("Application.ReadWrite.OwnedBy"))
    }

    /// Whether the app holds any permission that opens `/applications` at all.
    pub(crate) fn has_application_permission(&self) -> bool {
        self.can_read_application(&self.client_id)
    }

    fn owns(&self, target: &str) -> bool {
        self.client_id.eq_ignore_ascii_case(target)
    }

    pub(crate) fn in_scope(&self, address: &str) -> bool {
        match &self.scope_only {
            None => true,
            Some(list) => list.iter().any(|a| a.eq_ignore_ascii_case(address)),
        }
    }
}

/// A message that left a folder, remembered for delta `@removed` entries.
#[derive(Clone, Debug)]
pub(crate) struct Removal {
    pub(crate) immutable_id: String,
    pub(crate) rest_id: String,
}

#[derive(Debug)]
pub(crate) struct Folder {
    pub(crate) id: String,
    pub(crate) display_name: String,
    pub(crate) parent: Option<usize>,
    pub(crate) well_known: Option<&'static str>,
    pub(crate) hidden: bool,
    /// A mailSearchFolder: a virtual folder (it holds no messages of its own here).
    pub(crate) search: bool,
    pub(crate) children: Vec<usize>,
    /// Current members ordered by `receivedDateTime` (ties by insertion order).
    pub(crate) by_received: BTreeSet<(OffsetDateTime, MsgKey)>,
    /// Current members keyed by the mailbox sequence number of their last change (delta).
    pub(crate) by_seq: BTreeMap<u64, MsgKey>,
    /// Departures keyed by the sequence number of the departure (delta `@removed`).
    pub(crate) removals: BTreeMap<u64, Removal>,
}

#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) key: MsgKey,
    pub(crate) immutable_id: String,
    pub(crate) rest_id: String,
    pub(crate) folder: usize,
    /// Mailbox sequence number of the last change (creation, move in, update).
    pub(crate) seq: u64,
    /// Bumped on every change; feeds `changeKey` and `@odata.etag`.
    pub(crate) version: u32,
    pub(crate) subject: String,
    pub(crate) from: Address,
    pub(crate) to: Vec<Address>,
    pub(crate) cc: Vec<Address>,
    pub(crate) bcc: Vec<Address>,
    pub(crate) reply_to: Vec<Address>,
    pub(crate) received: OffsetDateTime,
    pub(crate) sent: OffsetDateTime,
    pub(crate) created: OffsetDateTime,
    pub(crate) last_modified: OffsetDateTime,
    pub(crate) is_read: bool,
    pub(crate) is_draft: bool,
    pub(crate) importance: &'static str,
    pub(crate) internet_message_id: String,
    pub(crate) conversation_id: String,
    pub(crate) body_text: String,
    /// The HTML body as a client gave it (drafts); else derived from `body_text`.
    pub(crate) body_html: Option<String>,
    /// `References` of a reply, oldest first.
    pub(crate) references: Vec<String>,
    /// `singleValueExtendedProperties`.
    pub(crate) extended: Vec<ExtendedProperty>,
    pub(crate) has_attachments: bool,
    /// What `GET …/attachments` lists: name, content type and size of each.
    pub(crate) attachments: Vec<AttachmentSpec>,
    pub(crate) mime: Arc<MimeTemplate>,
}

impl Message {
    /// Renders the MIME again from the message's properties (after a draft changed).
    pub(crate) fn render_mime(&self) -> MimeTemplate {
        mime::render(&MimeInput {
            from: &self.from,
            to: &self.to,
            cc: &self.cc,
            subject: &self.subject,
            date: self.sent,
            message_id: &self.internet_message_id,
            body_text: &self.body_text,
            body_html: self.body_html.as_deref(),
            references: &self.references,
            importance: self.importance,
            attachments: &self.attachments,
            generated_size: None,
        })
    }

    /// The value of an extended property, by id (see [`extended_ids_match`]).
    pub(crate) fn extended_property(&self, id: &str) -> Option<&str> {
        self.extended
            .iter()
            .find(|p| extended_ids_match(&p.id, id))
            .map(|p| p.value.as_str())
    }

    /// Sets an extended property: replaces the value of one with the same id, or adds it.
    pub(crate) fn set_extended_property(&mut self, p: ExtendedProperty) {
        match self
            .extended
            .iter_mut()
            .find(|e| extended_ids_match(&e.id, &p.id))
        {
            Some(existing) => existing.value = p.value,
            None => self.extended.push(p),
        }
    }

    /// `changeKey`, which also feeds `@odata.etag`: changes with every version.
    pub(crate) fn change_key(&self) -> String {
        use base64::Engine;
        let h = fnv1a(&[self.immutable_id.as_bytes(), &self.version.to_le_bytes()]);
        format!(
            "CQAAABYAAA{}",
            base64::engine::general_purpose::STANDARD.encode(h.to_le_bytes())
        )
    }
}

#[derive(Debug)]
pub(crate) struct MailboxState {
    pub(crate) id: String,
    pub(crate) address: String,
    pub(crate) display_name: String,
    pub(crate) tenant: usize,
    /// A user's, a shared or an unlicensed user's mailbox (the directory shows which).
    pub(crate) kind: crate::world::MailboxKind,
    /// Its user was deleted ([`crate::Sandbox::delete_user`]): gone from the directory.
    pub(crate) deleted: bool,
    pub(crate) folders: Vec<Folder>,
    folder_ids: HashMap<String, usize>,
    pub(crate) messages: HashMap<MsgKey, Message>,
    by_immutable: HashMap<String, MsgKey>,
    by_rest: HashMap<String, MsgKey>,
    next_key: MsgKey,
    /// Mailbox-wide change sequence; every folder's delta log draws from it.
    pub(crate) seq: u64,
    /// Bumped by `expire_delta_tokens`; tokens of other generations answer 410.
    pub(crate) delta_generation: u64,
    /// Who else may open this mailbox, or some of its folders, with delegated permissions.
    pub(crate) shares: Vec<Share>,
    pub(crate) root: usize,
    pub(crate) recoverable: usize,
    /// Messages that arrived in a folder (created or moved in) since the last
    /// [`MailboxState::take_arrivals`]: the source of change notifications (docs/graph.md
    /// section 6).
    arrivals: Vec<MsgKey>,
}

/// A message that arrived in a folder, with what a change notification needs; built under the
/// state lock, delivered after it is released.
#[derive(Clone, Debug)]
pub(crate) struct Arrival {
    pub(crate) mailbox: usize,
    /// The mailbox owner's user id (a GUID), as notifications show it in `resource`.
    pub(crate) user_id: String,
    pub(crate) folder: usize,
    /// Whether the folder is in the visible tree (for `users/{id}/messages` subscriptions).
    pub(crate) visible: bool,
    pub(crate) immutable_id: String,
    pub(crate) rest_id: String,
    /// `W/"<changeKey>"`.
    pub(crate) etag: String,
}

impl MailboxState {
    pub(crate) fn new(address: &str, display_name: Option<&str>, tenant: usize) -> Self {
        let local = address.split('@').next().unwrap_or(address);
        let mut mb = Self {
            id: new_guid(),
            address: address.to_ascii_lowercase(),
            display_name: display_name.map_or_else(|| title_case(local), str::to_owned),
            tenant,
            kind: crate::world::MailboxKind::User,
            deleted: false,
            folders: Vec::new(),
            folder_ids: HashMap::new(),
            messages: HashMap::new(),
            by_immutable: HashMap::new(),
            by_rest: HashMap::new(),
            next_key: 1,
            seq: 0,
            delta_generation: 1,
            shares: Vec::new(),
            root: 0,
            recoverable: 0,
            arrivals: Vec::new(),
        };
        mb.root = mb.push_folder(
            "Top of Information Store",
            None,
            Some("msgfolderroot"),
            false,
        );
        for (wk, name) in DEFAULT_FOLDERS {
            mb.push_folder(name, Some(mb.root), Some(wk), false);
        }
        // Outside the IPM subtree, so never listed under msgfolderroot (docs/graph.md section 4).
        mb.recoverable = mb.push_folder(
            RECOVERABLE_ITEMS,
            None,
            Some("recoverableitemsdeletions"),
            true,
        );
        mb
    }

    fn push_folder(
        &mut self,
        name: &str,
        parent: Option<usize>,
        well_known: Option<&'static str>,
        hidden: bool,
    ) -> usize {
        let idx = self.folders.len();
        let id = new_id(IdKind::Folder);
        self.folder_ids.insert(id.clone(), idx);
        self.folders.push(Folder {
            id,
            display_name: name.to_owned(),
            parent,
            well_known,
            hidden,
            search: false,
            children: Vec::new(),
            by_received: BTreeSet::new(),
            by_seq: BTreeMap::new(),
            removals: BTreeMap::new(),
        });
        if let Some(p) = parent.and_then(|p| self.folders.get_mut(p)) {
            p.children.push(idx);
        }
        idx
    }

    /// Adds a search folder `name` under the folder at `parent_path` (created if missing).
    pub(crate) fn add_search_folder(&mut self, parent_path: &str, name: &str) -> Option<usize> {
        let parent = self.resolve_path(parent_path, true)?;
        let idx = self.push_folder(name, Some(parent), None, false);
        if let Some(folder) = self.folders.get_mut(idx) {
            folder.search = true;
        }
        Some(idx)
    }

    /// Every search folder of the mailbox, wherever it is.
    pub(crate) fn search_folders(&self) -> Vec<usize> {
        (0..self.folders.len())
            .filter(|i| self.folders.get(*i).is_some_and(|f| f.search))
            .collect()
    }

    pub(crate) fn folder(&self, idx: usize) -> Option<&Folder> {
        self.folders.get(idx)
    }

    /// A folder by id or well-known name (case-insensitive), as accepted in URLs.
    pub(crate) fn folder_by_id_or_name(&self, id: &str) -> Option<usize> {
        if let Some(idx) = self.folder_ids.get(id) {
            return Some(*idx);
        }
        self.folders
            .iter()
            .position(|f| f.well_known.is_some_and(|wk| wk.eq_ignore_ascii_case(id)))
    }

    pub(crate) fn is_well_known_name(name: &str) -> bool {
        const OTHER: &[&str] = &[
            "clutter",
            "conflicts",
            "localfailures",
            "msgfolderroot",
            "recoverableitemsdeletions",
            "scheduled",
            "searchfolders",
            "serverfailures",
            "syncissues",
        ];
        DEFAULT_FOLDERS
            .iter()
            .any(|(wk, _)| wk.eq_ignore_ascii_case(name))
            || OTHER.iter().any(|wk| wk.eq_ignore_ascii_case(name))
    }

    fn child_by_name(&self, parent: usize, name: &str) -> Option<usize> {
        self.folders
            .get(parent)?
            .children
            .iter()
            .copied()
            .find(|c| {
                self.folders
                    .get(*c)
                    .is_some_and(|f| f.display_name.eq_ignore_ascii_case(name))
            })
    }

    /// Resolves a display-name path ("Inbox/Backup Reports"); the first segment may also be a
    /// well-known name or "Recoverable Items". With `create`, missing folders are created.
    pub(crate) fn resolve_path(&mut self, path: &str, create: bool) -> Option<usize> {
        let mut segments = path.split('/').map(str::trim).filter(|s| !s.is_empty());
        let first = segments.next()?;
        let mut current = if first.eq_ignore_ascii_case(RECOVERABLE_ITEMS) {
            self.recoverable
        } else if let Some(c) = self.child_by_name(self.root, first) {
            c
        } else if let Some(c) = self.folders.iter().position(|f| {
            f.well_known
                .is_some_and(|wk| wk.eq_ignore_ascii_case(first))
        }) {
            c
        } else if create {
            self.push_folder(first, Some(self.root), None, false)
        } else {
            return None;
        };
        for segment in segments {
            current = match self.child_by_name(current, segment) {
                Some(c) => c,
                None if create => self.push_folder(segment, Some(current), None, false),
                None => return None,
            };
        }
        Some(current)
    }

    /// Renames the folder at `path` and moves it under the folder at `parent_path` (when given),
    /// keeping its id and messages, as a person does in Outlook. Returns whether both exist.
    pub(crate) fn rename_folder(
        &mut self,
        path: &str,
        name: &str,
        parent_path: Option<&str>,
    ) -> bool {
        let Some(folder) = self.resolve_path(path, false) else {
            return false;
        };
        let parent = match parent_path {
            Some(p) => match self.resolve_path(p, false) {
                Some(parent) => Some(parent),
                None => return false,
            },
            None => None,
        };
        if let Some(new_parent) = parent {
            if let Some(old) = self.folders[folder].parent {
                self.folders[old].children.retain(|c| *c != folder);
            }
            self.folders[new_parent].children.push(folder);
            self.folders[folder].parent = Some(new_parent);
        }
        self.folders[folder].display_name = name.to_owned();
        true
    }

    /// The display-name path of a folder ("Inbox/Backup Reports").
    pub(crate) fn path_of(&self, folder: usize) -> String {
        let mut names = Vec::new();
        let mut current = Some(folder);
        while let Some(idx) = current {
            if idx == self.root {
                break;
            }
            let Some(f) = self.folders.get(idx) else {
                break;
            };
            names.push(f.display_name.as_str());
            current = f.parent;
        }
        names.reverse();
        names.join("/")
    }

    /// Whether the folder is in the visible tree (under msgfolderroot).
    pub(crate) fn is_visible(&self, folder: usize) -> bool {
        let mut current = Some(folder);
        while let Some(idx) = current {
            if idx == self.root {
                return true;
            }
            current = self.folders.get(idx).and_then(|f| f.parent);
        }
        false
    }

    pub(crate) fn unread_count(&self, folder: usize) -> usize {
        self.folders.get(folder).map_or(0, |f| {
            f.by_received
                .iter()
                .filter(|(_, k)| self.messages.get(k).is_some_and(|m| !m.is_read))
                .count()
        })
    }

    pub(crate) fn size_of_folder(&self, folder: usize) -> u64 {
        self.folders.get(folder).map_or(0, |f| {
            f.by_received
                .iter()
                .filter_map(|(_, k)| self.messages.get(k))
                .map(|m| m.mime.len())
                .sum()
        })
    }

    /// A message by immutable id or current REST id.
    pub(crate) fn resolve_message(&self, id: &str) -> Option<MsgKey> {
        self.by_immutable
            .get(id)
            .or_else(|| self.by_rest.get(id))
            .copied()
    }

    pub(crate) fn message(&self, key: MsgKey) -> Option<&Message> {
        self.messages.get(&key)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Adds a message to a folder.
    pub(crate) fn insert(&mut self, folder: usize, m: &NewMessage, now: OffsetDateTime) -> MsgKey {
        let key = self.next_key;
        self.next_key += 1;
        // Exchange keeps whole seconds; so does the wire format.
        let received = m.received.unwrap_or(now);
        let received = received.replace_nanosecond(0).unwrap_or(received);
        let jitter =
            i64::try_from(fnv1a(&[m.subject.as_bytes(), &key.to_le_bytes()]) % 40).unwrap_or(0) + 2;
        let sent = m.extra.sent.unwrap_or_else(|| {
            received
                .checked_sub(time::Duration::seconds(jitter))
                .unwrap_or(received)
        });
        let domain = m
            .from
            .address
            .split('@')
            .nth(1)
            .unwrap_or("sandbox.invalid");
        let internet_message_id = m
            .internet_message_id
            .clone()
            .unwrap_or_else(|| format!("<{}@{}>", uuid::Uuid::new_v4().simple(), domain));
        let draft = m.extra.is_draft;
        // A draft has the recipients its author gave, possibly none.
        let delivered = m.extra.sent.is_some();
        let to = if m.to.is_empty() && !draft && !delivered {
            vec![Address::new(&self.display_name, &self.address)]
        } else {
            m.to.clone()
        };
        let body_text = m.body_text.clone().unwrap_or_else(|| {
            if draft {
                return String::new();
            }
            format!(
                "Hello {},\n\nThis message is about \"{}\".\n\nKind regards,\n{}",
                self.display_name, m.subject, m.from.name
            )
        });
        let template = mime::render(&MimeInput {
            from: &m.from,
            to: &to,
            cc: &m.cc,
            subject: &m.subject,
            date: sent,
            message_id: &internet_message_id,
            body_text: &body_text,
            body_html: m.extra.body_html.as_deref(),
            references: &m.extra.references,
            importance: m.importance,
            attachments: &m.attachments,
            generated_size: m.generated_size,
        });
        let seq = self.next_seq();
        let message = Message {
            key,
            immutable_id: new_id(IdKind::ImmutableMessage),
            rest_id: new_id(IdKind::RestMessage),
            folder,
            seq,
            version: 1,
            subject: m.subject.clone(),
            from: m.from.clone(),
            to,
            cc: m.cc.clone(),
            bcc: m.extra.bcc.clone(),
            reply_to: m.extra.reply_to.clone(),
            received,
            sent,
            created: received,
            last_modified: received,
            is_read: m.is_read,
            is_draft: draft,
            importance: m.importance,
            internet_message_id,
            conversation_id: m
                .extra
                .conversation_id
                .clone()
                .unwrap_or_else(|| new_id(IdKind::Conversation)),
            body_text,
            body_html: m.extra.body_html.clone(),
            references: m.extra.references.clone(),
            extended: m.extra.extended.clone(),
            has_attachments: !m.attachments.is_empty() || m.generated_size.is_some(),
            attachments: m
                .attachments
                .iter()
                .cloned()
                .chain(m.generated_size.map(|size| AttachmentSpec {
                    // The generated payload's size is that of the whole message it pads out:
                    // close enough for a listing.
                    filename: mime::GENERATED_ATTACHMENT.to_owned(),
                    content_type: "application/octet-stream".to_owned(),
                    size,
                    ..AttachmentSpec::default()
                }))
                .collect(),
            mime: Arc::new(template),
        };
        self.by_immutable.insert(message.immutable_id.clone(), key);
        self.by_rest.insert(message.rest_id.clone(), key);
        if let Some(f) = self.folders.get_mut(folder) {
            f.by_received.insert((received, key));
            f.by_seq.insert(seq, key);
        }
        self.messages.insert(key, message);
        self.arrivals.push(key);
        key
    }

    /// Takes a message out of its folder, logging the departure for delta.
    fn detach(&mut self, key: MsgKey) -> Option<usize> {
        let seq = self.next_seq();
        let m = self.messages.get(&key)?;
        let folder = m.folder;
        let removal = Removal {
            immutable_id: m.immutable_id.clone(),
            rest_id: m.rest_id.clone(),
        };
        let (received, old_seq) = (m.received, m.seq);
        let f = self.folders.get_mut(folder)?;
        f.by_received.remove(&(received, key));
        f.by_seq.remove(&old_seq);
        f.removals.insert(seq, removal);
        Some(folder)
    }

    /// Moves a message; its REST id changes, its immutable id does not (docs/graph.md section 2).
    /// Moving to the folder it is in changes nothing.
    pub(crate) fn move_to(&mut self, key: MsgKey, dest: usize, now: OffsetDateTime) {
        self.move_with(key, dest, now, |_| {});
    }

    /// Moves a message like [`MailboxState::move_to`], changing it with `f` on the way (a sent
    /// draft becomes a sent message as it reaches Sent Items).
    pub(crate) fn move_with(
        &mut self,
        key: MsgKey,
        dest: usize,
        now: OffsetDateTime,
        f: impl FnOnce(&mut Message),
    ) {
        let Some(m) = self.messages.get(&key) else {
            return;
        };
        if m.folder == dest || self.folders.get(dest).is_none() {
            return;
        }
        if self.detach(key).is_none() {
            return;
        }
        let seq = self.next_seq();
        let new_rest = new_id(IdKind::RestMessage);
        let Some(m) = self.messages.get_mut(&key) else {
            return;
        };
        self.by_rest.remove(&m.rest_id);
        f(m);
        m.rest_id = new_rest.clone();
        m.folder = dest;
        m.seq = seq;
        m.version += 1;
        m.last_modified = now;
        let received = m.received;
        self.by_rest.insert(new_rest, key);
        if let Some(f) = self.folders.get_mut(dest) {
            f.by_received.insert((received, key));
            f.by_seq.insert(seq, key);
        }
        self.arrivals.push(key);
    }

    /// Drains the arrivals since the last call (see [`Arrival`]).
    pub(crate) fn take_arrivals(&mut self, mailbox: usize) -> Vec<Arrival> {
        let keys = std::mem::take(&mut self.arrivals);
        keys.into_iter()
            .filter_map(|k| {
                let m = self.messages.get(&k)?;
                Some(Arrival {
                    mailbox,
                    user_id: self.id.clone(),
                    folder: m.folder,
                    visible: self.is_visible(m.folder),
                    immutable_id: m.immutable_id.clone(),
                    rest_id: m.rest_id.clone(),
                    etag: format!("W/\"{}\"", m.change_key()),
                })
            })
            .collect()
    }

    /// Applies an update to a message and logs it for delta.
    pub(crate) fn update(
        &mut self,
        key: MsgKey,
        now: OffsetDateTime,
        f: impl FnOnce(&mut Message),
    ) {
        let seq = self.next_seq();
        let Some(m) = self.messages.get_mut(&key) else {
            return;
        };
        f(m);
        let old_seq = m.seq;
        m.seq = seq;
        m.version += 1;
        m.last_modified = now;
        let folder = m.folder;
        if let Some(folder) = self.folders.get_mut(folder) {
            folder.by_seq.remove(&old_seq);
            folder.by_seq.insert(seq, key);
        }
    }

    /// `DELETE`: a soft delete into the hidden Recoverable Items folder; deleting from there
    /// purges the message (docs/graph.md section 4).
    pub(crate) fn delete(&mut self, key: MsgKey, now: OffsetDateTime) {
        let Some(m) = self.messages.get(&key) else {
            return;
        };
        if m.folder != self.recoverable {
            self.move_to(key, self.recoverable, now);
            return;
        }
        if self.detach(key).is_some()
            && let Some(m) = self.messages.remove(&key)
        {
            self.by_immutable.remove(&m.immutable_id);
            self.by_rest.remove(&m.rest_id);
        }
    }

    /// Messages of one folder, newest first.
    pub(crate) fn folder_keys(&self, folder: usize) -> Vec<MsgKey> {
        self.folders.get(folder).map_or_else(Vec::new, |f| {
            f.by_received.iter().rev().map(|(_, k)| *k).collect()
        })
    }

    /// Every message of the mailbox, by folder path then newest first.
    pub(crate) fn all_keys(&self) -> Vec<MsgKey> {
        let mut folders: Vec<usize> = (0..self.folders.len()).collect();
        folders.sort_by_key(|f| self.path_of(*f));
        folders
            .into_iter()
            .flat_map(|f| self.folder_keys(f))
            .collect()
    }

    /// A [`MessageInfo`] without its SHA-256 (computed outside the lock), plus the MIME.
    pub(crate) fn info(&self, key: MsgKey) -> Option<(MessageInfo, Arc<MimeTemplate>)> {
        let m = self.messages.get(&key)?;
        Some((
            MessageInfo {
                immutable_id: m.immutable_id.clone(),
                rest_id: m.rest_id.clone(),
                internet_message_id: m.internet_message_id.clone(),
                subject: m.subject.clone(),
                folder_path: self.path_of(m.folder),
                is_read: m.is_read,
                received: m.received,
                size: m.mime.len(),
                sha256: String::new(),
                is_draft: m.is_draft,
                conversation_id: m.conversation_id.clone(),
            },
            Arc::clone(&m.mime),
        ))
    }
}

/// The sandbox's state behind the global mutex.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) tenants: Vec<TenantState>,
    pub(crate) mailboxes: Vec<MailboxState>,
    /// Lowercased address or mailbox id → index in `mailboxes`.
    index: HashMap<String, usize>,
    pub(crate) tokens: HashMap<String, IssuedToken>,
    pub(crate) token_lifetime: u64,
    /// How long a password added at run time takes to reach the token endpoint.
    pub(crate) password_propagation: time::Duration,
    /// Every `sendMail` and sent draft, oldest first.
    pub(crate) sent_mail: Vec<SentMail>,
    /// Lowercased addresses that bounce ([`crate::Sandbox::set_bouncing`]).
    pub(crate) bouncing: HashSet<String>,
    /// The largest message a mailbox may send, in bytes of MIME (docs/graph.md section 12).
    pub(crate) max_message_size: u64,
    /// Attachment upload sessions by token (`graph::attachments`).
    pub(crate) uploads: HashMap<String, crate::graph::UploadSession>,
    /// Whether sent drafts wait in the Outbox ([`crate::Sandbox::hold_outbox`]).
    pub(crate) hold_outbox: bool,
    /// Messages waiting in an Outbox: mailbox, message and the client id that sent them.
    pub(crate) outbox: Vec<(usize, MsgKey, String)>,
    /// Authorization codes, refresh tokens, device codes, consent and sign-in state
    /// (docs/graph.md section 13).
    pub(crate) delegated: crate::delegated::DelegatedState,
}

/// Exchange Online's default message size limit, 35 MB, which administrators can raise to
/// 150 MB (docs/graph.md section 12). Exchange counts megabytes of 1,048,576 bytes.
pub(crate) const DEFAULT_MAX_MESSAGE_SIZE: u64 = 35 * 1024 * 1024;

/// Default `expires_in` of issued tokens, as Entra reports it (docs/graph.md section 1).
pub(crate) const DEFAULT_TOKEN_LIFETIME: u64 = 3599;

impl State {
    pub(crate) fn from_world(world: &World, now: OffsetDateTime) -> Self {
        let mut state = Self {
            tenants: Vec::new(),
            mailboxes: Vec::new(),
            index: HashMap::new(),
            tokens: HashMap::new(),
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            password_propagation: time::Duration::ZERO,
            sent_mail: Vec::new(),
            bouncing: HashSet::new(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            uploads: HashMap::new(),
            hold_outbox: false,
            outbox: Vec::new(),
            delegated: crate::delegated::DelegatedState::default(),
        };
        for t in &world.tenants {
            let tenant = state.tenants.len();
            state.tenants.push(TenantState {
                id: t.id.clone(),
                domains: t.domains.clone(),
                groups: t.groups.clone(),
                apps: t
                    .apps
                    .iter()
                    .map(|a| AppState {
                        client_id: a.client_id.clone(),
                        object_id: a.object_id.clone().unwrap_or_else(new_guid),
                        display_name: a.display_name.clone().unwrap_or_else(|| {
                            format!(
                                "sandbox-app-{}",
                                a.client_id.get(..8).unwrap_or(&a.client_id)
                            )
                        }),
                        created: now,
                        // The world's own secrets have long propagated.
                        passwords: a
                            .secrets
                            .iter()
                            .map(|s| PasswordCredential::from_secret(s, s.starts_at.min(now)))
                            .collect(),
                        certificates: a.certificates.clone(),
                        permissions: a.permissions.clone(),
                        scope_only: a
                            .scope_only
                            .as_ref()
                            .map(|l| l.iter().map(|s| s.to_ascii_lowercase()).collect()),
                        web_redirect_uris: a.web_redirect_uris.clone(),
                        public_redirect_uris: a.public_redirect_uris.clone(),
                        public_client_flows: a.public_client_flows,
                        delegated_permissions: a.delegated_permissions.clone(),
                    })
                    .collect(),
            });
            for m in &t.mailboxes {
                let mb = state.add_mailbox(&m.address, m.display_name.as_deref(), tenant);
                if let Some(added) = state.mailboxes.get_mut(mb) {
                    added.kind = m.kind;
                }
                for share in &m.shares {
                    let Some(x) = state.mailbox_mut(mb) else {
                        continue;
                    };
                    let folder = match &share.folder {
                        Some(path) => match x.resolve_path(path, true) {
                            Some(f) => Some(f),
                            None => continue,
                        },
                        None => None,
                    };
                    x.shares.push(Share {
                        user: share.user.to_ascii_lowercase(),
                        folder,
                        write: share.write,
                    });
                }
                for op in &m.ops {
                    match op {
                        MailboxOp::Folder(path) => {
                            state
                                .mailbox_mut(mb)
                                .and_then(|x| x.resolve_path(path, true));
                        }
                        MailboxOp::Message(path, message) => {
                            if let Some(x) = state.mailbox_mut(mb)
                                && let Some(folder) = x.resolve_path(path, true)
                            {
                                x.insert(folder, message, now);
                            }
                        }
                        MailboxOp::Generate(path, n) => {
                            let messages =
                                crate::corpus::generated_messages(&m.address, path, *n, now);
                            if let Some(x) = state.mailbox_mut(mb)
                                && let Some(folder) = x.resolve_path(path, true)
                            {
                                for message in &messages {
                                    x.insert(folder, message, now);
                                }
                            }
                        }
                    }
                }
            }
        }
        // The initial contents notify nobody: there are no subscriptions yet.
        for mb in &mut state.mailboxes {
            mb.arrivals.clear();
        }
        state
    }

    /// Drains a mailbox's arrivals (see [`Arrival`]).
    pub(crate) fn take_arrivals(&mut self, mailbox: usize) -> Vec<Arrival> {
        self.mailbox_mut(mailbox)
            .map(|mb| mb.take_arrivals(mailbox))
            .unwrap_or_default()
    }

    /// Drains the arrivals of every mailbox (a sent draft can bring mail into several).
    pub(crate) fn take_all_arrivals(&mut self) -> Vec<Arrival> {
        let mut all = Vec::new();
        for (idx, mb) in self.mailboxes.iter_mut().enumerate() {
            if !mb.arrivals.is_empty() {
                all.extend(mb.take_arrivals(idx));
            }
        }
        all
    }

    fn add_mailbox(&mut self, address: &str, display_name: Option<&str>, tenant: usize) -> usize {
        if let Some(existing) = self.index.get(&address.to_ascii_lowercase()) {
            return *existing;
        }
        let mb = MailboxState::new(address, display_name, tenant);
        let idx = self.mailboxes.len();
        self.index.insert(mb.address.clone(), idx);
        self.index.insert(mb.id.clone(), idx);
        self.mailboxes.push(mb);
        idx
    }

    /// A mailbox by address (case-insensitive) or id.
    pub(crate) fn find_mailbox(&self, user: &str) -> Option<usize> {
        self.index.get(&user.to_ascii_lowercase()).copied()
    }

    /// A mailbox by address, created if missing (in the tenant owning its domain, else the
    /// first tenant, else a new tenant [`crate::DEFAULT_TENANT`]).
    pub(crate) fn mailbox_or_create(&mut self, address: &str) -> usize {
        if let Some(idx) = self.find_mailbox(address) {
            return idx;
        }
        let domain = address.split('@').nth(1).unwrap_or_default();
        let tenant = self
            .tenants
            .iter()
            .position(|t| t.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)));
        let tenant = match tenant {
            Some(t) => t,
            None if !self.tenants.is_empty() => 0,
            None => {
                self.tenants.push(TenantState {
                    id: crate::world::DEFAULT_TENANT.to_owned(),
                    domains: vec![domain.to_owned()],
                    apps: Vec::new(),
                    groups: Vec::new(),
                });
                0
            }
        };
        self.add_mailbox(address, None, tenant)
    }

    pub(crate) fn mailbox(&self, idx: usize) -> Option<&MailboxState> {
        self.mailboxes.get(idx)
    }

    pub(crate) fn mailbox_mut(&mut self, idx: usize) -> Option<&mut MailboxState> {
        self.mailboxes.get_mut(idx)
    }

    /// A tenant by id or verified domain (case-insensitive).
    pub(crate) fn find_tenant(&self, id_or_domain: &str) -> Option<usize> {
        self.tenants.iter().position(|t| {
            t.id.eq_ignore_ascii_case(id_or_domain)
                || t.domains
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(id_or_domain))
        })
    }

    /// Every app registration with this client id, in any tenant.
    pub(crate) fn apps_mut(&mut self, client_id: &str) -> impl Iterator<Item = &mut AppState> {
        self.tenants
            .iter_mut()
            .flat_map(|t| t.apps.iter_mut())
            .filter(move |a| a.client_id.eq_ignore_ascii_case(client_id))
    }

    /// Forgets expired tokens once the table grows, so benchmarks do not leak.
    pub(crate) fn prune_tokens(&mut self, now: OffsetDateTime) {
        if self.tokens.len() > 10_000 {
            self.tokens.retain(|_, t| t.expires_at > now);
        }
    }
}

fn title_case(local: &str) -> String {
    local
        .split(['.', '_', '-'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map_or_else(String::new, |c| {
                c.to_uppercase().collect::<String>() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn paths_resolve_case_insensitively_and_create_parents() {
        let mut mb = MailboxState::new("a@contoso.com", None, 0);
        let f = mb
            .resolve_path("Inbox/Backup Reports/Archive 2025", true)
            .unwrap();
        assert_eq!(mb.path_of(f), "Inbox/Backup Reports/Archive 2025");
        assert_eq!(
            mb.resolve_path("inbox/backup reports/ARCHIVE 2025", false),
            Some(f)
        );
        assert_eq!(
            mb.resolve_path("deleteditems", false),
            mb.folder_by_id_or_name("DeletedItems")
        );
        assert!(mb.resolve_path("Nope", false).is_none());
        assert!(mb.is_visible(f));
        assert!(!mb.is_visible(mb.recoverable));
    }

    #[test]
    fn move_changes_rest_id_only_and_logs_for_delta() {
        let mut mb = MailboxState::new("a@contoso.com", None, 0);
        let inbox = mb.folder_by_id_or_name("inbox").unwrap();
        let archive = mb.folder_by_id_or_name("archive").unwrap();
        let k = mb.insert(inbox, &NewMessage::new("x"), now());
        let (before, _) = mb.info(k).unwrap();
        mb.move_to(k, archive, now());
        let (after, _) = mb.info(k).unwrap();
        assert_eq!(before.immutable_id, after.immutable_id);
        assert_ne!(before.rest_id, after.rest_id);
        assert_eq!(mb.resolve_message(&before.rest_id), None);
        assert_eq!(mb.resolve_message(&after.immutable_id), Some(k));
        assert_eq!(mb.folder(inbox).unwrap().removals.len(), 1);
        assert_eq!(after.folder_path, "Archive");
    }

    #[test]
    fn delete_soft_deletes_then_purges() {
        let mut mb = MailboxState::new("a@contoso.com", None, 0);
        let inbox = mb.folder_by_id_or_name("inbox").unwrap();
        let k = mb.insert(inbox, &NewMessage::new("x"), now());
        mb.delete(k, now());
        assert_eq!(mb.info(k).unwrap().0.folder_path, RECOVERABLE_ITEMS);
        mb.delete(k, now());
        assert!(mb.info(k).is_none());
    }
}
