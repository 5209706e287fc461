//! App registration credentials: what a secret holds and how it is parsed. The short-lived
//! cache that reads them through a [`crate::ports::SecretSource`] is [`crate::credentials::Credentials`].

use std::fmt;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

mod certificate;
mod signed_in;

/// Failure to read a credential (the [`crate::ports::SecretSource`] port's error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    #[error("credential '{name}' not found: {hint}")]
    NotFound { name: String, hint: String },
    #[error("credential '{name}' is malformed: {detail}")]
    Malformed { name: String, detail: String },
    #[error("credential '{name}' could not be read: {detail}")]
    Unavailable { name: String, detail: String },
}

pub use certificate::{CertificateCredential, CertificateError, KeyProblem, PemInput};
pub use signed_in::SignedIn;

/// How an app proves who it is to Entra ID (docs/graph.md §1). `Debug` never shows a secret or a
/// private key.
#[derive(Clone)]
pub enum ClientAuth {
    /// A client secret's Value.
    Secret(SecretString),
    /// A certificate registered on the app, and its private key: the token request carries a
    /// client assertion signed with it.
    Certificate(CertificateCredential),
    /// Nothing of its own: a public client, which only a delegated credential can be (a person's
    /// sign-in stands in for the app's secret; docs/delegated.md).
    Public,
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret(_) => f.write_str("Secret([REDACTED])"),
            Self::Certificate(certificate) => {
                f.debug_tuple("Certificate").field(certificate).finish()
            }
            Self::Public => f.write_str("Public"),
        }
    }
}

/// A client secret's Value.
impl From<String> for ClientAuth {
    fn from(value: String) -> Self {
        Self::Secret(SecretString::from(value))
    }
}

impl From<SecretString> for ClientAuth {
    fn from(value: SecretString) -> Self {
        Self::Secret(value)
    }
}

impl From<CertificateCredential> for ClientAuth {
    fn from(value: CertificateCredential) -> Self {
        Self::Certificate(value)
    }
}

/// One Entra app registration's client credentials: a client secret or a certificate. `Debug`
/// never shows the secret or the private key.
#[derive(Clone)]
pub struct AppCredential {
    pub tenant_id: String,
    pub client_id: String,
    /// The client secret or the certificate.
    pub secret: ClientAuth,
    /// The Graph `keyId` of the password or certificate in use, if recorded (docs/graph.md §9):
    /// how the app's `passwordCredentials`/`keyCredentials` entry of this credential is found.
    pub key_id: Option<String>,
    /// When the credential expires: a certificate's notAfter, or what the operator recorded for a
    /// secret (used because Graph does not tell a client when its secret expires).
    pub expires_at: Option<OffsetDateTime>,
    /// For a delegated credential: whose sign-in its tokens come from. `None` for application
    /// permissions (the client-credentials grant).
    pub delegated: Option<Delegation>,
}

/// Where the sign-in of a delegated credential is kept: a file under the data dir locally, the
/// credential's own Secrets Manager secret on AWS. The port of [`Delegation`]: defined with the
/// credential that needs it, and re-exported by [`crate::ports`].
#[async_trait::async_trait]
pub trait SignInStore: Send + Sync {
    /// The sign-in of credential `name`, or `None` if nobody has signed in for it yet.
    async fn load(&self, name: &str) -> Result<Option<SignedIn>, SecretError>;
    /// Replaces the sign-in of `name` in one step: a reader sees the old one or the new one,
    /// never a mix, and a crash part-way leaves the old one.
    async fn save(&self, name: &str, signed_in: &SignedIn) -> Result<(), SecretError>;
}

/// A delegated credential's grant: the person who signed in for credential `name` (with
/// `mailroom credentials login NAME`), the Graph scopes they granted, and where their refresh
/// token is kept. Access tokens come from redeeming that refresh token, each redemption storing
/// the new one before its access token is used (docs/delegated.md).
#[derive(Clone)]
pub struct Delegation {
    /// The credential's name: what `mailroom credentials login` signs in for.
    pub name: String,
    /// The Graph scopes asked for at every redemption, e.g. `Mail.ReadWrite`.
    pub scopes: Vec<String>,
    pub sign_ins: Arc<dyn SignInStore>,
}

impl fmt::Debug for Delegation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delegation")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// The Graph scopes a delegated credential asks for unless it names its own: read and change the
/// signed-in user's mail, and a refresh token (docs/delegated.md).
pub const DEFAULT_DELEGATED_SCOPES: [&str; 2] = ["Mail.ReadWrite", "offline_access"];

impl fmt::Debug for AppCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCredential")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("secret", &self.secret)
            .field("key_id", &self.key_id)
            .field("expires_at", &self.expires_at)
            .field("delegated", &self.delegated)
            .finish()
    }
}

