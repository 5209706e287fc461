//! [`BlobStore`] on a directory: each message's raw MIME is one `.eml` file, at the path its key
//! names (`a@contoso.com/2025/03/05/AAMk_a-b=.eml`), so the archive is browsable and any mail
//! client can open a message.
//!
//! A body is streamed into a temporary file beside its final name (`.{name}.tmp-{uuid}`), synced,
//! then renamed over the final name. A rename within one directory is atomic, so a reader sees
//! the old file or the new one, never a half-written one, and a failed, cancelled or crashed
//! write leaves nothing under the key (at worst a hidden temp file after a crash of the process).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::domain::event::RawLocation;
use crate::ports::{BlobError, BlobStore, ByteStream};

/// Size of the chunks `get` reads.
const READ_CHUNK: usize = 64 * 1024;

/// A [`BlobStore`] keeping each object as a file under `root`.
#[derive(Clone, Debug)]
pub struct DirBlobStore {
    root: PathBuf,
}

impl DirBlobStore {
    /// A store under `root`, created (with any directory a key needs) on the first write.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory the objects live under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of `key`, if the key is a plain relative path: keys come from
    /// [`crate::domain::blob_key`], but a key must never reach outside the root whatever made it.
    fn path_of(&self, key: &str, operation: &'static str) -> Result<PathBuf, BlobError> {
        let reject = |problem: &str| BlobError::Unavailable {
            operation,
            key: key.to_owned(),
            detail: format!("invalid key: {problem}"),
        };
        if key.is_empty() {
            return Err(reject("it is empty"));
        }
        if key.starts_with('/') {
            return Err(reject(
                "it is absolute; keys are relative to the store's root",
            ));
        }
        if key.contains(['\\', '\0']) {
            return Err(reject("it contains a backslash or a NUL character"));
        }
        let mut path = self.root.clone();
        for segment in key.split('/') {
            match segment {
                "" => return Err(reject("it has an empty path segment")),
                "." | ".." => {
                    return Err(reject(
                        "it has a '.' or '..' segment, which could leave the root",
                    ));
                }
                segment => path.push(segment),
            }
        }
        Ok(path)
    }
}

/// A temporary file that is deleted when dropped, unless [`TempFile::keep`] says it became the
/// object. Deleting in `Drop` covers every way a `put` can end early: a body error, a write error,
/// and the caller dropping the future mid-stream.
struct TempFile {
    path: Option<PathBuf>,
}

impl TempFile {
    fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            // A blocking unlink of one file in an async context: quick, and Drop cannot await.
            // Best effort: a leftover is hidden and never seen under a key.
            let _ = std::fs::remove_file(path);
        }
    }
}

fn unavailable(operation: &'static str, key: &str, what: &str, e: std::io::Error) -> BlobError {
    BlobError::Unavailable {
        operation,
        key: key.to_owned(),
        detail: format!("{what}: {e}"),
    }
}

