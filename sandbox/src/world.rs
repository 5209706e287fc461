//! The builder of a sandbox's initial state: tenants, app registrations, mailboxes and messages.

use time::OffsetDateTime;

use crate::credentials::AppCertificate;

/// The default tenant id (a GUID); its domain is [`DEFAULT_DOMAIN`].
pub const DEFAULT_TENANT: &str = "6f1d3c52-8a4b-4e2f-9c7d-2b5e8f0a1c34";
/// The default tenant's verified domain.
pub const DEFAULT_DOMAIN: &str = "contoso.com";
/// The default app registration's client id (a GUID).
pub const DEFAULT_CLIENT_ID: &str = "3e9b7a21-5c4d-4f8e-a1b2-c3d4e5f60718";
/// The default app's client secret value (40 characters, shaped like an Entra secret).
pub const DEFAULT_SECRET: &str = "Xk48Q~Tr.3vH_pZq9nW2sLd-Ya6fGc8mBe1uJo7K";
/// The default secret's key id ("Secret ID" in the portal); sending it instead of the value
/// fails with AADSTS7000215 like Entra does.
pub const DEFAULT_SECRET_ID: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
/// The default app's application object id ("Object ID" in the portal): a GUID distinct from its
/// client id, as on Entra (docs/graph.md section 9).
pub const DEFAULT_APP_OBJECT_ID: &str = "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f";
/// The default app's display name.
pub const DEFAULT_APP_DISPLAY_NAME: &str = "Mailroom";
/// The delegated permissions the default app registration configures (docs/graph.md section
/// 13): the user's own mail and mail shared with them, sending, the user's profile, and the
/// OpenID Connect scopes, `offline_access` among them.
pub const DEFAULT_DELEGATED_PERMISSIONS: &[&str] = &[
    "Mail.Read",
    "Mail.ReadWrite",
    "Mail.Read.Shared",
    "Mail.ReadWrite.Shared",
    "Mail.Send",
    "User.Read",
    "offline_access",
    "openid",
    "profile",
    "email",
];
/// The default app's public-client ("Mobile and desktop applications") redirect URIs: the
/// loopback addresses, whose port Entra ignores when matching (docs/graph.md section 13).
pub const DEFAULT_PUBLIC_REDIRECT_URIS: &[&str] = &["http://localhost", "http://127.0.0.1"];

/// The initial state of a sandbox, built fluently and passed to [`crate::Sandbox::start`].
#[derive(Clone, Debug, Default)]
pub struct World {
    pub(crate) tenants: Vec<Tenant>,
}

impl World {
    /// An empty world: no tenants, apps or mailboxes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tenant.
    pub fn tenant(mut self, t: Tenant) -> Self {
        self.tenants.push(t);
        self
    }

    /// The default test world: tenant [`DEFAULT_TENANT`] (domain "contoso.com") with one app
    /// [`DEFAULT_CLIENT_ID`] (object id [`DEFAULT_APP_OBJECT_ID`], display name
    /// [`DEFAULT_APP_DISPLAY_NAME`]) holding secret [`DEFAULT_SECRET`] (key id
    /// [`DEFAULT_SECRET_ID`], expiring in a year), permission `Mail.ReadWrite`, scope all
    /// mailboxes; no certificate, no mailboxes. For delegated access (docs/graph.md section 13)
    /// it also configures [`DEFAULT_DELEGATED_PERMISSIONS`], the loopback redirect URIs
    /// [`DEFAULT_PUBLIC_REDIRECT_URIS`] as a public client, and allows public client flows
    /// (the device code grant without a secret).
    pub fn default_test() -> Self {
        let mut app = App::new(DEFAULT_CLIENT_ID)
            .object_id(DEFAULT_APP_OBJECT_ID)
            .display_name(DEFAULT_APP_DISPLAY_NAME)
            .secret(AppSecret::new(DEFAULT_SECRET).key_id(DEFAULT_SECRET_ID))
            .permissions(&["Mail.ReadWrite"])
            .delegated_permissions(DEFAULT_DELEGATED_PERMISSIONS)
            .allow_public_client_flows(true);
        for uri in DEFAULT_PUBLIC_REDIRECT_URIS {
            app = app.public_client_redirect_uri(uri);
        }
        Self::new().tenant(Tenant::new(DEFAULT_TENANT).domain(DEFAULT_DOMAIN).app(app))
    }

