//! Application credentials (docs/graph.md section 9): client secrets (`passwordCredentials`) and
//! certificates (`keyCredentials`), as the token endpoint checks them and Graph's
//! `/applications` API shows them, plus the sandbox's own handles on them.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Serialize;
use time::OffsetDateTime;

use crate::core::{Core, lock};
use crate::state::AppState;
use crate::world::AppSecret;

/// Why a certificate could not be registered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The text holds no `-----BEGIN CERTIFICATE-----` block.
    #[error("no PEM certificate found: expected a -----BEGIN CERTIFICATE----- block")]
    NoPem,
    /// The PEM block is not base64.
    #[error("the certificate's PEM block is not valid base64")]
    Base64,
    /// The bytes are not a DER X.509 certificate.
    #[error("the certificate is not a valid DER X.509 certificate ({0})")]
    Der(String),
    /// The certificate's key is not RSA.
    #[error(
        "the certificate's public key is not RSA; the sandbox verifies RS256 and PS256 client assertions only"
    )]
    NotRsa,
    /// No app registration has this client id.
    #[error("no app registration with client id {0}")]
    UnknownApp(String),
}

/// A certificate registered on an app (a `keyCredential` of type `AsymmetricX509Cert`, usage
/// `Verify`): the token endpoint accepts client assertions signed with its private key.
///
/// `startDateTime` and `endDateTime` default to the certificate's own validity, as when a
/// certificate is uploaded in the portal; [`AppCertificate::starts_at`] and
/// [`AppCertificate::ends_at`] override them (to test expiry without minting certificates).
/// Either way an assertion is accepted only inside both windows.
#[derive(Clone)]
pub struct AppCertificate {
    pub(crate) key_id: String,
    pub(crate) display_name: String,
    pub(crate) der: Vec<u8>,
    /// The RSA public key as PKCS#1 `RSAPublicKey` DER, the form ring verifies with.
    pub(crate) rsa_public_key: Vec<u8>,
    pub(crate) sha1: Vec<u8>,
    pub(crate) sha256: Vec<u8>,
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
    pub(crate) starts_at: OffsetDateTime,
    pub(crate) ends_at: OffsetDateTime,
}

impl std::fmt::Debug for AppCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCertificate")
            .field("key_id", &self.key_id)
            .field("display_name", &self.display_name)
            .field("thumbprint", &self.thumbprint())
            .field("starts_at", &self.starts_at)
            .field("ends_at", &self.ends_at)
            .finish_non_exhaustive()
    }
}

impl AppCertificate {
    /// Reads the first `CERTIFICATE` block of a PEM text. The key must be RSA; the display name
    /// is the subject (e.g. "CN=mailroom-test-app"), the key id a random GUID.
    pub fn from_pem(pem: &str) -> Result<Self, CertificateError> {
        Self::from_der(&pem_block(pem, "CERTIFICATE")?)
    }

