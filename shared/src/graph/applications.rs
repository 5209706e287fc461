//! The app's own registration (docs/graph.md §9): its client secrets (`passwordCredentials`) and
//! certificates (`keyCredentials`) with their expiry, and `addPassword` / `removePassword` for
//! rotation. Not about a mailbox: an [`AppClient`] shares the [`GraphClient`]'s tokens, retries
//! and error classification, with one in-flight gate for every `/applications` request.
//!
//! Reading needs `Application.Read.All` (or `Application.ReadWrite.OwnedBy` on an app that owns
//! itself); writing needs `Application.ReadWrite.OwnedBy`. A 403 is
//! [`GraphError::ApplicationPermissionDenied`], naming the permission.

use std::fmt;

use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::Url;

use super::client::{GraphClient, Request, Target, encode};
use super::error::{GraphError, Operation};
use crate::credentials::AppCredential;

/// The properties [`AppClient::application`] asks for.
const SELECT: &str = "id,appId,displayName,passwordCredentials,keyCredentials";

/// An application object with its credentials (`$select`ed).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    /// The application object id ("Object ID"; not the client id).
    #[serde(default)]
    pub id: String,
    /// The client (application) id.
    #[serde(default)]
    pub app_id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub password_credentials: Vec<PasswordCredential>,
    #[serde(default)]
    pub key_credentials: Vec<KeyCredential>,
}

/// A client secret as Graph lists it: never its value, only a hint of three characters.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordCredential {
    #[serde(default)]
    pub key_id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    /// The first three characters of the secret. Not shown by `Debug`.
    #[serde(default)]
    pub hint: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub start_date_time: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub end_date_time: Option<OffsetDateTime>,
}

impl fmt::Debug for PasswordCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordCredential")
            .field("key_id", &self.key_id)
            .field("display_name", &self.display_name)
            .field("start_date_time", &self.start_date_time)
            .field("end_date_time", &self.end_date_time)
            .finish_non_exhaustive()
    }
}

/// A certificate registered on the app.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyCredential {
    #[serde(default)]
    pub key_id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    /// The certificate's SHA-1 thumbprint: Graph documents it as binary (base64 on the wire);
    /// some responses carry the hex thumbprint. [`KeyCredential::has_thumbprint`] accepts both.
    #[serde(default)]
    pub custom_key_identifier: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub start_date_time: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub end_date_time: Option<OffsetDateTime>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub usage: Option<String>,
}

impl KeyCredential {
    /// Whether `customKeyIdentifier` is the SHA-1 thumbprint `sha1_hex` (hex, any case), written
    /// as hex or as the base64 of its 20 bytes.
    pub fn has_thumbprint(&self, sha1_hex: &str) -> bool {
        use base64::Engine as _;
        let Some(identifier) = self.custom_key_identifier.as_deref().map(str::trim) else {
            return false;
        };
        if identifier.eq_ignore_ascii_case(sha1_hex) {
            return true;
        }
        let Ok(expected) = hex::decode(sha1_hex) else {
            return false;
        };
        base64::engine::general_purpose::STANDARD
            .decode(identifier)
            .is_ok_and(|bytes| bytes == expected)
    }
}

/// A client secret just created by `addPassword`: the only time Graph shows its value.
/// `Debug` never shows it.
#[derive(Clone)]
pub struct NewPassword {
    pub key_id: String,
    pub display_name: Option<String>,
    pub secret_text: SecretString,
    pub end_date_time: Option<OffsetDateTime>,
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewPassword")
            .field("key_id", &self.key_id)
            .field("display_name", &self.display_name)
            .field("secret_text", &"[REDACTED]")
            .field("end_date_time", &self.end_date_time)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddPasswordReply {
    key_id: String,
    #[serde(default)]
    display_name: Option<String>,
    secret_text: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    end_date_time: Option<OffsetDateTime>,
}

/// Graph access to the registration of the credential's own app.
#[derive(Clone)]
pub struct AppClient {
    client: GraphClient,
    credential: AppCredential,
}

impl GraphClient {
    /// A handle on the app registration of `credential`, authenticating with it.
    pub fn app(&self, credential: AppCredential) -> AppClient {
        AppClient {
            client: self.clone(),
            credential,
        }
    }
}

impl AppClient {
    pub fn credential(&self) -> &AppCredential {
        &self.credential
    }

    /// `{graph}/v1.0/applications(appId='{client id}')[/{action}]`.
    fn url(&self, action: Option<&str>) -> Url {
        let mut path = format!(
            "applications(appId='{}')",
            encode(&self.credential.client_id)
        );
        if let Some(action) = action {
            path.push('/');
            path.push_str(action);
        }
        self.client.inner.config.v1_url(&path)
    }

    /// The app's registration with its secrets and certificates.
    pub async fn application(&self) -> Result<Application, GraphError> {
        let mut url = self.url(None);
        url.set_query(Some(&format!("$select={SELECT}")));
        self.client
            .json(
                &self.credential,
                Target::Application,
                Request::get(Operation::ReadApplication, url),
            )
            .await
    }

