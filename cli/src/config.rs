//! `mailroom.toml`: credentials and mailboxes for local mode, parsed with errors that name the
//! key, the line and what is allowed, and edited in place (comments survive) by `mailbox add`
//! and `mailbox remove`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use mailroom::adapters::local::{LocalCredential, SecretRef};
use mailroom::discovery::{DiscoverRule, Members};
use mailroom::domain::{AfterImport, MailboxAddress, MailboxConfig};
use serde::Deserialize;
use time::OffsetDateTime;
use toml::Spanned;

/// The default import interval of `mailroom serve`, as in the serverless deployment.
pub const DEFAULT_SCHEDULE_MINUTES: u64 = 15;

/// A delegated credential's scopes when the configuration lists none.
pub use mailroom::credentials::DEFAULT_DELEGATED_SCOPES;

/// How often discovery reads the directory again, as in the serverless deployment.
pub const DEFAULT_DISCOVER_HOURS: u64 = 24;

/// One credential as configured.
#[derive(Debug, Clone)]
pub struct CredentialConfig {
    pub local: LocalCredential,
    /// A mailbox the app must NOT be able to read (doctor's access-scope check).
    pub scope_probe: Option<MailboxAddress>,
}

/// A parsed and validated `mailroom.toml`.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub path: PathBuf,
    pub schedule: Duration,
    pub credentials: BTreeMap<String, CredentialConfig>,
    pub mailboxes: Vec<MailboxConfig>,
    /// `[[discover]]` rules: mailboxes found in the tenant's directory.
    pub discover: Vec<DiscoverRule>,
    /// How often `mailroom serve` applies the rules again.
    pub discover_every: Duration,
    /// `[events]`: where the event of every stored message is POSTed.
    pub events: Option<EventsConfig>,
}

/// `[events]`: an HTTP endpoint that hears of every stored message (docs/events.md).
#[derive(Debug, Clone)]
pub struct EventsConfig {
    pub url: url::Url,
    /// The signing secret: an environment variable or a file.
    pub secret: SecretRef,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    settings: RawSettings,
    #[serde(default)]
    credential: BTreeMap<String, RawCredential>,
    #[serde(default)]
    mailbox: Vec<RawMailbox>,
    #[serde(default)]
    discover: Vec<Spanned<RawDiscover>>,
    events: Option<Spanned<RawEvents>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    url: Spanned<String>,
    secret_env: Option<String>,
    secret_file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    schedule_minutes: Option<Spanned<u64>>,
    discover_hours: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    kind: Option<Spanned<String>>,
    scopes: Option<Spanned<Vec<String>>>,
    tenant_id: String,
    client_id: String,
    client_secret_env: Option<String>,
    client_secret_file: Option<String>,
    certificate_file: Option<String>,
    private_key_file: Option<String>,
    key_id: Option<String>,
    expires_at: Option<Spanned<toml::Value>>,
    scope_probe: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMailbox {
    address: Spanned<String>,
    credential: Spanned<String>,
    folder: Spanned<String>,
    action: Spanned<String>,
    processed_folder: Option<String>,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
}

/// A `[[discover]]` table as written (also what `mailroom discover add` builds from its flags).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscover {
    pub credential: String,
    pub users: Option<String>,
    pub group: Option<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub shared_mailboxes: bool,
    pub folder: String,
    pub action: String,
    pub processed_folder: Option<String>,
}

fn enabled_by_default() -> bool {
    true
}

