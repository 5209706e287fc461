//! The tenant's directory, for discovering mailboxes (docs/graph.md §8): every user, or the users
//! of a group through nested groups, each with its mail address and whether its account is
//! enabled (a shared mailbox's is not). Lists are read to the end, 999 to a page, following
//! `@odata.nextLink` only back to the configured Graph URL.
//!
//! Listing users needs `User.Read.All`, groups and their members `GroupMember.Read.All`; a 403
//! names the permission ([`GraphError::ApplicationPermissionDenied`]). An unknown group is
//! [`GraphError::GroupNotFound`].

use serde::Deserialize;
use url::Url;

use super::client::{GraphClient, PagesRead, Request, Target, encode};
use super::error::{GraphError, Operation};
use super::model::Page;
use crate::credentials::AppCredential;

/// The properties asked for each user.
const USER_SELECT: &str = "id,mail,userPrincipalName,accountEnabled";
/// The largest page the directory serves.
const PAGE: u32 = 999;

/// A user as discovery needs it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryUser {
    pub id: String,
    /// The primary SMTP address; `None` for a user without mail.
    #[serde(default)]
    pub mail: Option<String>,
    #[serde(default)]
    pub user_principal_name: Option<String>,
    /// `false` for a shared mailbox (and a blocked user); Graph omits it only if not selected.
    #[serde(default)]
    pub account_enabled: Option<bool>,
}

/// A group, as found by name or id.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryGroup {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// Graph access to the directory of the credential's tenant.
#[derive(Clone)]
pub struct DirectoryClient {
    client: GraphClient,
    credential: AppCredential,
}

impl GraphClient {
    /// A handle on the directory of `credential`'s tenant, authenticating with it.
    pub fn directory(&self, credential: AppCredential) -> DirectoryClient {
        DirectoryClient {
            client: self.clone(),
            credential,
        }
    }
}

impl DirectoryClient {
    /// Every user of the tenant.
    pub async fn users(&self) -> Result<Vec<DirectoryUser>, GraphError> {
        let mut url = self.client.inner.config.v1_url("users");
        url.set_query(Some(&format!("$select={USER_SELECT}&$top={PAGE}")));
        self.all(Operation::ListUsers, url).await
    }

    /// Whether the credential may list the tenant's users: one user read, not the directory.
    pub async fn can_list_users(&self) -> Result<(), GraphError> {
        let mut url = self.client.inner.config.v1_url("users");
        url.set_query(Some("$select=id&$top=1"));
        self.client
            .json::<Page<serde_json::Value>>(
                &self.credential,
                Target::Directory,
                Request::get(Operation::ListUsers, url),
            )
            .await
            .map(drop)
    }

    /// The group named `name_or_id`: its object id, or else its display name (case-insensitive,
    /// as Graph compares it). [`GraphError::GroupNotFound`] when there is none.
    pub async fn group(&self, name_or_id: &str) -> Result<DirectoryGroup, GraphError> {
        if looks_like_object_id(name_or_id) {
            let mut url = self
                .client
                .inner
                .config
                .v1_url(&format!("groups/{}", encode(name_or_id)));
            url.set_query(Some("$select=id,displayName"));
            return self
                .client
                .json(
                    &self.credential,
                    Target::Directory,
                    Request::get(Operation::FindGroup, url),
                )
                .await
                .map_err(|e| not_found_as(e, name_or_id));
        }
        let mut url = self.client.inner.config.v1_url("groups");
        let filter = format!("displayName eq '{}'", name_or_id.replace('\'', "''"));
        url.query_pairs_mut()
            .append_pair("$filter", &filter)
            .append_pair("$select", "id,displayName");
        let mut found = self
            .all::<DirectoryGroup>(Operation::FindGroup, url)
            .await?;
        match found.len() {
            0 => Err(GraphError::GroupNotFound {
                group: name_or_id.to_owned(),
            }),
            _ => Ok(found.swap_remove(0)),
        }
    }

    /// The users of group `group_id`, through nested groups, each once.
    pub async fn group_users(&self, group_id: &str) -> Result<Vec<DirectoryUser>, GraphError> {
        let mut url = self.client.inner.config.v1_url(&format!(
            "groups/{}/transitiveMembers/microsoft.graph.user",
            encode(group_id)
        ));
        url.set_query(Some(&format!("$select={USER_SELECT}&$top={PAGE}")));
        self.all(Operation::ListGroupMembers, url)
            .await
            .map_err(|e| not_found_as(e, group_id))
    }

    /// Every page of a list.
    async fn all<T: serde::de::DeserializeOwned>(
        &self,
        operation: Operation,
        first: Url,
    ) -> Result<Vec<T>, GraphError> {
        let mut items = Vec::new();
        let mut next = Some(first);
        let mut read = PagesRead::default();
        while let Some(url) = next.take() {
            read.visit(operation, &url)?;
            let page: Page<T> = self
                .client
                .json(
                    &self.credential,
                    Target::Directory,
                    Request::get(operation, url),
                )
                .await?;
            items.extend(page.value);
            if let Some(link) = page.next_link {
                next = Some(self.client.trusted_link(operation, &link)?);
            }
        }
        Ok(items)
    }
}

/// A directory object id: a GUID.
fn looks_like_object_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A 404 about a group, as [`GraphError::GroupNotFound`].
fn not_found_as(error: GraphError, group: &str) -> GraphError {
    match error {
        GraphError::Api { status: 404, .. } => GraphError::GroupNotFound {
            group: group.to_owned(),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_are_guids() {
        assert!(looks_like_object_id("11111111-0000-0000-0000-00000000000a"));
        assert!(!looks_like_object_id("Sales"));
        assert!(!looks_like_object_id(
            "11111111-0000-0000-0000-00000000000g"
        ));
    }
}