    /// The demo world: [`World::default_test`] plus `reports@contoso.com` (about 200 backup
    /// reports in "Inbox/Backup Reports", older ones in "Inbox/Backup Reports/Archive 2025") and
    /// `invoices@contoso.com` (100 invoices in "Inbox/Invoices", an empty "Inbox/Processed"),
    /// each with a few ordinary messages in the Inbox.
    pub fn demo() -> Self {
        crate::corpus::demo_world()
    }

    /// Adds a mailbox to the tenant whose id or domain is `tenant_id` (case-insensitive); a tenant
    /// with that id is created if there is none.
    pub fn mailbox(mut self, tenant_id: &str, m: Mailbox) -> Self {
        self.tenant_mut(tenant_id).mailboxes.push(m);
        self
    }

    /// Registers an app in the tenant whose id or domain is `tenant_id` (case-insensitive); a
    /// tenant with that id is created if there is none.
    pub fn app(mut self, tenant_id: &str, a: App) -> Self {
        self.tenant_mut(tenant_id).apps.push(a);
        self
    }

    /// Adds a group to the directory of the tenant whose id or domain is `tenant_id`; a tenant
    /// with that id is created if there is none.
    pub fn group(mut self, tenant_id: &str, g: Group) -> Self {
        self.tenant_mut(tenant_id).groups.push(g);
        self
    }

    /// The tenant whose id or domain is `tenant_id`, added if there is none.
    fn tenant_mut(&mut self, tenant_id: &str) -> &mut Tenant {
        let index = match self.tenants.iter().position(|t| t.matches(tenant_id)) {
            Some(i) => i,
            None => {
                self.tenants.push(Tenant::new(tenant_id));
                self.tenants.len() - 1
            }
        };
        &mut self.tenants[index]
    }
}

/// An Entra tenant: its id, domains, app registrations and mailboxes.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub(crate) id: String,
    pub(crate) domains: Vec<String>,
    pub(crate) apps: Vec<App>,
    pub(crate) mailboxes: Vec<Mailbox>,
    pub(crate) groups: Vec<Group>,
}

/// A directory group: users (by mailbox address) and nested groups (by id) as members.
#[derive(Clone, Debug)]
pub struct Group {
    pub(crate) id: String,
    pub(crate) display_name: String,
    pub(crate) members: Vec<String>,
    pub(crate) groups: Vec<String>,
}