impl LocalConfig {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> anyhow::Result<LocalConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow!(
                "no configuration at {}: run `mailroom init` to write an example, or pass --config",
                path.display()
            ),
            _ => anyhow!("cannot read {}: {e}", path.display()),
        })?;
        Self::parse(path, &text)
    }

    /// Parses `text` as the contents of `path` (relative secret files resolve against its
    /// directory).
    pub fn parse(path: &Path, text: &str) -> anyhow::Result<LocalConfig> {
        let at = |span: Range<usize>| format!("{}:{}", path.display(), line_of(text, span.start));
        reject_inline_secrets(path, text)?;
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            anyhow!(
                "{} is not valid: {}",
                path.display(),
                e.to_string().trim_end()
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));

        let mut credentials = BTreeMap::new();
        for (name, c) in raw.credential {
            let delegated = match c.kind.as_ref().map(|k| (k.get_ref().as_str(), k.span())) {
                None | Some(("app", _)) => false,
                Some(("delegated", _)) => true,
                Some((other, span)) => bail!(
                    "{}: [credential.{name}] kind must be \"app\" (a client secret or certificate) or \"delegated\" (a person signs in), not \"{other}\"",
                    at(span)
                ),
            };
            let delegated_scopes = match (delegated, c.scopes) {
                (false, None) => None,
                (false, Some(scopes)) => bail!(
                    "{}: [credential.{name}] has scopes, which only a delegated credential takes (kind = \"delegated\"); an app credential has the app registration's application permissions",
                    at(scopes.span())
                ),
                (true, None) => Some(
                    DEFAULT_DELEGATED_SCOPES
                        .iter()
                        .map(|s| (*s).to_owned())
                        .collect(),
                ),
                (true, Some(scopes)) => {
                    let span = scopes.span();
                    let scopes = scopes.into_inner();
                    if let Some(bad) = scopes
                        .iter()
                        .find(|s| s.trim().is_empty() || s.contains([' ', ',']))
                    {
                        bail!(
                            "{}: [credential.{name}] scopes: \"{bad}\" is not one scope; write each as its own string, e.g. scopes = [\"Mail.ReadWrite\", \"offline_access\"]",
                            at(span)
                        );
                    }
                    if scopes.is_empty() {
                        bail!(
                            "{}: [credential.{name}] scopes is empty; list the delegated permissions, e.g. scopes = [\"Mail.ReadWrite\", \"offline_access\"]",
                            at(span)
                        );
                    }
                    Some(scopes)
                }
            };
            let secret = match (
                c.client_secret_env,
                c.client_secret_file,
                c.certificate_file,
                c.private_key_file,
            ) {
                (Some(var), None, None, None) => SecretRef::Env(var),
                (None, Some(file), None, None) => SecretRef::File(base.join(file)),
                // A public client: the person's sign-in is the only credential.
                (None, None, None, None) if delegated => SecretRef::None,
                (None, None, Some(certificate), Some(private_key)) => SecretRef::Certificate {
                    certificate: base.join(certificate),
                    private_key: base.join(private_key),
                },
                (None, None, Some(_), None) => bail!(
                    "{}: [credential.{name}] has certificate_file but no private_key_file; add private_key_file, the certificate's private key as PKCS#8 PEM",
                    path.display()
                ),
                (None, None, None, Some(_)) => bail!(
                    "{}: [credential.{name}] has private_key_file but no certificate_file; add certificate_file, the certificate registered on the app as PEM",
                    path.display()
                ),
                _ => bail!(
                    "{}: [credential.{name}] needs exactly one of client_secret_env (an environment variable holding the secret's Value), client_secret_file (a file holding it), or certificate_file with private_key_file (the certificate registered on the app and its PKCS#8 private key, as PEM files)",
                    path.display()
                ),
            };
            let expires_at = c
                .expires_at
                .map(|v| {
                    let span = v.span();
                    let raw = match v.into_inner() {
                        toml::Value::String(s) => s,
                        toml::Value::Datetime(d) => d.to_string(),
                        other => other.to_string(),
                    };
                    OffsetDateTime::parse(&raw, &time::format_description::well_known::Rfc3339)
                        .map_err(|_| {
                            anyhow!(
                                "{}: [credential.{name}] expires_at must be a date-time such as 2027-06-30T00:00:00Z, not {raw}",
                                at(span)
                            )
                        })
                })
                .transpose()?;
            let scope_probe = c
                .scope_probe
                .map(|p| {
                    let span = p.span();
                    MailboxAddress::parse(p.get_ref())
                        .map_err(|e| anyhow!("{}: [credential.{name}] scope_probe: {e}", at(span)))
                })
                .transpose()?;
            credentials.insert(
                name,
                CredentialConfig {
                    local: LocalCredential {
                        tenant_id: c.tenant_id,
                        client_id: c.client_id,
                        secret,
                        key_id: c.key_id,
                        expires_at,
                        delegated_scopes,
                    },
                    scope_probe,
                },
            );
        }

        let mut mailboxes: Vec<MailboxConfig> = Vec::new();
        for m in raw.mailbox {
            let address = MailboxAddress::parse(m.address.get_ref())
                .map_err(|e| anyhow!("{}: [[mailbox]] address: {e}", at(m.address.span())))?;
            let action = AfterImport::from_parts(m.action.get_ref(), m.processed_folder.as_deref())
                .map_err(|e| anyhow!("{}: [[mailbox]] {address}: {e}", at(m.action.span())))?;
            let credential = m.credential.get_ref().clone();
            declared(&credentials, &credential)
                .map_err(|e| anyhow!("{}: [[mailbox]] {address}: {e}", at(m.credential.span())))?;
            let folder = m.folder.get_ref().trim().to_owned();
            if folder.is_empty() {
                bail!(
                    "{}: [[mailbox]] {address}: folder is empty; use a path such as Inbox/Backup Reports",
                    at(m.folder.span())
                );
            }
            if folder == "*" {
                bail!(
                    "{}: [[mailbox]] {address}: folder = \"*\" is for [[discover]] rules; name one folder, such as Inbox",
                    at(m.folder.span())
                );
            }
            if mailboxes
                .iter()
                .any(|c| c.address == address && c.folder.eq_ignore_ascii_case(&folder))
            {
                bail!(
                    "{}: [[mailbox]] {address} folder '{folder}' is configured twice",
                    at(m.address.span())
                );
            }
            mailboxes.push(MailboxConfig {
                address,
                folder,
                action,
                credential,
                enabled: m.enabled,
                discovered_by: None,
            });
        }

        let mut discover: Vec<DiscoverRule> = Vec::new();
        for d in raw.discover {
            let here = at(d.span());
            let rule = declared(&credentials, &d.get_ref().credential)
                .and_then(|()| d.into_inner().into_rule())
                .map_err(|e| anyhow!("{here}: [[discover]] {e}"))?;
            if let Some(same) = discover.iter().find(|r| r.id() == rule.id()) {
                bail!(
                    "{here}: [[discover]] {} is there twice (same credential, users and folder); merge the two",
                    same.id()
                );
            }
            discover.push(rule);
        }

        let events = raw
            .events
            .map(|e| {
                let here = at(e.span());
                let e = e.into_inner();
                let url = url::Url::parse(e.url.get_ref())
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| {
                        anyhow!(
                            "{}: [events] url must be an http:// or https:// URL, not '{}'",
                            at(e.url.span()),
                            e.url.get_ref()
                        )
                    })?;
                let secret = match (e.secret_env, e.secret_file) {
                    (Some(var), None) => SecretRef::Env(var),
                    (None, Some(file)) => SecretRef::File(base.join(file)),
                    _ => bail!(
                        "{here}: [events] needs exactly one of secret_env (an environment variable holding the signing secret) or secret_file (a file holding it)"
                    ),
                };
                Ok(EventsConfig { url, secret })
            })
            .transpose()?;
        let discover_hours = match raw.settings.discover_hours {
            None => DEFAULT_DISCOVER_HOURS,
            Some(v) if (1..=24 * 7).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => bail!(
                "{}: [settings] discover_hours must be from 1 to 168 (a week), not {}",
                at(v.span()),
                v.get_ref()
            ),
        };
        let schedule_minutes = match raw.settings.schedule_minutes {
            None => DEFAULT_SCHEDULE_MINUTES,
            Some(v) if (1..=1440).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => bail!(
                "{}: [settings] schedule_minutes must be from 1 to 1440, not {}",
                at(v.span()),
                v.get_ref()
            ),
        };
        Ok(LocalConfig {
            path: path.to_owned(),
            schedule: Duration::from_secs(schedule_minutes * 60),
            credentials,
            mailboxes,
            discover,
            discover_every: Duration::from_secs(discover_hours * 3600),
            events,
        })
    }

    pub fn credential(&self, name: &str) -> anyhow::Result<&CredentialConfig> {
        self.credentials.get(name).ok_or_else(|| {
            anyhow!(
                "credential '{name}' is not declared in {}; declared: {}",
                self.path.display(),
                names_or(
                    self.credentials.keys(),
                    "none (add a [credential.NAME] table)"
                )
            )
        })
    }
}

