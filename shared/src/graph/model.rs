//! The Graph resources Mailroom reads, as Graph sends them. Unknown fields are ignored; fields
//! Mailroom can live without are optional.

use serde::Deserialize;
use time::OffsetDateTime;

use crate::domain::MessageId;

/// One page of a collection (docs/graph.md §2, §5).
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    pub next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    pub delta_link: Option<String>,
}

/// A mail folder (`mailFolder` resource).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MailFolder {
    pub id: String,
    /// `#microsoft.graph.mailSearchFolder` for a search folder: OData marks an entity of a
    /// derived type in a collection of its base type (OData JSON Format 4.01, §4.5.3).
    #[serde(rename = "@odata.type", default)]
    pub odata_type: Option<String>,
    #[serde(default)]
    pub display_name: String,
    pub parent_folder_id: Option<String>,
    #[serde(default)]
    pub child_folder_count: u32,
    #[serde(default)]
    pub total_item_count: u64,
    #[serde(default)]
    pub unread_item_count: u64,
}

impl MailFolder {
    /// A search folder: a saved query over other folders, holding no messages of its own.
    pub fn is_search_folder(&self) -> bool {
        self.odata_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("#microsoft.graph.mailSearchFolder"))
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct EmailAddress {
    pub name: Option<String>,
    pub address: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recipient {
    pub email_address: Option<EmailAddress>,
}

impl Recipient {
    pub fn address(&self) -> Option<String> {
        self.email_address.as_ref()?.address.clone()
    }
}

/// An attachment's metadata (`attachment` resource, `$select=name,size,contentType`): its
/// bytes stay in the raw message.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub size: u64,
    pub content_type: Option<String>,
}

/// The fields Mailroom lists for a message (`$select`ed, docs/graph.md §2). In a delta page a
/// message that left the folder carries only `id` and `@removed`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageSummary {
    pub id: MessageId,
    pub internet_message_id: Option<String>,
    pub subject: Option<String>,
    pub from: Option<Recipient>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub received_date_time: Option<OffsetDateTime>,
    pub is_read: Option<bool>,
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub to_recipients: Vec<Recipient>,
    #[serde(default)]
    pub cc_recipients: Vec<Recipient>,
    /// The first 255 characters of the body, as text.
    pub body_preview: Option<String>,
    pub has_attachments: Option<bool>,
    #[serde(rename = "@removed")]
    pub removed: Option<serde_json::Value>,
}

impl MessageSummary {
    /// The `$select` list for listing and delta.
    pub const SELECT: &'static str = "id,internetMessageId,subject,from,receivedDateTime,isRead,\
        conversationId,toRecipients,ccRecipients,bodyPreview,hasAttachments";

    pub fn from_address(&self) -> Option<String> {
        self.from.as_ref()?.address()
    }

    /// The `toRecipients` addresses.
    pub fn to_addresses(&self) -> Vec<String> {
        self.to_recipients
            .iter()
            .filter_map(Recipient::address)
            .collect()
    }

    /// The `ccRecipients` addresses.
    pub fn cc_addresses(&self) -> Vec<String> {
        self.cc_recipients
            .iter()
            .filter_map(Recipient::address)
            .collect()
    }

    pub fn is_removed(&self) -> bool {
        self.removed.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_shapes_and_ignores_unknown_fields() {
        let page: Page<MessageSummary> = serde_json::from_str(
            r#"{"@odata.context":"x","value":[
                {"@odata.etag":"W/\"1\"","id":"AAMk/a+b=","subject":"Backup OK","receivedDateTime":"2025-02-13T10:17:05Z",
                 "from":{"emailAddress":{"name":"Veeam","address":"veeam@contoso.com"}},"isRead":false,"newField":1},
                {"id":"gone","@removed":{"reason":"deleted"}}],
               "@odata.nextLink":"https://graph.microsoft.com/v1.0/next"}"#,
        )
        .unwrap();
        assert_eq!(page.value.len(), 2);
        assert_eq!(
            page.value[0].from_address().as_deref(),
            Some("veeam@contoso.com")
        );
        assert!(page.value[1].is_removed());
        assert!(page.next_link.is_some());
        assert!(page.delta_link.is_none());
    }

    #[test]
    fn a_missing_id_is_an_error_naming_the_field() {
        let err = serde_json::from_str::<Page<MessageSummary>>(r#"{"value":[{"subject":"x"}]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("missing field `id`"), "{err}");
    }
}