impl Group {
    /// A group with this object id (normally a GUID) and display name, and no members.
    pub fn new(id: &str, display_name: &str) -> Self {
        Self {
            id: id.to_owned(),
            display_name: display_name.to_owned(),
            members: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// Adds the user owning this mailbox address as a direct member.
    pub fn member(mut self, address: &str) -> Self {
        self.members.push(address.to_ascii_lowercase());
        self
    }

    /// Adds another group (by id) as a nested member.
    pub fn nested(mut self, group_id: &str) -> Self {
        self.groups.push(group_id.to_owned());
        self
    }
}

impl Tenant {
    /// A tenant with the given id (normally a GUID) and nothing in it.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            domains: Vec::new(),
            apps: Vec::new(),
            mailboxes: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// Adds a verified domain; the token endpoint accepts it in place of the tenant id.
    pub fn domain(mut self, d: &str) -> Self {
        self.domains.push(d.to_owned());
        self
    }

    /// Registers an app in this tenant.
    pub fn app(mut self, a: App) -> Self {
        self.apps.push(a);
        self
    }

    /// Adds a mailbox to this tenant.
    pub fn mailbox(mut self, m: Mailbox) -> Self {
        self.mailboxes.push(m);
        self
    }

    /// Adds a group to this tenant's directory.
    pub fn group(mut self, g: Group) -> Self {
        self.groups.push(g);
        self
    }

    pub(crate) fn matches(&self, id_or_domain: &str) -> bool {
        self.id.eq_ignore_ascii_case(id_or_domain)
            || self
                .domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(id_or_domain))
    }
}

/// An app registration (application object and service principal) with its credentials
/// (client secrets and certificates), application permissions and mailbox scope.
#[derive(Clone, Debug)]
pub struct App {
    pub(crate) client_id: String,
    pub(crate) object_id: Option<String>,
    pub(crate) display_name: Option<String>,
    pub(crate) secrets: Vec<AppSecret>,
    pub(crate) certificates: Vec<AppCertificate>,
    pub(crate) permissions: Vec<String>,
    pub(crate) scope_only: Option<Vec<String>>,
    pub(crate) web_redirect_uris: Vec<String>,
    pub(crate) public_redirect_uris: Vec<String>,
    pub(crate) public_client_flows: bool,
    pub(crate) delegated_permissions: Vec<String>,
}

impl App {
    /// An app with no secret or certificate, permission `Mail.ReadWrite` and access to every
    /// mailbox; a random application object id and a display name made from the client id. No
    /// redirect URI and no delegated permission: delegated sign-in needs
    /// [`App::delegated_permissions`] and a redirect URI or public client flows.
    pub fn new(client_id: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            object_id: None,
            display_name: None,
            secrets: Vec::new(),
            certificates: Vec::new(),
            permissions: vec!["Mail.ReadWrite".to_owned()],
            scope_only: None,
            web_redirect_uris: Vec::new(),
            public_redirect_uris: Vec::new(),
            public_client_flows: false,
            delegated_permissions: Vec::new(),
        }
    }

    /// Adds a redirect URI of the "Web" platform: codes sent there are redeemed by a
    /// confidential client, with its secret or certificate (docs/graph.md section 13).
    pub fn redirect_uri(mut self, uri: &str) -> Self {
        self.web_redirect_uris.push(uri.to_owned());
        self
    }

    /// Adds a redirect URI of the "Mobile and desktop applications" platform: codes sent there
    /// are redeemed by a public client, which must send no credential (AADSTS700025 if it
    /// does). For `http://localhost` and `http://127.0.0.1` any port matches (docs/graph.md
    /// section 13).
    pub fn public_client_redirect_uri(mut self, uri: &str) -> Self {
        self.public_redirect_uris.push(uri.to_owned());
        self
    }

    /// "Allow public client flows": the device code grant may be redeemed without a
    /// credential (otherwise AADSTS7000218, as for a confidential client).
    pub fn allow_public_client_flows(mut self, allow: bool) -> Self {
        self.public_client_flows = allow;
        self
    }