    /// Adds a client secret named `display_name` expiring at `end`. The reply holds its value,
    /// shown this once.
    pub async fn add_password(
        &self,
        display_name: &str,
        end: OffsetDateTime,
    ) -> Result<NewPassword, GraphError> {
        let end_text = end.format(&Rfc3339).map_err(|e| {
            GraphError::Config(format!(
                "the new secret's end date {end} cannot be written: {e}"
            ))
        })?;
        let reply: AddPasswordReply = self
            .client
            .json(
                &self.credential,
                Target::Application,
                Request {
                    operation: Operation::AddPassword,
                    method: Method::POST,
                    url: self.url(Some("addPassword")),
                    json: Some(json!({
                        "passwordCredential": {
                            "displayName": display_name,
                            "endDateTime": end_text,
                        }
                    })),
                    max_page_size: None,
                },
            )
            .await?;
        let secret_text = reply.secret_text.filter(|s| !s.is_empty()).ok_or_else(|| {
            GraphError::MalformedResponse {
                operation: Operation::AddPassword.name(),
                detail: "the reply holds no secretText".into(),
            }
        })?;
        Ok(NewPassword {
            key_id: reply.key_id,
            display_name: reply.display_name,
            secret_text: SecretString::from(secret_text),
            end_date_time: reply.end_date_time,
        })
    }

    /// Removes the client secret `key_id`. One the app no longer has fails with
    /// [`GraphError::is_not_found`].
    pub async fn remove_password(&self, key_id: &str) -> Result<(), GraphError> {
        self.client
            .execute(
                &self.credential,
                Target::Application,
                Request {
                    operation: Operation::RemovePassword,
                    method: Method::POST,
                    url: self.url(Some("removePassword")),
                    json: Some(json!({ "keyId": key_id })),
                    max_page_size: None,
                },
                false,
            )
            .await
            .map(drop)
    }
}

impl AppClient {
    /// Whether Graph refuses the app the right to manage its own passwords
    /// (Application.ReadWrite.OwnedBy, and its service principal an owner of its registration),
    /// which rotation needs, found without changing anything: `removePassword` of a key id that
    /// does not exist. A 403 is Graph's documented answer to a missing permission. Graph
    /// documents no answer for a key id the app does not have (its reference page lists only
    /// 204), so anything else proves only that the permission was not refused: a real rotation
    /// is the proof (docs/graph.md §9).
    pub async fn probe_password_management(&self) -> Result<PasswordManagement, GraphError> {
        match self
            .remove_password("00000000-0000-4000-8000-000000000000")
            .await
        {
            Ok(()) => Ok(PasswordManagement::NotRefused { status: 204 }),
            Err(GraphError::ApplicationPermissionDenied { .. }) => Ok(PasswordManagement::Refused),
            Err(GraphError::Api { status, .. }) if (400..500).contains(&status) => {
                Ok(PasswordManagement::NotRefused { status })
            }
            Err(e) if e.is_not_found() => Ok(PasswordManagement::NotRefused { status: 404 }),
            Err(e) => Err(e),
        }
    }
}

/// What [`AppClient::probe_password_management`] could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordManagement {
    /// Graph refused the permission (403): rotation cannot work until it is granted.
    Refused,
    /// Graph answered `status` without refusing the permission; only a rotation proves it.
    NotRefused { status: u16 },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphConfig;

    #[test]
    fn the_url_names_the_app_by_its_client_id() {
        let config = GraphConfig::new(
            Url::parse("http://127.0.0.1:9000/graph/").unwrap(),
            Url::parse("https://login.microsoftonline.com").unwrap(),
        );
        let app = GraphClient::new(config).unwrap().app(AppCredential::new(
            "t",
            "3e9b-7a21",
            "s".to_owned().into(),
        ));
        assert_eq!(
            app.url(Some("addPassword")).as_str(),
            "http://127.0.0.1:9000/graph/v1.0/applications(appId='3e9b-7a21')/addPassword"
        );
    }

    #[test]
    fn thumbprints_match_as_hex_or_base64() {
        let key = |identifier: &str| KeyCredential {
            key_id: "k".into(),
            display_name: None,
            custom_key_identifier: Some(identifier.into()),
            start_date_time: None,
            end_date_time: None,
            kind: None,
            usage: None,
        };
        let hex = "52A7C2B3D4E5F60718293A4B5C6D7E8F90A1B2C3";
        assert!(key(hex).has_thumbprint(hex));
        assert!(key(&hex.to_ascii_lowercase()).has_thumbprint(hex));
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(hex::decode(hex).unwrap());
        assert!(key(&b64).has_thumbprint(hex));
        assert!(!key("AAAA").has_thumbprint(hex));
    }

    #[test]
    fn parses_graph_shapes_and_never_shows_a_hint_or_a_secret() {
        let application: Application = serde_json::from_str(
            r#"{"id":"o","appId":"c","displayName":"Mailroom",
               "passwordCredentials":[{"customKeyIdentifier":null,"displayName":null,"endDateTime":"2027-01-01T00:00:00Z","hint":"Xk4","keyId":"k1","secretText":null,"startDateTime":"2026-01-01T00:00:00Z"}],
               "keyCredentials":[{"customKeyIdentifier":"AB","displayName":"CN=x","endDateTime":"2030-01-01T00:00:00Z","key":null,"keyId":"k2","startDateTime":"2025-01-01T00:00:00Z","type":"AsymmetricX509Cert","usage":"Verify"}]}"#,
        )
        .unwrap();
        assert_eq!(
            application.password_credentials[0].hint.as_deref(),
            Some("Xk4")
        );
        assert!(!format!("{application:?}").contains("Xk4"));
        assert_eq!(
            application.key_credentials[0].kind.as_deref(),
            Some("AsymmetricX509Cert")
        );
        let new = NewPassword {
            key_id: "k".into(),
            display_name: None,
            secret_text: SecretString::from("very-secret-value".to_owned()),
            end_date_time: None,
        };
        assert!(!format!("{new:?}").contains("very-secret"));
    }
}
