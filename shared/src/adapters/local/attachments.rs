//! [`AttachmentSource`] on local files: `mailroom send --attach FILE`. A relative path is
//! relative to the directory the source was made for (the command's working directory).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio_util::io::ReaderStream;

use crate::domain::send::content_type_of;
use crate::ports::{AttachmentError, AttachmentSource, MAX_ATTACHMENT_BYTES, OpenedAttachment};

/// Attachments read from files.
#[derive(Debug, Clone)]
pub struct FileAttachments {
    base: PathBuf,
}

impl FileAttachments {
    pub fn new(base: impl Into<PathBuf>) -> Self {
        Self { base: base.into() }
    }
}

#[async_trait]
impl AttachmentSource for FileAttachments {
    async fn open(&self, reference: &str) -> Result<OpenedAttachment, AttachmentError> {
        let path = self.base.join(reference);
        let failed = |e: std::io::Error| {
            let detail = format!("{}: {e}", path.display());
            if e.kind() == std::io::ErrorKind::NotFound {
                AttachmentError::NotFound {
                    reference: reference.to_owned(),
                    detail,
                }
            } else {
                AttachmentError::Unavailable {
                    reference: reference.to_owned(),
                    detail,
                }
            }
        };
        let file = tokio::fs::File::open(&path).await.map_err(failed)?;
        let metadata = file.metadata().await.map_err(failed)?;
        if !metadata.is_file() {
            return Err(AttachmentError::NotFound {
                reference: reference.to_owned(),
                detail: format!("{} is not a file", path.display()),
            });
        }
        if metadata.len() > MAX_ATTACHMENT_BYTES {
            return Err(AttachmentError::TooLarge {
                reference: reference.to_owned(),
                size: metadata.len(),
            });
        }
        let name = Path::new(reference)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| reference.to_owned());
        Ok(OpenedAttachment {
            content_type: content_type_of(&name).to_owned(),
            name,
            size: metadata.len(),
            body: Box::pin(ReaderStream::with_capacity(file, 64 * 1024)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_opens_with_its_name_size_and_type_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("report.PDF"), b"%PDF-1.7").unwrap();
        let source = FileAttachments::new(dir.path());
        let opened = source.open("report.PDF").await.unwrap();
        assert_eq!(
            (
                opened.name.as_str(),
                opened.size,
                opened.content_type.as_str()
            ),
            ("report.PDF", 8, "application/pdf")
        );
        let err = source.open("missing.txt").await.unwrap_err();
        assert!(matches!(err, AttachmentError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("missing.txt"));
        let err = source.open(".").await.unwrap_err();
        assert!(err.to_string().contains("not a file"), "{err}");
    }
}