    /// The delegated Graph permissions configured on the registration, by short name
    /// (`Mail.ReadWrite`, `offline_access` …): what the app may ask a user to consent to.
    pub fn delegated_permissions(mut self, p: &[&str]) -> Self {
        self.delegated_permissions = p.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Sets the application object id (`id` in Graph, "Object ID" in the portal; a GUID that is
    /// not the client id).
    pub fn object_id(mut self, id: &str) -> Self {
        self.object_id = Some(id.to_owned());
        self
    }

    /// Sets the application's `displayName`.
    pub fn display_name(mut self, name: &str) -> Self {
        self.display_name = Some(name.to_owned());
        self
    }

    /// Adds a client secret (an app may hold several); it works at once, with no propagation
    /// delay.
    pub fn secret(mut self, s: AppSecret) -> Self {
        self.secrets.push(s);
        self
    }

    /// Registers a certificate credential (`keyCredentials`); client assertions signed with its
    /// private key get tokens.
    pub fn certificate(mut self, c: AppCertificate) -> Self {
        self.certificates.push(c);
        self
    }

    /// Replaces the granted application permissions, e.g. `&["Mail.Read"]`. Besides the mail
    /// permissions, `Application.Read.All`, `Application.ReadWrite.All` and
    /// `Application.ReadWrite.OwnedBy` (on the app's own registration: the sandbox treats every
    /// app as an owner of itself) open the `/applications` API (docs/graph.md sections 8 and 9).
    pub fn permissions(mut self, p: &[&str]) -> Self {
        self.permissions = p.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Restricts the app to these mailboxes (an application access policy / RBAC scope); other
    /// mailboxes answer `403 ErrorAccessDenied` "Access to OData is disabled." (docs/graph.md
    /// section 8).
    pub fn scope_only(mut self, mailboxes: &[&str]) -> Self {
        self.scope_only = Some(mailboxes.iter().map(|s| (*s).to_owned()).collect());
        self
    }
}

/// A client secret (a `passwordCredential`): its value, key id ("Secret ID"), display name,
/// start and expiry.
#[derive(Clone)]
pub struct AppSecret {
    pub(crate) value: String,
    pub(crate) key_id: String,
    pub(crate) display_name: Option<String>,
    pub(crate) starts_at: OffsetDateTime,
    pub(crate) expires_at: OffsetDateTime,
}

impl std::fmt::Debug for AppSecret {
    // The value is a credential, even in a sandbox (house style point 15).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSecret")
            .field("value", &"<redacted>")
            .field("key_id", &self.key_id)
            .field("display_name", &self.display_name)
            .field("starts_at", &self.starts_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl AppSecret {
    /// A secret with this value, a random key id and no display name, valid from now until one
    /// year from now.
    pub fn new(value: &str) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            value: value.to_owned(),
            key_id: crate::ids::new_guid(),
            display_name: None,
            starts_at: now,
            expires_at: now.checked_add(time::Duration::days(365)).unwrap_or(now),
        }
    }

    /// Sets the key id (a GUID).
    pub fn key_id(mut self, id: &str) -> Self {
        self.key_id = id.to_owned();
        self
    }

    /// Sets the `displayName` ("Description" in the portal).
    pub fn display_name(mut self, name: &str) -> Self {
        self.display_name = Some(name.to_owned());
        self
    }

    /// Sets `startDateTime`; before it the token endpoint refuses the secret (sandbox clock).
    pub fn starts_at(mut self, t: OffsetDateTime) -> Self {
        self.starts_at = t;
        self
    }

    /// Sets the expiry (`endDateTime`), compared with the sandbox clock.
    pub fn expires_at(mut self, t: OffsetDateTime) -> Self {
        self.expires_at = t;
        self
    }
}

/// An Exchange Online mailbox to create, with folders and messages.
#[derive(Clone, Debug)]
pub struct Mailbox {
    pub(crate) address: String,
    pub(crate) display_name: Option<String>,
    pub(crate) ops: Vec<MailboxOp>,
    pub(crate) kind: MailboxKind,
    pub(crate) shares: Vec<ShareSpec>,
}

/// A share as the world builder records it; folder paths are resolved when the sandbox starts.
#[derive(Clone, Debug)]
pub(crate) struct ShareSpec {
    pub(crate) user: String,
    pub(crate) folder: Option<String>,
    pub(crate) write: bool,
}

/// What a user may do in a folder shared with them ([`Mailbox::folder_shared_with`]), as
/// Outlook's folder permissions allow ("read", or also "create", "modify" and "delete").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FolderAccess {
    /// Read the folder and its messages.
    Read,
    /// Read, and also move, change and delete its messages.
    ReadWrite,
}

/// What kind of directory user owns a mailbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum MailboxKind {
    /// A licensed user with a mailbox.
    #[default]
    User,
    /// A shared mailbox: a user object whose account is disabled (`accountEnabled: false`).
    Shared,
    /// A user without an Exchange Online licence: listed in the directory, but every mail
    /// request answers `404 MailboxNotEnabledForRESTAPI`.
    Unlicensed,
}

#[derive(Clone, Debug)]
pub(crate) enum MailboxOp {
    Folder(String),
    Message(String, Box<NewMessage>),
    Generate(String, usize),
}

impl Mailbox {
    /// A mailbox with the default folders (Inbox, Drafts, Sent Items, Deleted Items, Junk Email,
    /// Archive, Outbox) and no messages.
    pub fn new(address: &str) -> Self {
        Self {
            address: address.to_owned(),
            display_name: None,
            ops: Vec::new(),
            kind: MailboxKind::User,
            shares: Vec::new(),
        }
    }