impl AppCredential {
    /// A credential for `secret`, expiring when its certificate does (a secret's expiry is
    /// unknown until set).
    pub fn new(
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        secret: ClientAuth,
    ) -> Self {
        let expires_at = match &secret {
            ClientAuth::Secret(_) | ClientAuth::Public => None,
            ClientAuth::Certificate(certificate) => Some(certificate.not_after()),
        };
        Self {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            secret,
            key_id: None,
            expires_at,
            delegated: None,
        }
    }

    /// Parses the JSON of an app credential's secret, either form:
    /// `{"tenant_id": "…", "client_id": "…", "client_secret": "…", "expires_at": "2026-01-01T00:00:00Z"}`
    /// or `{"tenant_id": "…", "client_id": "…", "certificate_pem": "-----BEGIN CERTIFICATE-----\n…",
    /// "private_key_pem": "-----BEGIN PRIVATE KEY-----\n…"}`, each with an optional `key_id`.
    /// A certificate's expiry is its notAfter; `expires_at` is only read for a secret. A delegated
    /// credential's secret (`"kind": "delegated"`) is refused here: it needs the store of its
    /// sign-in, [`Self::from_stored`].
    ///
    /// Errors name the credential and the field, never a value: serde's own messages can quote
    /// the input, which here is a secret.
    pub fn from_json(name: &str, json: &str) -> Result<Self, SecretError> {
        match Self::parse(name, json)? {
            (credential, None) => Ok(credential),
            (_, Some(_)) => Err(SecretError::Malformed {
                name: name.to_owned(),
                detail: "it is a delegated credential (\"kind\": \"delegated\"), where an app credential (a client secret or certificate) is needed".into(),
            }),
        }
    }

    /// Parses a stored credential of either kind. An app credential as [`Self::from_json`]; a
    /// delegated one is `{"kind": "delegated", "tenant_id": "…", "client_id": "…", "scopes":
    /// ["Mail.ReadWrite", "offline_access"]}`, with a client secret or certificate only for a
    /// confidential client, and the sign-in that `mailroom credentials login` adds
    /// ([`SignedIn`]), which `sign_ins` keeps.
    pub fn from_stored(
        name: &str,
        json: &str,
        sign_ins: Arc<dyn SignInStore>,
    ) -> Result<Self, SecretError> {
        let (mut credential, scopes) = Self::parse(name, json)?;
        credential.delegated = scopes.map(|scopes| Delegation {
            name: name.to_owned(),
            scopes,
            sign_ins,
        });
        Ok(credential)
    }

