//! Local mode's sign-ins of delegated credentials: `<data dir>/credentials/<name>.json`, readable
//! by its owner only (mode 0600 in a directory of mode 0700), replaced atomically: the new file
//! is written and synced under a temporary name in the same directory, then renamed over the
//! old one, so a crash leaves the old sign-in or the new one, never half of either.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use secrecy::ExposeSecret;

use crate::credentials::SignedIn;
use crate::ports::{SecretError, SignInStore};

/// Where local mode keeps sign-ins.
#[derive(Clone, Debug)]
pub struct LocalSignIns {
    dir: PathBuf,
}

impl LocalSignIns {
    /// Sign-ins under `<data_dir>/credentials`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("credentials"),
        }
    }

    /// The file of credential `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        // Credential names come from `[credential.NAME]`; encode anything that is not plainly
        // safe in a file name, so no name can reach outside the directory.
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
                    c.to_string()
                } else {
                    format!("%{:02X}", u32::from(c))
                }
            })
            .collect();
        self.dir.join(format!("{safe}.json"))
    }

    /// The sign-in of `name`, or `None` if nobody signed in yet.
    pub fn load(&self, name: &str) -> Result<Option<SignedIn>, SecretError> {
        let path = self.path(name);
        match std::fs::read_to_string(&path) {
            Ok(json) => SignedIn::from_json(name, &json).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SecretError::Unavailable {
                name: name.to_owned(),
                detail: format!("reading {}: {e}", path.display()),
            }),
        }
    }

    /// Stores the sign-in of `name`, replacing the old one atomically.
    pub fn save(&self, name: &str, signed_in: &SignedIn) -> Result<PathBuf, SecretError> {
        let path = self.path(name);
        let failed = |what: &str, e: std::io::Error| SecretError::Unavailable {
            name: name.to_owned(),
            detail: format!("{what} {}: {e}", path.display()),
        };
        create_private_dir(&self.dir).map_err(|e| failed("creating the directory of", e))?;
        let temp = self
            .dir
            .join(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
        let written = (|| {
            let mut file = private_file(&temp)?;
            file.write_all(signed_in.to_json().expose_secret().as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temp, &path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(failed("writing", e));
        }
        Ok(path)
    }
}

/// The engine's view: the file is small, but writing it syncs to disk, so it runs off the async
/// threads.
#[async_trait]
impl SignInStore for LocalSignIns {
    async fn load(&self, name: &str) -> Result<Option<SignedIn>, SecretError> {
        let (store, owned) = (self.clone(), name.to_owned());
        tokio::task::spawn_blocking(move || LocalSignIns::load(&store, &owned))
            .await
            .map_err(|e| unavailable(name, &e))?
    }

    async fn save(&self, name: &str, signed_in: &SignedIn) -> Result<(), SecretError> {
        let (store, owned, signed_in) = (self.clone(), name.to_owned(), signed_in.clone());
        tokio::task::spawn_blocking(move || LocalSignIns::save(&store, &owned, &signed_in))
            .await
            .map_err(|e| unavailable(name, &e))?
            .map(drop)
    }
}

fn unavailable(name: &str, e: &tokio::task::JoinError) -> SecretError {
    SecretError::Unavailable {
        name: name.to_owned(),
        detail: format!("the sign-in file task failed: {e}"),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use time::OffsetDateTime;

    use super::*;

    fn signed_in(token: &str) -> SignedIn {
        SignedIn {
            user: Some("alice@contoso.com".into()),
            scopes: vec!["Mail.ReadWrite".into()],
            refresh_token: SecretString::from(token.to_owned()),
            signed_in_at: OffsetDateTime::UNIX_EPOCH,
            refreshed_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_sign_in_is_saved_for_its_owner_only_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = LocalSignIns::new(dir.path());
        assert!(
            store
                .load("alice")
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        );
        let path = store
            .save("alice", &signed_in("rt-1"))
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .save("alice", &signed_in("rt-2"))
            .unwrap_or_else(|e| panic!("{e}"));
        let back = store.load("alice").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            back.map(|s| s.refresh_token.expose_secret().to_owned()),
            Some("rt-2".to_owned())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| {
                std::fs::metadata(p)
                    .map(|m| m.permissions().mode() & 0o777)
                    .unwrap_or_default()
            };
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&dir.path().join("credentials")), 0o700);
        }
        // No temporary file is left behind.
        let entries = std::fs::read_dir(dir.path().join("credentials"))
            .map(|d| d.count())
            .unwrap_or_default();
        assert_eq!(entries, 1);
    }

    #[test]
    fn a_name_cannot_reach_outside_the_directory() {
        let store = LocalSignIns::new(Path::new("/data"));
        assert_eq!(
            store.path("../etc/passwd"),
            Path::new("/data/credentials/%2E%2E%2Fetc%2Fpasswd.json")
        );
    }
}
