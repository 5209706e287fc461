//! A certificate credential: an X.509 certificate registered on the app and its RSA private key,
//! parsed once from PEM so a malformed one is refused when it is read, not at the first token
//! request (docs/graph.md §1, "Certificate JWT").
//!
//! Nothing here keeps or formats key material: the private key lives only inside ring's key pair,
//! `Debug` shows the thumbprint and the expiry, and errors say what is wrong with which input.

use std::fmt;
use std::sync::Arc;

use ring::rand::SystemRandom;
use ring::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION;
use x509_parser::pem::Pem;

/// How to turn any private key file into the unencrypted PKCS#8 PEM Mailroom reads.
const TO_PKCS8: &str = "`openssl pkcs8 -topk8 -nocrypt -in key.pem -out key-pkcs8.pem`";

/// A certificate registered on the app (Certificates & secrets > Certificates) with its private
/// key. Cheap to clone. `Debug` never shows the key.
#[derive(Clone)]
pub struct CertificateCredential {
    der: Arc<[u8]>,
    key: Arc<RsaKeyPair>,
    thumbprint_sha256: [u8; 32],
    not_after: OffsetDateTime,
}

impl fmt::Debug for CertificateCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateCredential")
            .field("thumbprint_sha256", &hex::encode(self.thumbprint_sha256))
            .field("not_after", &self.not_after)
            .field("private_key", &"[REDACTED]")
            .finish()
    }
}

impl CertificateCredential {
    /// Parses the certificate (the first `CERTIFICATE` block of `certificate_pem`, so a chain
    /// works) and its private key (the first `PRIVATE KEY` block of `private_key_pem`: PKCS#8,
    /// RSA, unencrypted), and checks that the key belongs to the certificate. One file holding
    /// both blocks may be given for both.
    pub fn from_pem(
        certificate_pem: &str,
        private_key_pem: &str,
    ) -> Result<Self, CertificateError> {
        let certificate = find_block(certificate_pem, PemInput::Certificate, |label| {
            label == "CERTIFICATE"
        })?
        .ok_or(CertificateError::NoCertificate)?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&certificate.contents)
            .map_err(|_| CertificateError::InvalidCertificate)?;
        let public_key = parsed.public_key();
        if public_key.algorithm.algorithm != OID_PKCS1_RSAENCRYPTION {
            return Err(CertificateError::NotRsaCertificate);
        }
        let not_after = parsed.validity().not_after.to_datetime();
        let certificate_public_key = public_key.subject_public_key.data.to_vec();

        let key = find_block(private_key_pem, PemInput::PrivateKey, |label| {
            label.ends_with("PRIVATE KEY")
        })?
        .ok_or(CertificateError::NoPrivateKey)?;
        match key.label.as_str() {
            "PRIVATE KEY" => {}
            "RSA PRIVATE KEY" => return Err(CertificateError::Pkcs1Key),
            "ENCRYPTED PRIVATE KEY" => return Err(CertificateError::EncryptedKey),
            _ => return Err(CertificateError::NotRsaKey(KeyProblem::OtherKind)),
        }
        let key = RsaKeyPair::from_pkcs8(&key.contents).map_err(|e| {
            // ring's descriptions are fixed words ("WrongAlgorithm", "TooSmall", …), never input.
            CertificateError::NotRsaKey(match e.to_string().as_str() {
                "WrongAlgorithm" => KeyProblem::NotRsa,
                "TooSmall" => KeyProblem::TooSmall,
                "TooLarge" => KeyProblem::TooLarge,
                "PrivateModulusLenNotMultipleOf512Bits" => KeyProblem::OddSize,
                _ => KeyProblem::Invalid,
            })
        })?;
        if key.public_key().as_ref() != certificate_public_key.as_slice() {
            return Err(CertificateError::KeyMismatch);
        }

        Ok(Self {
            thumbprint_sha256: Sha256::digest(&certificate.contents).into(),
            der: certificate.contents.into(),
            key: Arc::new(key),
            not_after,
        })
    }

    /// The certificate, DER-encoded.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of the certificate's DER: the client assertion's `x5t#S256`.
    pub fn thumbprint_sha256(&self) -> [u8; 32] {
        self.thumbprint_sha256
    }

    /// SHA-1 of the certificate's DER, in upper-case hex: the "Thumbprint" Entra ID shows under
    /// Certificates & secrets, and a key credential's `customKeyIdentifier` (docs/graph.md §9).
    pub fn thumbprint_sha1_hex(&self) -> String {
        hex::encode_upper(ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            &self.der,
        ))
    }

    /// The certificate's notAfter: when Entra ID stops accepting it.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Signs `message` with RSASSA-PKCS1-v1_5 and SHA-256 (JWS `RS256`).
    pub(crate) fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>, ring::error::Unspecified> {
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            message,
            &mut signature,
        )?;
        Ok(signature)
    }

    /// Whether both hold the same certificate (a key cannot change without its certificate).
    pub(crate) fn same_certificate(&self, other: &CertificateCredential) -> bool {
        self.thumbprint_sha256 == other.thumbprint_sha256
    }
}

