//! The CA certificates both of Mailroom's HTTP stacks trust, read once from one bundle file.
//!
//! Left to their defaults, the AWS SDK's HTTP client and reqwest (the Graph client) each look for
//! the system's certificates on their own, and on Linux each reads the bundle file *and* every
//! file of the certificate directory (about 300 on Debian): most of a Lambda function's start-up
//! (README, "Benchmarks"). On Linux the directory holds the certificates of the bundle (both are
//! generated from one source by `update-ca-certificates` or `update-ca-trust`), so one bundle,
//! read once and given to both stacks, is the same trust for a fraction of the work.
//!
//! `SSL_CERT_FILE` names the bundle, as for OpenSSL. The defaults apply instead when
//! `SSL_CERT_DIR` is set (a directory to trust as well), off Linux (macOS keeps trust in the
//! keychain), or when no bundle is found.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Where Linux distributions keep their bundle: Amazon Linux 2023 (Lambda's `provided.al2023`)
/// and Red Hat first, then Debian, Ubuntu and Alpine.
const BUNDLES: &[&str] = &[
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/cert.pem",
];

/// A PEM bundle of CA certificates. Cheap to clone.
#[derive(Clone)]
pub struct CaBundle {
    path: PathBuf,
    pem: Arc<[u8]>,
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaBundle")
            .field("path", &self.path)
            .field("bytes", &self.pem.len())
            .finish()
    }
}

impl CaBundle {
    /// The system's bundle, read once per process; `None` where the defaults should apply.
    pub fn system() -> Option<CaBundle> {
        static SYSTEM: OnceLock<Option<CaBundle>> = OnceLock::new();
        SYSTEM
            .get_or_init(|| {
                if cfg!(target_os = "linux") {
                    Self::find(|name| std::env::var_os(name), BUNDLES)
                } else {
                    None
                }
            })
            .clone()
    }

    fn find(env: impl Fn(&str) -> Option<OsString>, bundles: &[&str]) -> Option<CaBundle> {
        if env("SSL_CERT_DIR").is_some() {
            return None;
        }
        let candidates: Vec<PathBuf> = match env("SSL_CERT_FILE") {
            Some(file) => vec![PathBuf::from(file)],
            None => bundles.iter().map(PathBuf::from).collect(),
        };
        candidates
            .into_iter()
            .find_map(|path| CaBundle::read(&path).ok())
    }

    /// The bundle at `path`; an error if it cannot be read or holds no certificate.
    pub fn read(path: &Path) -> std::io::Result<CaBundle> {
        let pem = std::fs::read(path)?;
        if !pem
            .windows(CERTIFICATE.len())
            .any(|w| w == CERTIFICATE.as_bytes())
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} holds no PEM certificate", path.display()),
            ));
        }
        Ok(CaBundle {
            path: path.to_owned(),
            pem: pem.into(),
        })
    }

    /// The bundle's PEM text.
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }

    /// Where it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

const CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----";

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            vars.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_first_bundle_holding_a_certificate_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.crt");
        let good = dir.path().join("good.crt");
        std::fs::write(&empty, "").unwrap();
        std::fs::write(&good, PEM).unwrap();
        let missing = dir.path().join("missing.crt");
        let bundles = [
            missing.to_str().unwrap(),
            empty.to_str().unwrap(),
            good.to_str().unwrap(),
        ];
        let found = CaBundle::find(env(&[]), &bundles).unwrap();
        assert_eq!(found.path(), good);
        assert_eq!(found.pem(), PEM.as_bytes());
    }

    #[test]
    fn ssl_cert_file_names_the_only_bundle_and_ssl_cert_dir_keeps_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.crt");
        let own = dir.path().join("own.crt");
        std::fs::write(&good, PEM).unwrap();
        std::fs::write(&own, PEM).unwrap();
        let bundles = [good.to_str().unwrap()];
        let chosen = CaBundle::find(env(&[("SSL_CERT_FILE", own.to_str().unwrap())]), &bundles);
        assert_eq!(chosen.unwrap().path(), own);
        let unreadable = CaBundle::find(env(&[("SSL_CERT_FILE", "/nonexistent.crt")]), &bundles);
        assert!(unreadable.is_none(), "{unreadable:?}");
        let with_dir = CaBundle::find(env(&[("SSL_CERT_DIR", "/etc/ssl/certs")]), &bundles);
        assert!(with_dir.is_none(), "{with_dir:?}");
    }
}