/// Checks that the credential `name` is declared; the error lists those that are.
fn declared(credentials: &BTreeMap<String, CredentialConfig>, name: &str) -> anyhow::Result<()> {
    if credentials.contains_key(name) {
        return Ok(());
    }
    bail!(
        "credential '{name}' is not declared; declared: {}",
        names_or(credentials.keys(), "none (add a [credential.NAME] table)")
    )
}

/// `names` joined with commas, for an error that lists what exists; `none` when there are none.
pub fn names_or<S: AsRef<str>>(names: impl IntoIterator<Item = S>, none: &str) -> String {
    let names: Vec<S> = names.into_iter().collect();
    if names.is_empty() {
        return none.to_owned();
    }
    names
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<&str>>()
        .join(", ")
}

impl RawDiscover {
    /// The rule, validated; errors name the key (the caller adds where).
    pub fn into_rule(self) -> anyhow::Result<DiscoverRule> {
        let members = match (self.users, self.group) {
            (Some(users), None) if users.trim().eq_ignore_ascii_case("all") => Members::All,
            (Some(users), None) => bail!(
                "users = \"{users}\": the only value is \"all\" (every mail-enabled user); for some users, name a group: group = \"<group id or name>\""
            ),
            (None, Some(group)) if !group.trim().is_empty() => {
                Members::Group(group.trim().to_owned())
            }
            (None, Some(_)) => bail!("group is empty; give a group's object id or display name"),
            (Some(_), Some(_)) => bail!(
                "has both users and group; use users = \"all\" for every user, or group = \"…\" for a group's members"
            ),
            (None, None) => bail!(
                "does not say whose mailboxes: add users = \"all\" (every mail-enabled user) or group = \"<group id or name>\""
            ),
        };
        let folder = self.folder.trim().to_owned();
        if folder.is_empty() {
            bail!("folder is empty; use a path such as Inbox");
        }
        let action = AfterImport::from_parts(&self.action, self.processed_folder.as_deref())?;
        if folder == MailboxConfig::EVERY_FOLDER
            && !matches!(action, AfterImport::None | AfterImport::MarkRead)
        {
            bail!(
                "folder = \"*\" (every folder) takes action \"none\" or \"mark_read\", not \"{}\": moving or deleting the mail of every folder is not an archive",
                action.name()
            );
        }
        if self.exclude.iter().any(|p| p.trim().is_empty()) {
            bail!(
                "exclude has an empty pattern; give addresses or patterns such as \"*-admin@contoso.com\""
            );
        }
        Ok(DiscoverRule {
            credential: self.credential,
            members,
            exclude: self.exclude,
            shared_mailboxes: self.shared_mailboxes,
            folder,
            action,
        })
    }
}

/// Secrets belong in an environment variable or a file, never in the configuration (which gets
/// copied, committed and pasted into tickets).
fn reject_inline_secrets(path: &Path, text: &str) -> anyhow::Result<()> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Ok(()); // the full parse reports syntax errors with their line
    };
    if let Some(toml::Value::Table(credentials)) = table.get("credential") {
        for (name, c) in credentials {
            if c.get("client_secret").is_some() {
                bail!(
                    "{}: [credential.{name}] has client_secret inline; put the secret's Value in an environment variable (client_secret_env = \"MAILROOM_{}_SECRET\") or a file (client_secret_file = \"secret.txt\") instead",
                    path.display(),
                    name.to_ascii_uppercase()
                );
            }
            if c.get("private_key_pem").is_some() || c.get("certificate_pem").is_some() {
                bail!(
                    "{}: [credential.{name}] has a PEM inline; put the certificate and its private key in files instead (certificate_file = \"app-cert.pem\", private_key_file = \"app-key.pem\")",
                    path.display()
                );
            }
        }
    }
    Ok(())
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Appends a `[[discover]]` rule to the file, keeping everything else.
pub fn append_discover(path: &Path, rule: &DiscoverRule) -> anyhow::Result<()> {
    let mut entry = toml_edit::Table::new();
    entry["credential"] = toml_edit::value(rule.credential.as_str());
    match &rule.members {
        Members::All => entry["users"] = toml_edit::value("all"),
        Members::Group(group) => entry["group"] = toml_edit::value(group.as_str()),
    }
    if !rule.exclude.is_empty() {
        entry["exclude"] = toml_edit::value(rule.exclude.iter().collect::<toml_edit::Array>());
    }
    if rule.shared_mailboxes {
        entry["shared_mailboxes"] = toml_edit::value(true);
    }
    entry["folder"] = toml_edit::value(rule.folder.as_str());
    entry["action"] = toml_edit::value(rule.action.name());
    if let Some(processed) = rule.action.processed_folder() {
        entry["processed_folder"] = toml_edit::value(processed);
    }
    edit_tables(path, "discover", |tables| {
        tables.push(entry);
        true
    })
}