    /// Gives `user` (an address) full access to this mailbox (Exchange's FullAccess, "delegated
    /// his entire mailbox" in Graph's words): with `Mail.Read.Shared` or `Mail.ReadWrite.Shared`
    /// a delegated token of that user reads it (and, with `.ReadWrite.Shared`, changes it) as
    /// `/users/{this address}/…` (docs/graph.md section 13).
    pub fn shared_with(mut self, user: &str) -> Self {
        self.shares.push(ShareSpec {
            user: user.to_owned(),
            folder: None,
            write: true,
        });
        self
    }

    /// Shares one folder (a path, created if missing) with `user`: only that folder and its
    /// messages are reachable with that user's delegated token, not the rest of the mailbox
    /// (docs/graph.md section 13).
    pub fn folder_shared_with(
        mut self,
        folder_path: &str,
        user: &str,
        access: FolderAccess,
    ) -> Self {
        self.shares.push(ShareSpec {
            user: user.to_owned(),
            folder: Some(folder_path.to_owned()),
            write: access == FolderAccess::ReadWrite,
        });
        self
    }

    /// Makes it a shared mailbox: its user account is disabled, as Exchange creates them.
    pub fn shared(mut self) -> Self {
        self.kind = MailboxKind::Shared;
        self
    }

    /// Makes its owner a user without an Exchange Online licence: listed by `/users`, but mail
    /// requests answer `404 MailboxNotEnabledForRESTAPI`.
    pub fn unlicensed(mut self) -> Self {
        self.kind = MailboxKind::Unlicensed;
        self
    }

    /// Sets the owner's display name (used in `To:` headers).
    pub fn display_name(mut self, name: &str) -> Self {
        self.display_name = Some(name.to_owned());
        self
    }

    /// Creates a folder path such as "Inbox/Backup Reports/Archive 2025", with any missing
    /// parents; display names are matched case-insensitively.
    pub fn folder(mut self, path: &str) -> Self {
        self.ops.push(MailboxOp::Folder(path.to_owned()));
        self
    }

    /// Adds a message to a folder path (created if missing).
    pub fn message(mut self, folder_path: &str, m: NewMessage) -> Self {
        self.ops
            .push(MailboxOp::Message(folder_path.to_owned(), Box::new(m)));
        self
    }

    /// Adds `n` realistic generated messages (varied senders, subjects, dates over recent weeks,
    /// some with small attachments) to a folder path; deterministic for a given mailbox, folder
    /// and `n`.
    pub fn messages(mut self, folder_path: &str, n: usize) -> Self {
        self.ops
            .push(MailboxOp::Generate(folder_path.to_owned(), n));
        self
    }
}

/// A display name and an SMTP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Address {
    pub(crate) name: String,
    pub(crate) address: String,
}

impl Address {
    pub(crate) fn new(name: &str, address: &str) -> Self {
        Self {
            name: name.to_owned(),
            address: address.to_owned(),
        }
    }
}

/// An attachment: its content is the bytes a client attached (`content`), or deterministic
/// pseudo-random bytes generated while streaming the MIME when there are none.
#[derive(Clone, Debug, Default)]
pub(crate) struct AttachmentSpec {
    pub(crate) filename: String,
    pub(crate) content_type: String,
    pub(crate) size: u64,
    /// What a client uploaded, when the sandbox kept it (see `graph::attachments`).
    pub(crate) content: Option<bytes::Bytes>,
    /// Hex SHA-256 of what a client uploaded (also when the bytes were not kept).
    pub(crate) sha256: Option<String>,
}

/// A message to add to a mailbox; unset properties get sensible defaults.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub(crate) subject: String,
    pub(crate) from: Address,
    pub(crate) to: Vec<Address>,
    pub(crate) cc: Vec<Address>,
    pub(crate) received: Option<OffsetDateTime>,
    pub(crate) body_text: Option<String>,
    pub(crate) attachments: Vec<AttachmentSpec>,
    pub(crate) is_read: bool,
    pub(crate) internet_message_id: Option<String>,
    pub(crate) generated_size: Option<u64>,
    pub(crate) importance: &'static str,
    /// What the Graph handlers set for drafts and delivered mail (no public builder).
    pub(crate) extra: MessageExtra,
}

