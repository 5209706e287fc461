//! [`AttachmentSource`] on an S3 bucket: the attachments of send requests on AWS are object keys
//! (docs/sending.md). One `GetObject` per attachment gives its size, type and bytes.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;

use crate::domain::send::content_type_of;
use crate::ports::{AttachmentError, AttachmentSource, MAX_ATTACHMENT_BYTES, OpenedAttachment};

/// Attachments read from one bucket, under one key prefix.
#[derive(Clone, Debug)]
pub struct S3Attachments {
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3Attachments {
    /// The S3 operations this source makes (SDK method, the IAM action it needs), on the
    /// bucket's objects.
    pub const IAM_ACTIONS: &[(&str, &str)] = &[("get_object", "s3:GetObject")];

    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            prefix: String::new(),
        }
    }

    /// Takes only keys under `prefix` (such as `outbox/`, all the function may read).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

#[async_trait]
impl AttachmentSource for S3Attachments {
    async fn open(&self, reference: &str) -> Result<OpenedAttachment, AttachmentError> {
        if !reference.starts_with(&self.prefix) {
            return Err(AttachmentError::NotFound {
                reference: reference.to_owned(),
                detail: format!(
                    "attachments are object keys beginning {} in bucket {}",
                    self.prefix, self.bucket
                ),
            });
        }
        let object = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(reference)
            .send()
            .await
        {
            Ok(object) => object,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Err(AttachmentError::NotFound {
                    reference: reference.to_owned(),
                    detail: format!("no such object in bucket {}", self.bucket),
                });
            }
            Err(e) => {
                return Err(AttachmentError::Unavailable {
                    reference: reference.to_owned(),
                    detail: format!("bucket {}: {}", self.bucket, DisplayErrorContext(e)),
                });
            }
        };
        let size = object
            .content_length()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        if size > MAX_ATTACHMENT_BYTES {
            return Err(AttachmentError::TooLarge {
                reference: reference.to_owned(),
                size,
            });
        }
        let name = reference
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or(reference)
            .to_owned();
        // An object stored without a type reads as a generic one (S3 says binary/octet-stream,
        // others application/octet-stream): the name's extension says more.
        let content_type = object
            .content_type()
            .filter(|t| !matches!(*t, "" | "binary/octet-stream" | "application/octet-stream"))
            .map_or_else(|| content_type_of(&name).to_owned(), str::to_owned);
        // Chunk by chunk as the SDK receives them; nothing is collected.
        let body = futures::stream::unfold(object.body, |mut body| async move {
            body.next()
                .await
                .map(|chunk| (chunk.map_err(std::io::Error::from), body))
        });
        Ok(OpenedAttachment {
            name,
            content_type,
            size,
            body: Box::pin(body),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_actions_cover_exactly_the_operations_called() {
        let called = crate::adapters::aws::sdk_calls(include_str!("attachments.rs"), &[]);
        assert_eq!(
            called,
            crate::adapters::aws::listed_calls(S3Attachments::IAM_ACTIONS)
        );
    }
}