/// Which of the two PEM inputs a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemInput {
    Certificate,
    PrivateKey,
}

/// Why an RSA key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProblem {
    /// A PKCS#8 key of another algorithm (EC, Ed25519…).
    NotRsa,
    /// A PEM block of another kind of key (`EC PRIVATE KEY`, `OPENSSH PRIVATE KEY`…).
    OtherKind,
    /// Shorter than 2048 bits.
    TooSmall,
    /// Longer than 8192 bits.
    TooLarge,
    /// A size that is not a multiple of 512 bits (ring signs only with those).
    OddSize,
    /// Not a PKCS#8 structure, or inconsistent RSA components.
    Invalid,
}

/// What is wrong with a certificate credential. Holds no key material, so it can be shown as it
/// is; [`CertificateError::detail`] names the inputs as the caller knows them (JSON fields or
/// files), `Display` as the JSON fields `certificate_pem` and `private_key_pem`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateError {
    /// No `-----BEGIN CERTIFICATE-----` block.
    NoCertificate,
    /// No `-----BEGIN … PRIVATE KEY-----` block.
    NoPrivateKey,
    /// A block whose base64 does not decode, or without its END line.
    BadPem(PemInput),
    /// The certificate block does not hold an X.509 certificate.
    InvalidCertificate,
    /// The certificate's public key is not RSA.
    NotRsaCertificate,
    /// `RSA PRIVATE KEY`: PKCS#1, not PKCS#8.
    Pkcs1Key,
    /// `ENCRYPTED PRIVATE KEY`: Mailroom has no passphrase to open it.
    EncryptedKey,
    /// The key is not a usable PKCS#8 RSA key.
    NotRsaKey(KeyProblem),
    /// The key is not the certificate's.
    KeyMismatch,
}

impl CertificateError {
    /// What is wrong and how to fix it, calling the inputs `certificate` and `private_key`
    /// (e.g. "private_key_pem", or "the private key file /etc/mailroom/key.pem").
    pub fn detail(&self, certificate: &str, private_key: &str) -> String {
        let block_hint = "each -----BEGIN/-----END line on a line of its own (in JSON, write the line breaks as \\n)";
        match self {
            Self::NoCertificate => format!(
                "{certificate} holds no PEM certificate: expected a block from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----, {block_hint}; convert a DER (.cer) certificate with `openssl x509 -inform der -in cert.cer -out cert.pem`"
            ),
            Self::NoPrivateKey => format!(
                "{private_key} holds no PEM private key: expected a block from -----BEGIN PRIVATE KEY----- to -----END PRIVATE KEY-----, {block_hint}"
            ),
            Self::BadPem(input) => format!(
                "{} is not valid PEM: the text between its BEGIN and END lines is not base64, or the END line is missing; copy the whole file again, {block_hint}",
                match input {
                    PemInput::Certificate => certificate,
                    PemInput::PrivateKey => private_key,
                }
            ),
            Self::InvalidCertificate => format!(
                "{certificate} does not hold a valid X.509 certificate; export the certificate registered on the app again, as PEM"
            ),
            Self::NotRsaCertificate => format!(
                "{certificate} is not an RSA certificate; Mailroom signs client assertions with RS256, so create an RSA certificate (2048 bits or more), e.g. `openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 365 -subj /CN=mailroom`, and register it on the app"
            ),
            Self::Pkcs1Key => format!(
                "{private_key} is a PKCS#1 key (BEGIN RSA PRIVATE KEY), not PKCS#8; convert it with {TO_PKCS8}"
            ),
            Self::EncryptedKey => format!(
                "{private_key} is encrypted (BEGIN ENCRYPTED PRIVATE KEY) and Mailroom has no passphrase; store it unencrypted, converted with {TO_PKCS8}"
            ),
            Self::NotRsaKey(problem) => {
                let why = match problem {
                    KeyProblem::NotRsa => "it holds a key of another algorithm",
                    KeyProblem::OtherKind => "it holds another kind of key",
                    KeyProblem::TooSmall => "the RSA key is shorter than 2048 bits",
                    KeyProblem::TooLarge => "the RSA key is longer than 8192 bits",
                    KeyProblem::OddSize => "the RSA key's size is not a multiple of 512 bits",
                    KeyProblem::Invalid => "it does not decode as one",
                };
                format!(
                    "{private_key} is not a PKCS#8 RSA key ({why}); convert it with {TO_PKCS8}, or create an RSA key of 2048 bits or more with its certificate and register that certificate on the app"
                )
            }
            Self::KeyMismatch => format!(
                "{private_key} is not the private key of {certificate} (their public keys differ); store the key the certificate was created with"
            ),
        }
    }
}