#[async_trait]
impl BlobStore for DirBlobStore {
    async fn put(&self, key: &str, mut body: ByteStream) -> Result<(), BlobError> {
        const OPERATION: &str = "write";
        let path = self.path_of(key, OPERATION)?;
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(BlobError::Unavailable {
                operation: OPERATION,
                key: key.to_owned(),
                detail: "invalid key: it names no file".into(),
            });
        };
        tokio::fs::create_dir_all(dir).await.map_err(|e| {
            unavailable(
                OPERATION,
                key,
                &format!("cannot create directory {}", dir.display()),
                e,
            )
        })?;
        // Same directory as the final file: a rename across file systems would not be atomic.
        let temp_path = dir.join(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            uuid::Uuid::new_v4().simple()
        ));
        let mut file = tokio::fs::File::create(&temp_path).await.map_err(|e| {
            unavailable(
                OPERATION,
                key,
                &format!("cannot create {}", temp_path.display()),
                e,
            )
        })?;
        let temp = TempFile {
            path: Some(temp_path.clone()),
        };
        let write_failed = |e| {
            unavailable(
                OPERATION,
                key,
                &format!("cannot write {}", temp_path.display()),
                e,
            )
        };
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|source| BlobError::Source {
                key: key.to_owned(),
                source,
            })?;
            file.write_all(&chunk).await.map_err(write_failed)?;
        }
        file.flush().await.map_err(write_failed)?;
        // The data must be on disk before the rename makes it the object: otherwise a power cut
        // could leave an empty or partial file under the key after the record says it is stored.
        file.sync_all().await.map_err(write_failed)?;
        drop(file);
        tokio::fs::rename(&temp_path, &path).await.map_err(|e| {
            unavailable(
                OPERATION,
                key,
                &format!("cannot rename {} into place", temp_path.display()),
                e,
            )
        })?;
        temp.keep();
        // The rename itself lives in the directory: sync it too so the new name survives a power
        // cut. Best effort (some file systems cannot sync a directory): the data is already safe.
        if let Ok(directory) = tokio::fs::File::open(dir).await {
            let _ = directory.sync_all().await;
        }
        Ok(())
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        const OPERATION: &str = "read the size of";
        let path = self.path_of(key, OPERATION)?;
        match tokio::fs::metadata(&path).await {
            Ok(metadata) if metadata.is_file() => Ok(Some(metadata.len())),
            Ok(_) => Err(BlobError::Unavailable {
                operation: OPERATION,
                key: key.to_owned(),
                detail: format!("{} is not a file", path.display()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable(
                OPERATION,
                key,
                &format!("cannot read {}", path.display()),
                e,
            )),
        }
    }

    async fn get(&self, key: &str) -> Result<ByteStream, BlobError> {
        const OPERATION: &str = "read";
        let path = self.path_of(key, OPERATION)?;
        let file = tokio::fs::File::open(&path).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                BlobError::Unavailable {
                    operation: OPERATION,
                    key: key.to_owned(),
                    detail: "no such object".into(),
                }
            } else {
                unavailable(
                    OPERATION,
                    key,
                    &format!("cannot open {}", path.display()),
                    e,
                )
            }
        })?;
        Ok(Box::pin(ReaderStream::with_capacity(file, READ_CHUNK)))
    }

    fn location(&self, key: &str) -> RawLocation {
        // A key that names no file is refused on put, so it never reaches an event.
        let path = self
            .path_of(key, "locate")
            .unwrap_or_else(|_| self.root.join(key));
        // Absolute: the reader of an event does not share Mailroom's working directory.
        let path = std::path::absolute(&path).unwrap_or(path);
        RawLocation::File {
            file: path.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_paths_under_the_root() {
        let store = DirBlobStore::new("/srv/mail");
        assert_eq!(
            store
                .path_of("a@contoso.com/2025/03/05/AAMk_a-b=.eml", "write")
                .unwrap(),
            Path::new("/srv/mail/a@contoso.com/2025/03/05/AAMk_a-b=.eml")
        );
    }

    #[test]
    fn keys_that_could_leave_the_root_are_rejected_naming_the_key() {
        let store = DirBlobStore::new("/srv/mail");
        for key in [
            "",
            "/etc/passwd",
            "../outside.eml",
            "a/../../outside.eml",
            "a/./b.eml",
            "a//b.eml",
            "a/b.eml/",
            "a\\..\\b.eml",
            "a/b\0.eml",
        ] {
            let err = store.path_of(key, "write").unwrap_err();
            let BlobError::Unavailable {
                key: named, detail, ..
            } = &err
            else {
                panic!("expected Unavailable for {key:?}, got {err:?}");
            };
            assert_eq!(named, key);
            assert!(detail.starts_with("invalid key"), "{detail}");
        }
    }

    #[tokio::test]
    async fn get_streams_a_large_file_in_bounded_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirBlobStore::new(dir.path());
        let data = vec![7u8; 3 * READ_CHUNK + 5];
        let body: ByteStream = Box::pin(futures::stream::iter([Ok(bytes::Bytes::from(
            data.clone(),
        ))]));
        store.put("m/x.eml", body).await.unwrap();
        let chunks: Vec<bytes::Bytes> = store
            .get("m/x.eml")
            .await
            .unwrap()
            .map(|c| c.unwrap())
            .collect()
            .await;
        assert!(chunks.len() >= 4, "{}", chunks.len());
        assert!(chunks.iter().all(|c| c.len() <= READ_CHUNK));
        assert_eq!(chunks.concat(), data);
    }

    #[tokio::test]
    async fn a_cancelled_put_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirBlobStore::new(dir.path());
        // A body that yields one chunk and then never ends.
        let body: ByteStream = Box::pin(
            futures::stream::iter([Ok(bytes::Bytes::from_static(b"partial"))])
                .chain(futures::stream::pending()),
        );
        let put = store.put("m/x.eml", body);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), put)
                .await
                .is_err()
        );
        let left: Vec<_> = std::fs::read_dir(dir.path().join("m"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
