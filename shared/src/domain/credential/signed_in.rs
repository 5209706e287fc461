//! A delegated credential's sign-in, as kept between runs: who signed in, what Entra granted,
//! and the refresh token that gets access tokens without the person (docs/graph.md section 13).
//! `Debug` never shows the refresh token; the JSON form holds it, and is written only where only
//! its owner can read it (a file of mode 0600 locally, a Secrets Manager secret on AWS).

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::SecretError;

/// What `mailroom credentials login` stores.
#[derive(Clone)]
pub struct SignedIn {
    /// The account that signed in (the ID token's `preferred_username`), if Entra named it.
    pub user: Option<String>,
    /// The scopes Entra granted, as the token answer listed them.
    pub scopes: Vec<String>,
    pub refresh_token: SecretString,
    /// When the person signed in.
    pub signed_in_at: OffsetDateTime,
    /// When the refresh token was last redeemed (or obtained): Entra expires it after 90 days
    /// without use.
    pub refreshed_at: OffsetDateTime,
}

impl fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedIn")
            .field("user", &self.user)
            .field("scopes", &self.scopes)
            .field("refresh_token", &"[REDACTED]")
            .field("signed_in_at", &self.signed_in_at)
            .field("refreshed_at", &self.refreshed_at)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    refresh_token: String,
    #[serde(with = "time::serde::rfc3339")]
    signed_in_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    refreshed_at: OffsetDateTime,
}

/// The `kind` of the stored JSON.
const KIND: &str = "delegated";

impl SignedIn {
    /// Days a refresh token may go unused before Entra refuses it (AADSTS700082): Entra's default
    /// lifetime, which its error text shows is inactivity; each redemption's new token starts its
    /// own window (docs/graph.md section 13, "Lifetime").
    pub const INACTIVITY_DAYS: i64 = 90;

    /// When this sign-in lapses unless its refresh token is redeemed before: [`Self::INACTIVITY_DAYS`]
    /// after the last redemption.
    pub fn lapses_at(&self) -> OffsetDateTime {
        self.refreshed_at + time::Duration::days(Self::INACTIVITY_DAYS)
    }

    /// The stored form: `{"kind": "delegated", "user": …, "scopes": […], "refresh_token": …,
    /// "signed_in_at": …, "refreshed_at": …}`.
    pub fn to_json(&self) -> SecretString {
        let stored = Stored {
            kind: KIND.to_owned(),
            user: self.user.clone(),
            scopes: self.scopes.clone(),
            refresh_token: self.refresh_token.expose_secret().to_owned(),
            signed_in_at: self.signed_in_at,
            refreshed_at: self.refreshed_at,
        };
        // Serializing strings and times cannot fail.
        SecretString::from(serde_json::to_string_pretty(&stored).unwrap_or_default())
    }

    /// Reads the stored form back. Errors name the credential and what is wrong, never a value
    /// (serde's messages can quote the input).
    pub fn from_json(name: &str, json: &str) -> Result<Self, SecretError> {
        let stored: Stored = serde_json::from_str(json).map_err(|e| SecretError::Malformed {
            name: name.to_owned(),
            detail: format!(
                "the stored sign-in is not what `mailroom credentials login` writes (line {}, column {}); sign in again: mailroom credentials login {name}",
                e.line(),
                e.column()
            ),
        })?;
        if stored.kind != KIND || stored.refresh_token.trim().is_empty() {
            return Err(SecretError::Malformed {
                name: name.to_owned(),
                detail: format!(
                    "the stored sign-in has no refresh token; sign in again: mailroom credentials login {name}"
                ),
            });
        }
        Ok(Self {
            user: stored.user,
            scopes: stored.scopes,
            refresh_token: SecretString::from(stored.refresh_token),
            signed_in_at: stored.signed_in_at,
            refreshed_at: stored.refreshed_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_reads_back_and_debug_hides_the_token() {
        let now =
            OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap_or_else(|_| unreachable!());
        let signed_in = SignedIn {
            user: Some("alice@contoso.com".into()),
            scopes: vec!["Mail.ReadWrite".into()],
            refresh_token: SecretString::from("rt-0123456789"),
            signed_in_at: now,
            refreshed_at: now,
        };
        let json = signed_in.to_json();
        let back =
            SignedIn::from_json("alice", json.expose_secret()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.refresh_token.expose_secret(), "rt-0123456789");
        assert_eq!(back.user.as_deref(), Some("alice@contoso.com"));
        assert!(!format!("{back:?}").contains("rt-0123456789"));
        let error = SignedIn::from_json("alice", r#"{"refresh_token": "rt-0123456789""#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("mailroom credentials login alice"),
            "{error}"
        );
        assert!(!error.contains("rt-0123456789"), "{error}");
    }
}
