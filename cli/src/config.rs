//! `mailroom.toml`: credentials and mailboxes for local mode, parsed with errors that name the
//! key, the line and what is allowed, and edited in place (comments survive) by `mailbox add`
//! and `mailbox remove`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use mailroom::adapters::local::{LocalCredential, SecretRef};
use mailroom::domain::{AfterImport, MailboxAddress, MailboxConfig};
use serde::Deserialize;
use time::OffsetDateTime;
use toml::Spanned;

/// The default import interval of `mailroom serve`, as in the serverless deployment.
pub const DEFAULT_SCHEDULE_MINUTES: u64 = 15;

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
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    schedule_minutes: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
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
            let secret = match (
                c.client_secret_env,
                c.client_secret_file,
                c.certificate_file,
                c.private_key_file,
            ) {
                (Some(var), None, None, None) => SecretRef::Env(var),
                (None, Some(file), None, None) => SecretRef::File(base.join(file)),
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
            if !credentials.contains_key(&credential) {
                let known: Vec<_> = credentials.keys().map(String::as_str).collect();
                bail!(
                    "{}: [[mailbox]] {address}: credential '{credential}' is not declared; declared: {}",
                    at(m.credential.span()),
                    if known.is_empty() {
                        "none (add a [credential.NAME] table)".to_owned()
                    } else {
                        known.join(", ")
                    }
                );
            }
            let folder = m.folder.get_ref().trim().to_owned();
            if folder.is_empty() {
                bail!(
                    "{}: [[mailbox]] {address}: folder is empty; use a path such as Inbox/Backup Reports",
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
            });
        }

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
        })
    }

    pub fn credential(&self, name: &str) -> anyhow::Result<&CredentialConfig> {
        self.credentials.get(name).ok_or_else(|| {
            anyhow!(
                "credential '{name}' is not declared in {}; declared: {}",
                self.path.display(),
                self.credentials
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
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

/// Appends a `[[mailbox]]` entry to the file, keeping everything else (comments too).
pub fn append_mailbox(path: &Path, config: &MailboxConfig) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut document: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
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
    let item = document
        .entry("mailbox")
        .or_insert(toml_edit::Item::ArrayOfTables(
            toml_edit::ArrayOfTables::new(),
        ));
    let Some(array) = item.as_array_of_tables_mut() else {
        bail!(
            "{}: `mailbox` must be a list of [[mailbox]] tables",
            path.display()
        );
    };
    array.push(entry);
    write_atomically(path, &document.to_string())
}

/// Removes the `[[mailbox]]` entries of `address` (only `folder`, if given); returns how many.
pub fn remove_mailbox(
    path: &Path,
    address: &MailboxAddress,
    folder: Option<&str>,
) -> anyhow::Result<usize> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut document: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let Some(array) = document
        .get_mut("mailbox")
        .and_then(|i| i.as_array_of_tables_mut())
    else {
        return Ok(0);
    };
    let before = array.len();
    array.retain(|t| {
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
    let removed = before - array.len();
    if removed > 0 {
        write_atomically(path, &document.to_string())?;
    }
    Ok(removed)
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

# [settings]
# schedule_minutes = 15   # how often `mailroom serve` imports
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<LocalConfig> {
        LocalConfig::parse(Path::new("/etc/mailroom/mailroom.toml"), text)
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