/// Removes the `[[discover]]` rules with this id; returns how many.
pub fn remove_discover(path: &Path, id: &str) -> anyhow::Result<usize> {
    let rules = LocalConfig::load(path)?.discover;
    let mut removed = 0;
    edit_tables(path, "discover", |tables| {
        // `[[discover]]` tables parse in file order, one rule each.
        for (index, rule) in rules.iter().enumerate().rev() {
            if rule.id() == id {
                tables.remove(index);
                removed += 1;
            }
        }
        removed > 0
    })?;
    Ok(removed)
}

/// Appends a `[[mailbox]]` entry to the file, keeping everything else (comments too).
pub fn append_mailbox(path: &Path, config: &MailboxConfig) -> anyhow::Result<()> {
    let mut entry = toml_edit::Table::new();
    entry["address"] = toml_edit::value(config.address.as_str());
    entry["credential"] = toml_edit::value(config.credential.as_str());
    entry["folder"] = toml_edit::value(config.folder.as_str());
    entry["action"] = toml_edit::value(config.action.name());
    if let Some(processed) = config.action.processed_folder() {
        entry["processed_folder"] = toml_edit::value(processed);
    }
    if !config.enabled {
        entry["enabled"] = toml_edit::value(false);
    }
    edit_tables(path, "mailbox", |tables| {
        tables.push(entry);
        true
    })
}

/// Removes the `[[mailbox]]` entries of `address` (only `folder`, if given); returns how many.
pub fn remove_mailbox(
    path: &Path,
    address: &MailboxAddress,
    folder: Option<&str>,
) -> anyhow::Result<usize> {
    let mut removed = 0;
    edit_tables(path, "mailbox", |tables| {
        let before = tables.len();
        tables.retain(|t| {
            let same_address = t
                .get("address")
                .and_then(|v| v.as_str())
                .and_then(|a| MailboxAddress::parse(a).ok())
                .is_some_and(|a| &a == address);
            let same_folder = folder.is_none_or(|f| {
                t.get("folder")
                    .and_then(|v| v.as_str())
                    .is_some_and(|x| x.trim().eq_ignore_ascii_case(f.trim()))
            });
            !(same_address && same_folder)
        });
        removed = before - tables.len();
        removed > 0
    })?;
    Ok(removed)
}

/// Edits the array of tables `key` (`[[key]]`) of the file in place, keeping everything else
/// (comments too); `edit` returns whether it changed anything, and only then is the file written.
fn edit_tables(
    path: &Path,
    key: &str,
    edit: impl FnOnce(&mut toml_edit::ArrayOfTables) -> bool,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut document: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let item = document
        .entry(key)
        .or_insert(toml_edit::Item::ArrayOfTables(
            toml_edit::ArrayOfTables::new(),
        ));
    let Some(tables) = item.as_array_of_tables_mut() else {
        bail!(
            "{}: `{key}` must be a list of [[{key}]] tables",
            path.display()
        );
    };
    if edit(tables) {
        write_atomically(path, &document.to_string())?;
    }
    Ok(())
}