    /// Reads a DER-encoded X.509 certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertificateError> {
        use x509_parser::prelude::{FromDer, X509Certificate};

        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| CertificateError::Der(e.to_string()))?;
        let spki = cert.public_key();
        if spki.algorithm.algorithm != x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION {
            return Err(CertificateError::NotRsa);
        }
        let validity = cert.validity();
        let not_before = validity.not_before.to_datetime();
        let not_after = validity.not_after.to_datetime();
        Ok(Self {
            key_id: crate::ids::new_guid(),
            display_name: cert.subject().to_string(),
            der: der.to_vec(),
            rsa_public_key: spki.subject_public_key.data.to_vec(),
            sha1: digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der),
            sha256: digest(&ring::digest::SHA256, der),
            not_before,
            not_after,
            starts_at: not_before,
            ends_at: not_after,
        })
    }

    /// Sets the key id (a GUID).
    pub fn key_id(mut self, id: &str) -> Self {
        self.key_id = id.to_owned();
        self
    }

    /// Sets the `displayName`.
    pub fn display_name(mut self, name: &str) -> Self {
        self.display_name = name.to_owned();
        self
    }

    /// Overrides `startDateTime` (default: the certificate's notBefore).
    pub fn starts_at(mut self, t: OffsetDateTime) -> Self {
        self.starts_at = t;
        self
    }

    /// Overrides `endDateTime` (default: the certificate's notAfter).
    pub fn ends_at(mut self, t: OffsetDateTime) -> Self {
        self.ends_at = t;
        self
    }

    /// The SHA-1 thumbprint in upper-case hex, as Graph shows it in `customKeyIdentifier` and
    /// Entra quotes it in AADSTS700027.
    pub fn thumbprint(&self) -> String {
        hex::encode_upper(&self.sha1)
    }

    /// The base64url SHA-256 thumbprint, the `x5t#S256` header of a client assertion.
    pub fn x5t_s256(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.sha256)
    }

    /// The certificate's notAfter.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Whether the key credential and the certificate are both valid at `now`.
    pub(crate) fn is_valid_at(&self, now: OffsetDateTime) -> bool {
        self.starts_at <= now
            && now < self.ends_at
            && self.not_before <= now
            && now < self.not_after
    }

    /// The key credential's window as Entra quotes it: "Start=…, End=…".
    pub(crate) fn window(&self) -> String {
        format!(
            "Start={}, End={}",
            us_time(self.starts_at.max(self.not_before)),
            us_time(self.ends_at.min(self.not_after))
        )
    }

    pub(crate) fn info(&self) -> CertificateInfo {
        CertificateInfo {
            key_id: self.key_id.clone(),
            display_name: self.display_name.clone(),
            thumbprint: self.thumbprint(),
            start: self.starts_at,
            end: self.ends_at,
            not_before: self.not_before,
            not_after: self.not_after,
        }
    }
}

fn digest(algorithm: &'static ring::digest::Algorithm, data: &[u8]) -> Vec<u8> {
    ring::digest::digest(algorithm, data).as_ref().to_vec()
}

/// Entra's time format inside AADSTS700027 reasons: `06/29/2021 21:13:15`.
fn us_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:02}/{:02}/{:04} {:02}:{:02}:{:02}",
        u8::from(t.month()),
        t.day(),
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The DER inside the first `-----BEGIN {label}-----` block.
pub(crate) fn pem_block(pem: &str, label: &str) -> Result<Vec<u8>, CertificateError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin).ok_or(CertificateError::NoPem)? + begin.len();
    let rest = pem.get(start..).unwrap_or_default();
    let stop = rest.find(&end).ok_or(CertificateError::NoPem)?;
    let body: String = rest
        .get(..stop)
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).map_err(|_| CertificateError::Base64)
}

/// A registered certificate, for assertions in tests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateInfo {
    /// `keyId`.
    pub key_id: String,
    /// `displayName`.
    pub display_name: String,
    /// Upper-case hex SHA-1 thumbprint (`customKeyIdentifier`).
    pub thumbprint: String,
    /// `startDateTime`.
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    /// `endDateTime`.
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    /// The certificate's notBefore.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// The certificate's notAfter.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

/// A client secret (`passwordCredential`) as the sandbox holds it.
#[derive(Clone)]
pub(crate) struct PasswordCredential {
    pub(crate) key_id: String,
    pub(crate) display_name: Option<String>,
    pub(crate) value: String,
    pub(crate) starts_at: OffsetDateTime,
    pub(crate) ends_at: OffsetDateTime,
    /// When the token endpoint starts accepting it: Entra replicates a new secret before every
    /// sign-in server knows it (docs/graph.md section 9, "propagation").
    pub(crate) usable_from: OffsetDateTime,
}

impl std::fmt::Debug for PasswordCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordCredential")
            .field("key_id", &self.key_id)
            .field("value", &"<redacted>")
            .field("starts_at", &self.starts_at)
            .field("ends_at", &self.ends_at)
            .field("usable_from", &self.usable_from)
            .finish_non_exhaustive()
    }
}