    /// The credential and, for a delegated one, its scopes.
    fn parse(name: &str, json: &str) -> Result<(Self, Option<Vec<String>>), SecretError> {
        let malformed = |detail: String| SecretError::Malformed {
            name: name.to_owned(),
            detail,
        };
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
            malformed(format!(
                "not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let object = value
            .as_object()
            .ok_or_else(|| malformed("expected a JSON object".into()))?;
        let text = |field: &str| -> Result<Option<String>, SecretError> {
            match object.get(field) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) if s.trim().is_empty() => {
                    Err(malformed(format!("field '{field}' is empty")))
                }
                Some(serde_json::Value::String(s)) => Ok(Some(s.trim().to_owned())),
                Some(_) => Err(malformed(format!("field '{field}' must be a string"))),
            }
        };
        let required = |field: &str| -> Result<String, SecretError> {
            text(field)?.ok_or_else(|| malformed(format!("field '{field}' is missing")))
        };
        let delegated = match text("kind")?.as_deref() {
            None | Some("app") => false,
            Some("delegated") => true,
            Some(other) => {
                return Err(malformed(format!(
                    "field 'kind' is '{}'; it must be \"app\" (the default) or \"delegated\"",
                    crate::domain::shown(other)
                )));
            }
        };
        let scopes = if delegated {
            Some(match object.get("scopes") {
                None | Some(serde_json::Value::Null) => DEFAULT_DELEGATED_SCOPES
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .map(|item| match item.as_str().map(str::trim) {
                        Some(scope) if !scope.is_empty() && !scope.contains([' ', ',']) => {
                            Ok(scope.to_owned())
                        }
                        _ => Err(malformed(
                            "field 'scopes' must be a list of scope names such as [\"Mail.ReadWrite\", \"offline_access\"]".into(),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                Some(_) => {
                    return Err(malformed(
                        "field 'scopes' must be a list of scope names such as [\"Mail.ReadWrite\", \"offline_access\"]".into(),
                    ));
                }
            })
        } else {
            None
        };
        let tenant_id = required("tenant_id")?;
        let client_id = required("client_id")?;
        let key_id = text("key_id")?;
        let expires_at = text("expires_at")?
            .map(|s| {
                OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339).map_err(
                    |_| {
                        malformed(
                            "field 'expires_at' must be an RFC 3339 time such as 2026-06-30T00:00:00Z"
                                .into(),
                        )
                    },
                )
            })
            .transpose()?;
        let either = "provide either client_secret (the secret's Value) or certificate_pem and private_key_pem (a certificate registered on the app and its PKCS#8 private key, as PEM)";
        let secret = match (
            text("client_secret")?,
            text("certificate_pem")?,
            text("private_key_pem")?,
        ) {
            (Some(secret), None, None) => ClientAuth::Secret(SecretString::from(secret)),
            (None, Some(certificate), Some(key)) => ClientAuth::Certificate(
                CertificateCredential::from_pem(&certificate, &key)
                    .map_err(|e| malformed(e.to_string()))?,
            ),
            (Some(_), _, _) => {
                return Err(malformed(format!(
                    "it has both client_secret and certificate fields; {either}, not both"
                )));
            }
            (None, Some(_), None) => {
                return Err(malformed(
                    "field 'private_key_pem' is missing: a certificate needs its private key (PKCS#8 PEM) next to certificate_pem".into(),
                ));
            }
            (None, None, Some(_)) => {
                return Err(malformed(
                    "field 'certificate_pem' is missing: the private key needs its certificate (PEM) next to private_key_pem".into(),
                ));
            }
            (None, None, None) if delegated => ClientAuth::Public,
            (None, None, None) => {
                return Err(malformed(format!(
                    "fields 'client_secret' or 'certificate_pem' and 'private_key_pem' are missing; {either}"
                )));
            }
        };
        let mut credential = Self::new(tenant_id, client_id, secret);
        credential.key_id = key_id;
        if credential.expires_at.is_none() {
            credential.expires_at = expires_at;
        }
        Ok((credential, scopes))
    }

    /// The client secret, if this credential is one.
    pub fn client_secret(&self) -> Option<&SecretString> {
        match &self.secret {
            ClientAuth::Secret(secret) => Some(secret),
            ClientAuth::Certificate(_) | ClientAuth::Public => None,
        }
    }

    /// The certificate, if this credential is one.
    pub fn certificate(&self) -> Option<&CertificateCredential> {
        match &self.secret {
            ClientAuth::Secret(_) | ClientAuth::Public => None,
            ClientAuth::Certificate(certificate) => Some(certificate),
        }
    }

    /// Whether two credentials carry the same secret value or certificate (used after a re-read).
    pub fn same_secret(&self, other: &AppCredential) -> bool {
        match (&self.secret, &other.secret) {
            (ClientAuth::Secret(a), ClientAuth::Secret(b)) => {
                a.expose_secret() == b.expose_secret()
            }
            (ClientAuth::Certificate(a), ClientAuth::Certificate(b)) => a.same_certificate(b),
            (ClientAuth::Public, ClientAuth::Public) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "Xy7~q.Lk3-very-secret-value";

    #[test]
    fn parses_a_complete_secret() {
        let json = format!(
            r#"{{"tenant_id":"t","client_id":"c","client_secret":"{SECRET}","expires_at":"2026-06-30T00:00:00Z"}}"#
        );
        let c = AppCredential::from_json("contoso", &json).unwrap();
        assert_eq!(c.client_id, "c");
        assert_eq!(c.client_secret().unwrap().expose_secret(), SECRET);
        assert_eq!(c.key_id, None);
        assert_eq!(c.expires_at.unwrap().year(), 2026);
        assert!(!format!("{c:?}").contains(SECRET));
    }

    #[test]
    fn errors_name_the_field_and_never_the_value() {
        let cases = [
            (
                format!(r#"{{"tenant_id":"t","client_secret":"{SECRET}"}}"#),
                "client_id",
            ),
            (
                format!(
                    r#"{{"tenant_id":"t","client_id":"c","client_secret":"{SECRET}","expires_at":"soon"}}"#
                ),
                "expires_at",
            ),
            (
                r#"{"tenant_id":"t","client_id":"c","client_secret":1}"#.to_string(),
                "client_secret",
            ),
            (format!("not json {SECRET}"), "not valid JSON"),
            (
                r#"{"tenant_id":"t","client_id":"c"}"#.to_string(),
                "provide either client_secret (the secret's Value) or certificate_pem and private_key_pem",
            ),
        ];
        for (json, expected) in cases {
            let err = AppCredential::from_json("contoso", &json)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{err}");
            assert!(err.contains("contoso"), "{err}");
            assert!(!err.contains(SECRET), "{err}");
        }
    }

    const CERT: &str = include_str!("../../../sandbox/fixtures/app-cert.pem");
    const KEY: &str = include_str!("../../../sandbox/fixtures/app-key.pem");

    /// A line from the middle of the key's base64: if it shows anywhere, key material leaked.
    fn key_line() -> &'static str {
        KEY.lines().nth(5).unwrap()
    }

    fn certificate_json(extra: &str) -> String {
        serde_json::json!({
            "tenant_id": "t",
            "client_id": "c",
            "certificate_pem": CERT,
            "private_key_pem": KEY,
        })
        .to_string()
        .replacen('{', &format!("{{{extra}"), 1)
    }

    #[test]
    fn parses_a_certificate_with_its_not_after_as_expiry() {
        let c = AppCredential::from_json(
            "contoso",
            &certificate_json(r#""key_id":"5b3e1f7a-0000-4000-8000-000000000001","expires_at":"2030-01-01T00:00:00Z","#),
        )
        .unwrap();
        assert!(c.client_secret().is_none());
        let certificate = c.certificate().unwrap();
        assert_eq!(
            certificate.not_after(),
            time::macros::datetime!(2046-11-18 11:40:56 UTC)
        );
        // The certificate knows its expiry better than a recorded one.
        assert_eq!(c.expires_at, Some(certificate.not_after()));
        assert_eq!(
            c.key_id.as_deref(),
            Some("5b3e1f7a-0000-4000-8000-000000000001")
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains(key_line()), "{shown}");
        assert!(shown.contains("Certificate"), "{shown}");
    }

    #[test]
    fn a_secret_keeps_its_recorded_key_id() {
        let json = format!(
            r#"{{"tenant_id":"t","client_id":"c","client_secret":"{SECRET}","key_id":"k-1"}}"#
        );
        let c = AppCredential::from_json("contoso", &json).unwrap();
        assert_eq!(c.key_id.as_deref(), Some("k-1"));
        assert_eq!(c.expires_at, None);
    }

    #[test]
    fn certificate_errors_say_what_to_provide_and_never_show_the_key() {
        let pkcs1 = KEY.replace("PRIVATE KEY", "RSA PRIVATE KEY");
        let garbage = "-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END PRIVATE KEY-----\n";
        let with = |pairs: &[(&str, &str)]| {
            let mut object = serde_json::json!({"tenant_id": "t", "client_id": "c"});
            for (field, value) in pairs {
                object[*field] = serde_json::Value::from(*value);
            }
            object.to_string()
        };
        let cases = [
            (
                with(&[("certificate_pem", CERT)]),
                "field 'private_key_pem' is missing",
            ),
            (
                with(&[("private_key_pem", KEY)]),
                "field 'certificate_pem' is missing",
            ),
            (
                with(&[
                    ("client_secret", SECRET),
                    ("certificate_pem", CERT),
                    ("private_key_pem", KEY),
                ]),
                "both client_secret and certificate fields; provide either client_secret",
            ),
            (
                with(&[("client_secret", SECRET), ("private_key_pem", KEY)]),
                "not both",
            ),
            (
                with(&[("certificate_pem", CERT), ("private_key_pem", &pkcs1)]),
                "private_key_pem is a PKCS#1 key",
            ),
            (
                with(&[("certificate_pem", CERT), ("private_key_pem", garbage)]),
                "private_key_pem is not a PKCS#8 RSA key",
            ),
            (
                with(&[
                    ("certificate_pem", CERT),
                    ("private_key_pem", &KEY[..KEY.len() / 2]),
                ]),
                "private_key_pem is not valid PEM",
            ),
            (
                with(&[
                    ("certificate_pem", "MIIDGTCCAgGgAwIBAgIU"),
                    ("private_key_pem", KEY),
                ]),
                "certificate_pem holds no PEM certificate",
            ),
            (
                with(&[("certificate_pem", KEY), ("private_key_pem", KEY)]),
                "certificate_pem holds no PEM certificate",
            ),
        ];
        for (json, expected) in cases {
            let err = AppCredential::from_json("contoso", &json).unwrap_err();
            assert!(matches!(err, SecretError::Malformed { .. }), "{err:?}");
            let shown = format!("{err} {err:?}");
            assert!(shown.contains(expected), "{shown}");
            assert!(shown.contains("contoso"), "{shown}");
            assert!(!shown.contains(key_line()), "{shown}");
            assert!(!shown.contains(SECRET), "{shown}");
        }
    }

    #[test]
    fn same_secret_compares_values_and_certificates() {
        let secret = |value: &str| AppCredential::new("t", "c", value.to_owned().into());
        let certificate = AppCredential::from_json("contoso", &certificate_json("")).unwrap();
        assert!(secret("a").same_secret(&secret("a")));
        assert!(!secret("a").same_secret(&secret("b")));
        assert!(certificate.same_secret(&certificate.clone()));
        assert!(!certificate.same_secret(&secret("a")));
    }
}