/// Writes through a temporary file and a rename, so an interrupted write never leaves half a
/// configuration.
pub fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing to {}", dir.display()))?;
    std::io::Write::write_all(&mut temp, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    temp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The commented example `mailroom init` writes.
pub const EXAMPLE: &str = r#"# Mailroom local configuration. Reference: README.md, "Configuration".
#
# Credentials: one table per Entra app registration. The secret's Value (not its Secret ID) comes
# from an environment variable or a file, never from this file.
[credential.contoso]
tenant_id = "00000000-0000-0000-0000-000000000000"
client_id = "11111111-1111-1111-1111-111111111111"
client_secret_env = "MAILROOM_CONTOSO_SECRET"   # or: client_secret_file = "secret.txt"
# or a certificate: certificate_file = "app-cert.pem" and private_key_file = "app-key.pem" (PKCS#8)
# expires_at = "2027-06-30T00:00:00Z"           # when the secret expires (Entra shows it)
# scope_probe = "ceo@contoso.com"               # a mailbox the app must NOT be able to read

# Mailboxes: one [[mailbox]] per watched folder.
#   action = "move"       move to processed_folder after storing (needs Mail.ReadWrite)
#            "mark_read"  mark read, leave in place (needs Mail.ReadWrite)
#            "delete"     move to Deleted Items (needs Mail.ReadWrite)
#            "none"       leave untouched: a read-only archive (Mail.Read is enough)
[[mailbox]]
address = "reports@contoso.com"
credential = "contoso"
folder = "Inbox/Backup Reports"
action = "move"
processed_folder = "Inbox/Processed"

# Discovery: every user's mailbox of a tenant (or a group's), found in its directory. Needs
# User.Read.All (users = "all") or GroupMember.Read.All (group = ...) on the app.
# Read again daily by `mailroom serve` and on demand by `mailroom discover [--dry-run]`; a user that
# is gone or excluded is disabled, never deleted.
# [[discover]]
# credential = "contoso"
# users = "all"                     # or: group = "Finance" (a group's id or display name)
# exclude = ["ceo@contoso.com", "*-admin@contoso.com"]   # addresses or patterns (* and ?)
# shared_mailboxes = false          # true: shared mailboxes too
# folder = "Inbox"                 # or "*": every folder (action none or mark_read)
# action = "none"

# Events: every stored message POSTed as JSON to an endpoint of yours, signed with HMAC-SHA256
# (docs/events.md); events wait while it is down.
# [events]
# url = "https://hooks.example.com/mailroom"
# secret_env = "MAILROOM_EVENTS_SECRET"   # or: secret_file = "events-secret.txt"

# [settings]
# schedule_minutes = 15   # how often `mailroom serve` imports
# discover_hours = 24     # how often `mailroom serve` applies [[discover]] again
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<LocalConfig> {
        LocalConfig::parse(Path::new("/etc/mailroom/mailroom.toml"), text)
    }

    #[test]
    fn a_delegated_credential_has_scopes_and_may_have_no_secret() {
        let config = parse(
            "[credential.alice]\nkind = \"delegated\"\ntenant_id = \"t\"\nclient_id = \"c\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let alice = &config.credentials["alice"].local;
        assert_eq!(alice.secret, SecretRef::None);
        assert_eq!(
            alice.delegated_scopes.as_deref(),
            Some(&["Mail.ReadWrite".to_owned(), "offline_access".to_owned()][..])
        );
        let shared = parse(
            "[credential.alice]\nkind = \"delegated\"\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_env = \"S\"\nscopes = [\"Mail.ReadWrite.Shared\", \"offline_access\"]\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            shared.credentials["alice"].local.secret,
            SecretRef::Env("S".into())
        );
        let error = |text: &str| parse(text).err().map(|e| e.to_string()).unwrap_or_default();
        let kind = error("[credential.a]\nkind = \"user\"\ntenant_id = \"t\"\nclient_id = \"c\"\n");
        assert!(kind.contains("kind must be \"app\""), "{kind}");
        let app_scopes = error(
            "[credential.a]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_env = \"S\"\nscopes = [\"Mail.Read\"]\n",
        );
        assert!(
            app_scopes.contains("only a delegated credential"),
            "{app_scopes}"
        );
        let joined = error(
            "[credential.a]\nkind = \"delegated\"\ntenant_id = \"t\"\nclient_id = \"c\"\nscopes = [\"Mail.Read,offline_access\"]\n",
        );
        assert!(joined.contains("is not one scope"), "{joined}");
        let no_secret = error("[credential.a]\ntenant_id = \"t\"\nclient_id = \"c\"\n");
        assert!(no_secret.contains("needs exactly one of"), "{no_secret}");
    }

    #[test]
    fn events_parse_and_their_errors_say_what_to_write() {
        let events = |table: &str| parse(&format!("{EXAMPLE}\n[events]\n{table}"));
        let config =
            events("url = \"https://hooks.example.com/m\"\nsecret_file = \"s.txt\"").unwrap();
        let configured = config.events.unwrap();
        assert_eq!(configured.url.as_str(), "https://hooks.example.com/m");
        assert_eq!(
            configured.secret,
            SecretRef::File(PathBuf::from("/etc/mailroom/s.txt"))
        );
        let err = events("url = \"ftp://x\"\nsecret_env = \"S\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[events] url must be an http:// or https:// URL"),
            "{err}"
        );
        let err = events("url = \"https://x\"").unwrap_err().to_string();
        assert!(err.contains("exactly one of secret_env"), "{err}");
        let err = events("url = \"https://x\"\nsecret = \"inline\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("secret"), "{err}");
        assert!(parse(EXAMPLE).unwrap().events.is_none());
    }

    #[test]
    fn the_example_parses() {
        let config = parse(EXAMPLE).unwrap();
        assert_eq!(config.mailboxes.len(), 1);
        assert_eq!(config.schedule, Duration::from_secs(900));
        let credential = &config.credentials["contoso"].local;
        assert!(matches!(&credential.secret, SecretRef::Env(v) if v == "MAILROOM_CONTOSO_SECRET"));
    }

    #[test]
    fn errors_name_the_key_the_line_and_what_is_allowed() {
        let bad_action = EXAMPLE.replace(r#"action = "move""#, r#"action = "archive""#);
        let err = parse(&bad_action).unwrap_err().to_string();
        assert!(err.contains("mailroom.toml:22"), "{err}");
        assert!(err.contains("move, mark_read, delete, none"), "{err}");

        let unknown = EXAMPLE.replace("folder = ", "foldr = ");
        let err = parse(&unknown).unwrap_err().to_string();
        assert!(err.contains("foldr"), "{err}");
        assert!(err.contains("line"), "{err}");

        let missing = EXAMPLE.replace(r#"processed_folder = "Inbox/Processed""#, "");
        let err = parse(&missing).unwrap_err().to_string();
        assert!(err.contains("processed_folder"), "{err}");

        let undeclared = EXAMPLE.replace(r#"credential = "contoso""#, r#"credential = "fabrikam""#);
        let err = parse(&undeclared).unwrap_err().to_string();
        assert!(
            err.contains("'fabrikam' is not declared; declared: contoso"),
            "{err}"
        );
    }

    const DISCOVER: &str = r#"
[[discover]]
credential = "contoso"
users = "all"
exclude = ["ceo@contoso.com", "*-admin@contoso.com"]
shared_mailboxes = true
folder = "Inbox"
action = "none"

[[discover]]
credential = "contoso"
group = "Finance"
folder = "Inbox/Invoices"
action = "move"
processed_folder = "Inbox/Done"
"#;

    #[test]
    fn discover_rules_parse_with_their_defaults() {
        let config = parse(&format!("{EXAMPLE}{DISCOVER}")).unwrap();
        assert_eq!(config.discover.len(), 2);
        let all = &config.discover[0];
        assert_eq!(all.members, Members::All);
        assert_eq!(all.exclude, ["ceo@contoso.com", "*-admin@contoso.com"]);
        assert!(all.shared_mailboxes);
        assert_eq!(all.id(), "contoso/all/Inbox");
        let group = &config.discover[1];
        assert_eq!(group.members, Members::Group("Finance".into()));
        assert!(group.exclude.is_empty() && !group.shared_mailboxes);
        assert_eq!(group.action.processed_folder(), Some("Inbox/Done"));
        assert_eq!(config.discover_every, Duration::from_secs(24 * 3600));
        let every = DISCOVER.replacen(r#"folder = "Inbox""#, r#"folder = "*""#, 1);
        let config = parse(&format!("{EXAMPLE}{every}")).unwrap();
        assert_eq!(config.discover[0].id(), "contoso/all/*");
    }

    #[test]
    fn discover_errors_name_the_line_and_what_to_write() {
        let cases = [
            (
                r#"users = "all""#,
                r#"users = "everyone""#,
                "the only value is \"all\"",
            ),
            (r#"users = "all""#, "", "does not say whose mailboxes"),
            (
                r#"users = "all""#,
                "users = \"all\"\ngroup = \"x\"",
                "both users and group",
            ),
            (
                "folder = \"Inbox\"\naction = \"none\"",
                "folder = \"*\"\naction = \"delete\"",
                "takes action \"none\" or \"mark_read\", not \"delete\"",
            ),
            (r#"folder = "Inbox""#, r#"folder = " ""#, "folder is empty"),
            (
                r#"action = "none""#,
                r#"action = "keep""#,
                "move, mark_read, delete, none",
            ),
            (
                r#"credential = "contoso"
users"#,
                r#"credential = "fabrikam"
users"#,
                "'fabrikam' is not declared",
            ),
            (
                r#"shared_mailboxes = true"#,
                r#"shared = true"#,
                "unknown field",
            ),
        ];
        for (from, to, expected) in cases {
            let text = format!("{EXAMPLE}{}", DISCOVER.replacen(from, to, 1));
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{to}: {err}");
            if !expected.contains("unknown field") {
                let header = line_of(&text, text.find("\n[[discover]]\n").unwrap() + 1);
                let here = format!("mailroom.toml:{header}: [[discover]] ");
                assert!(err.contains(&here), "{to}: {err}");
            }
        }
        let twice = format!(
            "{EXAMPLE}{DISCOVER}{}",
            &DISCOVER[..DISCOVER
                .find("[[discover]]\ncredential = \"contoso\"\ngroup")
                .unwrap()]
        );
        let err = parse(&twice).unwrap_err().to_string();
        assert!(err.contains("contoso/all/Inbox is there twice"), "{err}");
        let hours = EXAMPLE
            .replace("# discover_hours = 24", "discover_hours = 0")
            .replace("# [settings]", "[settings]");
        let err = parse(&hours).unwrap_err().to_string();
        assert!(
            err.contains("discover_hours must be from 1 to 168"),
            "{err}"
        );
    }

    #[test]
    fn discover_rules_are_added_and_removed_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mailroom.toml");
        std::fs::write(&path, format!("{EXAMPLE}{DISCOVER}")).unwrap();
        let rules = LocalConfig::load(&path).unwrap().discover;
        let added = DiscoverRule {
            members: Members::Group("Sales".into()),
            ..rules[0].clone()
        };
        append_discover(&path, &added).unwrap();
        let loaded = LocalConfig::load(&path).unwrap();
        assert_eq!(loaded.discover.len(), 3);
        assert_eq!(loaded.discover[2], added);
        assert_eq!(remove_discover(&path, &rules[0].id()).unwrap(), 1);
        let left: Vec<_> = LocalConfig::load(&path)
            .unwrap()
            .discover
            .iter()
            .map(DiscoverRule::id)
            .collect();
        assert_eq!(left, [rules[1].id(), added.id()]);
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("# Mailboxes: one [[mailbox]]")
        );
        assert_eq!(remove_discover(&path, "nope").unwrap(), 0);
    }

    #[test]
    fn an_inline_secret_is_refused_with_the_alternatives() {
        let inline = EXAMPLE.replace(
            r#"client_secret_env = "MAILROOM_CONTOSO_SECRET""#,
            r#"client_secret = "Xk48Q~not-here""#,
        );
        let err = parse(&inline).unwrap_err().to_string();
        assert!(err.contains("client_secret_env"), "{err}");
        assert!(!err.contains("Xk48Q"), "{err}");
    }

    #[test]
    fn relative_secret_files_resolve_next_to_the_config() {
        let text = EXAMPLE.replace(
            r#"client_secret_env = "MAILROOM_CONTOSO_SECRET""#,
            r#"client_secret_file = "secret.txt""#,
        );
        let config = parse(&text).unwrap();
        assert!(matches!(
            &config.credentials["contoso"].local.secret,
            SecretRef::File(p) if p == Path::new("/etc/mailroom/secret.txt")
        ));
    }

    #[test]
    fn a_certificate_is_two_files_next_to_the_config() {
        let text = EXAMPLE.replace(
            r#"client_secret_env = "MAILROOM_CONTOSO_SECRET""#,
            "certificate_file = \"app-cert.pem\"\nprivate_key_file = \"keys/app-key.pem\"\nkey_id = \"k-1\"",
        );
        let config = parse(&text).unwrap();
        let credential = &config.credentials["contoso"].local;
        assert_eq!(
            credential.secret,
            SecretRef::Certificate {
                certificate: "/etc/mailroom/app-cert.pem".into(),
                private_key: "/etc/mailroom/keys/app-key.pem".into(),
            }
        );
        assert_eq!(credential.key_id.as_deref(), Some("k-1"));

        let half = EXAMPLE.replace(
            r#"client_secret_env = "MAILROOM_CONTOSO_SECRET""#,
            r#"certificate_file = "app-cert.pem""#,
        );
        let err = parse(&half).unwrap_err().to_string();
        assert!(err.contains("no private_key_file"), "{err}");

        let both = EXAMPLE.replace(
            r#"client_secret_env = "MAILROOM_CONTOSO_SECRET""#,
            "client_secret_env = \"S\"\ncertificate_file = \"c.pem\"\nprivate_key_file = \"k.pem\"",
        );
        let err = parse(&both).unwrap_err().to_string();
        assert!(
            err.contains("needs exactly one of client_secret_env")
                && err.contains("certificate_file with private_key_file"),
            "{err}"
        );

        let inline = EXAMPLE.replace(
            r#"client_secret_env = "MAILROOM_CONTOSO_SECRET""#,
            "private_key_pem = \"-----BEGIN PRIVATE KEY-----\"",
        );
        let err = parse(&inline).unwrap_err().to_string();
        assert!(err.contains("private_key_file"), "{err}");
        assert!(!err.contains("BEGIN"), "{err}");
    }

    #[test]
    fn add_and_remove_keep_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mailroom.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        let config = MailboxConfig {
            address: MailboxAddress::parse("invoices@contoso.com").unwrap(),
            folder: "Inbox/Invoices".into(),
            action: AfterImport::Delete,
            credential: "contoso".into(),
            enabled: true,
            discovered_by: None,
        };
        append_mailbox(&path, &config).unwrap();
        let loaded = LocalConfig::load(&path).unwrap();
        assert_eq!(loaded.mailboxes.len(), 2);
        assert_eq!(loaded.mailboxes[1], config);
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("# Mailboxes: one [[mailbox]]")
        );

        assert_eq!(remove_mailbox(&path, &config.address, None).unwrap(), 1);
        assert_eq!(LocalConfig::load(&path).unwrap().mailboxes.len(), 1);
        assert_eq!(remove_mailbox(&path, &config.address, None).unwrap(), 0);
    }
}

/// Hostile input (issue 16; the rest is in shared/tests/hostile.rs): any text as
/// `mailroom.toml` parses or fails with an error naming the file, never a panic.
#[cfg(test)]
mod hostile {
    use std::sync::atomic::{AtomicU64, Ordering};

    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    use super::*;

    const PATH: &str = "/etc/mailroom/mailroom.toml";

    /// Lines a configuration may hold, valid or nearly: every table, keys of every type, values
    /// out of range, inline secrets, deep nesting.
    const FRAGMENTS: &[&str] = &[
        "[credential.x]",
        "[credential.\"a.b\"]",
        "[credential.\"\u{202E}\"]",
        "[[mailbox]]",
        "[mailbox]",
        "[[discover]]",
        "[events]",
        "[[events]]",
        "[settings]",
        "[unknown]",
        "tenant_id = \"t\"",
        "client_id = \"c\"",
        "client_secret_env = \"S\"",
        "client_secret_file = \"../../etc/shadow\"",
        "certificate_file = \"c.pem\"",
        "private_key_file = \"k.pem\"",
        "client_secret = \"inline\"",
        "private_key_pem = \"x\"",
        "key_id = 1",
        "expires_at = 2027-06-30T00:00:00Z",
        "expires_at = 1979-05-27",
        "expires_at = 07:32:00",
        "expires_at = \"not a date\"",
        "expires_at = [1, 2]",
        "expires_at = { a = 1 }",
        "scope_probe = \"not an address\"",
        "address = \"a@b.com\"",
        "address = \"a\u{0}@b.com\"",
        "credential = \"contoso\"",
        "credential = \"x\"",
        "folder = \"*\"",
        "folder = \"   \"",
        "folder = \"Inbox/../..\"",
        "action = \"move\"",
        "action = \"none\"",
        "action = \"mark_read\"",
        "action = 1",
        "processed_folder = \"\"",
        "enabled = \"yes\"",
        "users = \"all\"",
        "users = \"some\"",
        "group = \"\"",
        "group = \"Finance\"",
        "exclude = [\"\"]",
        "exclude = [1]",
        "shared_mailboxes = 1",
        "url = \"https://hooks.example.com\"",
        "url = \"ftp://x\"",
        "url = \"\"",
        "secret_env = \"E\"",
        "secret_file = \"f\"",
        "schedule_minutes = 0",
        "schedule_minutes = 1441",
        "schedule_minutes = -1",
        "schedule_minutes = 18446744073709551615",
        "schedule_minutes = 9223372036854775807",
        "schedule_minutes = 1.5",
        "schedule_minutes = inf",
        "discover_hours = 169",
        "discover_hours = nan",
        "a = \"\\u0000\"",
        "a = \"\\uD800\"",
        "a = '''",
        "a = \"\"\"",
        "a.b.c = 1",
        "= 1",
        "a = ",
        "\"\" = 1",
        "a = 1 # \u{1b}[2J",
        "\u{feff}",
        "\r",
    ];

    fn toml_ish_line() -> BoxedStrategy<String> {
        prop_oneof![
            6 => prop::sample::select(FRAGMENTS).prop_map(str::to_owned),
            1 => (1usize..5000, prop::sample::select(vec!["[", "{ a = ", "[[", "a = ["]))
                .prop_map(|(depth, open)| format!("x = {}", open.repeat(depth))),
            1 => any::<String>(),
            1 => (prop::sample::select(FRAGMENTS), any::<String>()).prop_map(|(key, value)| {
                let key = key.split('=').next().unwrap_or("a").trim();
                format!("{key} = {}", toml::Value::String(value))
            }),
        ]
        .boxed()
    }

    /// One change to a valid configuration.
    #[derive(Debug, Clone)]
    enum Mutation {
        Delete(usize),
        Duplicate(usize),
        Uncomment(usize),
        Insert(usize, String),
        /// Replace the value of a `key = value` line.
        Value(usize, String),
        Truncate(usize),
        /// Insert raw text at a character offset.
        Splice(usize, String),
    }

    fn mutation() -> BoxedStrategy<Mutation> {
        let value = prop_oneof![
            any::<String>().prop_map(|s| toml::Value::String(s).to_string()),
            prop::sample::select(vec![
                "1",
                "-1",
                "true",
                "[]",
                "{}",
                "\"\"",
                "1979-05-27T07:32:00Z",
                "\"\\u202e\"",
            ])
            .prop_map(str::to_owned),
            any::<String>(),
        ];
        prop_oneof![
            1 => any::<usize>().prop_map(Mutation::Delete),
            1 => any::<usize>().prop_map(Mutation::Duplicate),
            2 => any::<usize>().prop_map(Mutation::Uncomment),
            2 => (any::<usize>(), toml_ish_line()).prop_map(|(i, l)| Mutation::Insert(i, l)),
            2 => (any::<usize>(), value).prop_map(|(i, v)| Mutation::Value(i, v)),
            1 => any::<usize>().prop_map(Mutation::Truncate),
            1 => (any::<usize>(), any::<String>()).prop_map(|(i, t)| Mutation::Splice(i, t)),
        ]
        .boxed()
    }

    /// `text` with `mutations` applied in turn (indexes taken modulo the current size).
    fn apply(text: &str, mutations: &[Mutation]) -> String {
        let mut text = text.to_owned();
        for m in mutations {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            let n = lines.len().max(1);
            match m {
                Mutation::Delete(i) if !lines.is_empty() => {
                    lines.remove(i % n);
                }
                Mutation::Duplicate(i) if !lines.is_empty() => {
                    let line = lines[i % n].clone();
                    lines.insert(i % n, line);
                }
                Mutation::Uncomment(i) if !lines.is_empty() => {
                    let line = &mut lines[i % n];
                    *line = line.trim_start_matches(['#', ' ']).to_owned();
                }
                Mutation::Insert(i, line) => lines.insert(i % (lines.len() + 1), line.clone()),
                Mutation::Value(i, value) if !lines.is_empty() => {
                    let line = &mut lines[i % n];
                    if let Some((key, _)) = line.split_once('=') {
                        *line = format!("{key}= {value}");
                    }
                }
                Mutation::Truncate(i) => {
                    let chars = text.chars().count();
                    text = text.chars().take(i % (chars + 1)).collect();
                    continue;
                }
                Mutation::Splice(i, raw) => {
                    let chars: Vec<char> = text.chars().collect();
                    let (before, after) = chars.split_at(i % (chars.len() + 1));
                    text = before
                        .iter()
                        .chain(raw.chars().collect::<Vec<_>>().iter())
                        .chain(after)
                        .collect();
                    continue;
                }
                _ => {}
            }
            text = lines.join("\n");
        }
        text
    }

    /// Inputs that parsed, across the properties: the mix is measured, not assumed.
    static PARSED: AtomicU64 = AtomicU64::new(0);

    fn check_parse(text: &str) -> Result<(), TestCaseError> {
        match LocalConfig::parse(Path::new(PATH), text) {
            Ok(_) => {
                PARSED.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let message = format!("{e:#}");
                prop_assert!(
                    message.contains(PATH),
                    "an error that does not name the file: {message}"
                );
            }
        }
        Ok(())
    }

    /// Runs `test` on PROPTEST_CASES inputs (proptest's 256 without it) and prints the count.
    fn run<S: Strategy>(
        name: &str,
        strategy: S,
        test: impl Fn(S::Value) -> Result<(), TestCaseError>,
    ) where
        S::Value: std::fmt::Debug,
    {
        let config = Config {
            failure_persistence: None,
            ..Config::default()
        };
        let ran = AtomicU64::new(0);
        let result = TestRunner::new(config).run(&strategy, |value| {
            ran.fetch_add(1, Ordering::Relaxed);
            test(value)
        });
        eprintln!(
            "hostile: {name}: {} generated inputs ({} parsed so far in this process)",
            ran.load(Ordering::Relaxed),
            PARSED.load(Ordering::Relaxed)
        );
        if let Err(e) = result {
            panic!("{name}: {e}");
        }
    }

    #[test]
    fn any_toml_ish_text_parses_or_names_the_file() {
        run(
            "config: TOML-ish text",
            prop::collection::vec(toml_ish_line(), 0..24),
            |lines| check_parse(&lines.join("\n")),
        );
    }

    #[test]
    fn mutated_valid_configs_parse_or_name_the_file() {
        run(
            "config: mutated example",
            prop::collection::vec(mutation(), 1..6),
            |mutations| check_parse(&apply(EXAMPLE, &mutations)),
        );
    }
}