impl PasswordCredential {
    pub(crate) fn from_secret(s: &AppSecret, usable_from: OffsetDateTime) -> Self {
        Self {
            key_id: s.key_id.clone(),
            display_name: s.display_name.clone(),
            value: s.value.clone(),
            starts_at: s.starts_at,
            ends_at: s.expires_at,
            usable_from,
        }
    }

    /// `hint`: the first three characters of the secret (passwordCredential resource).
    pub(crate) fn hint(&self) -> String {
        self.value.chars().take(3).collect()
    }

    pub(crate) fn info(&self) -> PasswordInfo {
        PasswordInfo {
            key_id: self.key_id.clone(),
            display_name: self.display_name.clone(),
            hint: self.hint(),
            start: self.starts_at,
            end: self.ends_at,
            usable_from: self.usable_from,
        }
    }
}

/// A client secret of an app, as `GET /applications` shows it (never its value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordInfo {
    /// `keyId` ("Secret ID").
    pub key_id: String,
    /// `displayName`.
    pub display_name: Option<String>,
    /// `hint`: the first three characters of the value.
    pub hint: String,
    /// `startDateTime`.
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    /// `endDateTime`.
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    /// When the token endpoint starts accepting it (after the propagation delay; see
    /// [`crate::Sandbox::set_password_propagation_delay`]).
    #[serde(with = "time::serde::rfc3339")]
    pub usable_from: OffsetDateTime,
}

/// A fresh 40-character secret shaped like Entra's (and [`crate::DEFAULT_SECRET`]): three
/// characters, `8Q~`, then 34 characters of `[A-Za-z0-9._~-]`.
pub(crate) fn new_secret_text() -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const BODY: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-";
    let pick = |set: &[u8]| {
        set.get(fastrand::usize(..set.len()))
            .map_or('x', |b| *b as char)
    };
    let mut s: String = (0..3).map(|_| pick(ALNUM)).collect();
    s.push_str("8Q~");
    s.extend((0..34).map(|_| pick(BODY)));
    s
}