impl fmt::Display for CertificateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail("certificate_pem", "private_key_pem"))
    }
}

impl std::error::Error for CertificateError {}

/// The first PEM block of `text` whose label `wanted` accepts; `None` if there is none. A broken
/// block is an error only if it comes before the wanted one (its label cannot be trusted).
fn find_block(
    text: &str,
    input: PemInput,
    wanted: impl Fn(&str) -> bool,
) -> Result<Option<Pem>, CertificateError> {
    for block in Pem::iter_from_buffer(text.as_bytes()) {
        let block = block.map_err(|_| CertificateError::BadPem(input))?;
        if wanted(&block.label) {
            return Ok(Some(block));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = include_str!("../../../../sandbox/fixtures/app-cert.pem");
    const KEY: &str = include_str!("../../../../sandbox/fixtures/app-key.pem");

    /// A line from the middle of the key's base64: if it shows anywhere, key material leaked.
    fn key_line() -> &'static str {
        KEY.lines().nth(5).unwrap()
    }

    fn err(certificate: &str, key: &str) -> CertificateError {
        CertificateCredential::from_pem(certificate, key).unwrap_err()
    }

    #[test]
    fn parses_the_fixture_with_its_expiry_and_thumbprints() {
        let credential = CertificateCredential::from_pem(CERT, KEY).unwrap();
        assert_eq!(
            credential.not_after(),
            time::macros::datetime!(2046-11-18 11:40:56 UTC)
        );
        // `openssl x509 -noout -fingerprint -sha256` / `-sha1` of the fixture.
        assert_eq!(
            hex::encode(credential.thumbprint_sha256()),
            "0936bbceae436c1200945a3916872240162bd5d0da6266b725cb8f2108b5f1c9"
        );
        assert_eq!(
            credential.thumbprint_sha1_hex(),
            "F0451171F556ED388B5625AA28A6AE9263F4212A"
        );
        let shown = format!("{credential:?}");
        assert!(!shown.contains(key_line()), "{shown}");
        assert!(shown.contains("[REDACTED]"), "{shown}");
    }

    #[test]
    fn one_file_with_both_blocks_serves_for_both() {
        let both = format!("{CERT}\n{KEY}");
        assert!(CertificateCredential::from_pem(&both, &both).is_ok());
    }

    #[test]
    fn a_pkcs1_key_is_refused_with_the_conversion_command() {
        let pkcs1 = KEY.replace("PRIVATE KEY", "RSA PRIVATE KEY");
        let e = err(CERT, &pkcs1);
        assert_eq!(e, CertificateError::Pkcs1Key);
        let text = e.to_string();
        assert!(
            text.starts_with("private_key_pem is a PKCS#1 key"),
            "{text}"
        );
        assert!(text.contains("openssl pkcs8 -topk8 -nocrypt"), "{text}");
    }

    /// `der` as a PEM block labelled `label`.
    fn pem(label: &str, der: &[u8]) -> String {
        use base64::Engine as _;
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn keys_that_are_not_usable_pkcs8_rsa_are_refused() {
        // A real PKCS#8 key of another algorithm, made here so no key sits in the source.
        let ed25519 =
            ring::signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let ed25519 = pem("PRIVATE KEY", ed25519.as_ref());
        let e = err(CERT, &ed25519);
        assert_eq!(e, CertificateError::NotRsaKey(KeyProblem::NotRsa));
        let text = e.to_string();
        assert!(
            text.starts_with("private_key_pem is not a PKCS#8 RSA key"),
            "{text}"
        );
        assert!(text.contains("openssl pkcs8 -topk8 -nocrypt"), "{text}");

        let sec1 = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        assert_eq!(
            err(CERT, sec1),
            CertificateError::NotRsaKey(KeyProblem::OtherKind)
        );
        let garbage = pem("PRIVATE KEY", b"garbage, not DER");
        assert_eq!(
            err(CERT, &garbage),
            CertificateError::NotRsaKey(KeyProblem::Invalid)
        );
        assert_eq!(err(CERT, "hello"), CertificateError::NoPrivateKey);
        // The certificate is not a key.
        assert_eq!(err(CERT, CERT), CertificateError::NoPrivateKey);
        let encrypted = KEY.replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY");
        assert_eq!(err(CERT, &encrypted), CertificateError::EncryptedKey);
    }

    #[test]
    fn malformed_pem_and_certificates_are_refused() {
        let cut = &KEY[..KEY.len() / 2];
        assert_eq!(
            err(CERT, cut),
            CertificateError::BadPem(PemInput::PrivateKey)
        );
        let bad_base64 = KEY.replace(key_line(), "!!not base64!!");
        assert_eq!(
            err(CERT, &bad_base64),
            CertificateError::BadPem(PemInput::PrivateKey)
        );
        assert_eq!(err("", KEY), CertificateError::NoCertificate);
        // One line, as an environment variable or a careless JSON edit would make it.
        assert_eq!(
            err(&CERT.replace('\n', ""), KEY),
            CertificateError::BadPem(PemInput::Certificate)
        );
        let not_a_certificate =
            "-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n";
        assert_eq!(
            err(not_a_certificate, KEY),
            CertificateError::InvalidCertificate
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        assert_eq!(err(OTHER_CERT, KEY), CertificateError::KeyMismatch);
        let text =
            err(OTHER_CERT, KEY).detail("the certificate file c.pem", "the private key file k.pem");
        assert!(
            text.starts_with(
                "the private key file k.pem is not the private key of the certificate file c.pem"
            ),
            "{text}"
        );
    }

    #[test]
    fn no_error_shows_key_material() {
        let cut = &KEY[..KEY.len() / 2];
        let pkcs1 = KEY.replace("PRIVATE KEY", "RSA PRIVATE KEY");
        for (certificate, key) in [
            (OTHER_CERT, KEY),
            (CERT, cut),
            (CERT, pkcs1.as_str()),
            ("", KEY),
        ] {
            let e = err(certificate, key);
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains(key_line()), "{shown}");
        }
    }

    /// A self-signed RSA-2048 certificate of another key pair (`openssl req -x509 -newkey
    /// rsa:2048 -subj /CN=mailroom-other-app`; its key was thrown away).
    const OTHER_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIDGzCCAgOgAwIBAgIUX5cVyCDa9MxeL+X7Ai+pMbmWCWUwDQYJKoZIhvcNAQEL
BQAwHTEbMBkGA1UEAwwSbWFpbHJvb20tb3RoZXItYXBwMB4XDTI2MTEyMzExNDYy
MVoXDTQ2MTExODExNDYyMVowHTEbMBkGA1UEAwwSbWFpbHJvb20tb3RoZXItYXBw
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAx3WxR0euE0lSfgE7M2p6
ZZqZ7i7/F5acpm7VFEh4jPh0sbqh3CLkeZ/WO+l/T+5LFQhY30+QCca1POj/YhxQ
+Gc3IwKjupJCjNLuhWwVBs0mxD4bPgN69LTOuzjh3a4DkurJnae47RG2LzGF9jAb
iKBs2dlKRJUit0k7QSxRZ+IRbI0gSzTVnd8Xr2d4lwFbF11uHPzFBhshR4GkrVvK
w01YX7yxAnqVwsRaEARegCt7e/z0AOQpJY/bnM5c04IBc4q2i66GW0CBZ5lCj6i/
oPg/m5GJkqgS0YrQ69t9ylkZ436ScFe0Off0yybAisBdslWAQd7kXb3HDusaAmiq
cwIDAQABo1MwUTAdBgNVHQ4EFgQUAWYZJLRAyCPL/e8gnlk3LOenvfUwHwYDVR0j
BBgwFoAUAWYZJLRAyCPL/e8gnlk3LOenvfUwDwYDVR0TAQH/BAUwAwEB/zANBgkq
hkiG9w0BAQsFAAOCAQEAbeeNGEzVDyy/KiUrRKSoLGODfhwJoayvkREe7OxPZ0JR
fKTD6783nPzRljbAzjJkhwNgN28+JQ7C/hVO8lW9lkM4gTayv4qrnWTWyhc8skxm
T98ZOP2nI0t17FYO0COeXfw/GhFygnduxEjIml92mA5J/jNZP2mrAzcfQZxjuvRB
d9N+ab/W9UFK7LDx/E3f3l85m4TlU/w05OONeHu4/QC+gnT1QeUrveCo02Yt3QAI
cxy7o0lMZd7rEnVKtdf6QRbPoNd+M1bojoVzLLmYqgnQ8q2aqJuwtPJzHr6l5EvV
xPqPg8MTBVNG64+qheXGkVKXwDaWbZjfn/hxvchRoQ==
-----END CERTIFICATE-----
";
}