/// The parts of a message only drafts and sent mail have (docs/graph.md section 12).
#[derive(Clone, Debug, Default)]
pub(crate) struct MessageExtra {
    pub(crate) is_draft: bool,
    pub(crate) bcc: Vec<Address>,
    pub(crate) reply_to: Vec<Address>,
    /// The HTML body as the client gave it (`body.contentType` html).
    pub(crate) body_html: Option<String>,
    /// `singleValueExtendedProperties`, ids as given.
    pub(crate) extended: Vec<crate::state::ExtendedProperty>,
    /// The conversation to join (a reply, or a delivered copy).
    pub(crate) conversation_id: Option<String>,
    /// `References` (the last one is also `In-Reply-To`).
    pub(crate) references: Vec<String>,
    /// When a delivered copy was sent (`sentDateTime`); a delivered copy also keeps its
    /// recipients as sent, even none in To.
    pub(crate) sent: Option<OffsetDateTime>,
}

impl NewMessage {
    /// A message with this subject from "Sandbox Sender" <sender@fabrikam.com> to the mailbox
    /// owner, received now (sandbox clock), unread, with a short text body and no attachments.
    pub fn new(subject: &str) -> Self {
        Self {
            subject: subject.to_owned(),
            from: Address::new("Sandbox Sender", "sender@fabrikam.com"),
            to: Vec::new(),
            cc: Vec::new(),
            received: None,
            body_text: None,
            attachments: Vec::new(),
            is_read: false,
            internet_message_id: None,
            generated_size: None,
            importance: "normal",
            extra: MessageExtra::default(),
        }
    }

    /// A message whose MIME is about `size` bytes, most of it one base64 attachment generated
    /// on the fly while streaming (never held in memory).
    pub fn generated(subject: &str, size: u64) -> Self {
        let mut m = Self::new(subject);
        m.generated_size = Some(size);
        m
    }

    /// Sets the sender (`From` and `Sender`).
    pub fn from(mut self, name: &str, address: &str) -> Self {
        self.from = Address::new(name, address);
        self
    }

    /// Adds a `To` recipient (default: the mailbox owner).
    pub fn to(mut self, name: &str, address: &str) -> Self {
        self.to.push(Address::new(name, address));
        self
    }

    /// Adds a `Cc` recipient.
    pub fn cc(mut self, name: &str, address: &str) -> Self {
        self.cc.push(Address::new(name, address));
        self
    }

    /// Sets `receivedDateTime` (and the `Date` header, a few seconds earlier).
    pub fn received(mut self, t: OffsetDateTime) -> Self {
        self.received = Some(t);
        self
    }

    /// Sets the plain-text body (an HTML alternative is derived from it).
    pub fn body_text(mut self, s: &str) -> Self {
        self.body_text = Some(s.to_owned());
        self
    }

    /// Adds an attachment of `size` bytes of deterministic pseudo-random content (seeded by the
    /// filename, size and subject), base64-encoded in the MIME.
    pub fn attachment(mut self, filename: &str, content_type: &str, size: usize) -> Self {
        self.attachments.push(AttachmentSpec {
            filename: filename.to_owned(),
            content_type: content_type.to_owned(),
            size: size as u64,
            ..AttachmentSpec::default()
        });
        self
    }

    /// Sets `isRead`.
    pub fn is_read(mut self, b: bool) -> Self {
        self.is_read = b;
        self
    }

    /// Sets `internetMessageId` (the `Message-ID` header), e.g. "<abc@fabrikam.com>".
    pub fn internet_message_id(mut self, s: &str) -> Self {
        self.internet_message_id = Some(s.to_owned());
        self
    }

    /// Marks the message high importance.
    pub fn high_importance(mut self) -> Self {
        self.importance = "high";
        self
    }
}