/// `std` to `time` duration, saturating.
pub(crate) fn to_time_duration(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

impl Core {
    /// The first registration of `client_id` (apps may be registered in several tenants).
    fn with_app<T>(&self, client_id: &str, f: impl FnOnce(&AppState) -> T) -> Option<T> {
        let st = lock(&self.state);
        st.tenants.iter().find_map(|t| t.app(client_id)).map(f)
    }

    /// Applies `f` to every registration of `client_id`; true if any returned true.
    fn update_apps(&self, client_id: &str, mut f: impl FnMut(&mut AppState) -> bool) -> bool {
        let mut st = lock(&self.state);
        let mut changed = false;
        for app in st.apps_mut(client_id) {
            changed |= f(app);
        }
        changed
    }

    pub(crate) fn application_object_id(&self, client_id: &str) -> Option<String> {
        self.with_app(client_id, |a| a.object_id.clone())
    }

    pub(crate) fn application_passwords(&self, client_id: &str) -> Vec<PasswordInfo> {
        self.with_app(client_id, |a| {
            a.passwords.iter().map(PasswordCredential::info).collect()
        })
        .unwrap_or_default()
    }

    pub(crate) fn application_certificates(&self, client_id: &str) -> Vec<CertificateInfo> {
        self.with_app(client_id, |a| {
            a.certificates.iter().map(AppCertificate::info).collect()
        })
        .unwrap_or_default()
    }

    /// Adds a secret as the portal would; like addPassword, it works at the token endpoint
    /// only after the propagation delay.
    pub(crate) fn add_secret(&self, client_id: &str, s: &AppSecret) -> bool {
        let usable_from = self.password_usable_from();
        self.update_apps(client_id, |a| {
            a.passwords.retain(|p| p.key_id != s.key_id);
            a.passwords
                .push(PasswordCredential::from_secret(s, usable_from));
            true
        })
    }

    /// Sandbox now plus the propagation delay.
    pub(crate) fn password_usable_from(&self) -> OffsetDateTime {
        let now = self.now();
        let delay = lock(&self.state).password_propagation;
        now.checked_add(delay).unwrap_or(now)
    }

    pub(crate) fn remove_password(&self, client_id: &str, key_id: &str) -> bool {
        self.update_apps(client_id, |a| {
            let before = a.passwords.len();
            a.passwords
                .retain(|p| !p.key_id.eq_ignore_ascii_case(key_id));
            a.passwords.len() != before
        })
    }

    pub(crate) fn set_password_expiry(
        &self,
        client_id: &str,
        key_id: &str,
        at: OffsetDateTime,
    ) -> bool {
        self.update_apps(client_id, |a| {
            let mut found = false;
            for p in &mut a.passwords {
                if p.key_id.eq_ignore_ascii_case(key_id) {
                    p.ends_at = at;
                    found = true;
                }
            }
            found
        })
    }

    pub(crate) fn set_password_propagation_delay(&self, d: Duration) {
        lock(&self.state).password_propagation = to_time_duration(d);
    }

    /// Registers a certificate on every registration of `client_id`; returns its key id.
    pub(crate) fn add_certificate(
        &self,
        client_id: &str,
        c: &AppCertificate,
    ) -> Result<String, CertificateError> {
        let added = self.update_apps(client_id, |a| {
            a.certificates.retain(|k| k.key_id != c.key_id);
            a.certificates.push(c.clone());
            true
        });
        if added {
            Ok(c.key_id.clone())
        } else {
            Err(CertificateError::UnknownApp(client_id.to_owned()))
        }
    }

    pub(crate) fn remove_certificate(&self, client_id: &str, key_id: &str) -> bool {
        self.update_apps(client_id, |a| {
            let before = a.certificates.len();
            a.certificates
                .retain(|k| !k.key_id.eq_ignore_ascii_case(key_id));
            a.certificates.len() != before
        })
    }

    pub(crate) fn set_certificate_expiry(
        &self,
        client_id: &str,
        key_id: &str,
        at: OffsetDateTime,
    ) -> bool {
        self.update_apps(client_id, |a| {
            let mut found = false;
            for k in &mut a.certificates {
                if k.key_id.eq_ignore_ascii_case(key_id) {
                    k.ends_at = at;
                    found = true;
                }
            }
            found
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{TEST_CERT_PEM, TEST_KEY_PEM};

    #[test]
    fn fixture_certificate_parses_with_its_thumbprints() {
        let c = AppCertificate::from_pem(TEST_CERT_PEM).unwrap();
        assert_eq!(c.display_name, "CN=mailroom-test-app");
        assert_eq!(c.thumbprint().len(), 40);
        assert_eq!(c.thumbprint(), c.thumbprint().to_ascii_uppercase());
        assert_eq!(c.x5t_s256().len(), 43);
        assert!(c.not_before < c.not_after);
        assert_eq!((c.starts_at, c.ends_at), (c.not_before, c.not_after));
        // PKCS#1 RSAPublicKey: a SEQUENCE.
        assert_eq!(c.rsa_public_key.first(), Some(&0x30));
    }

    #[test]
    fn bad_pem_is_refused() {
        assert!(matches!(
            AppCertificate::from_pem("nothing here"),
            Err(CertificateError::NoPem)
        ));
        assert!(matches!(
            AppCertificate::from_pem(TEST_KEY_PEM),
            Err(CertificateError::NoPem)
        ));
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            AppCertificate::from_pem(garbage),
            Err(CertificateError::Der(_))
        ));
    }

    #[test]
    fn secrets_look_like_entra_secrets() {
        for _ in 0..100 {
            let s = new_secret_text();
            assert_eq!(s.len(), 40);
            assert_eq!(s.get(3..6), Some("8Q~"));
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b))
            );
        }
    }
}
