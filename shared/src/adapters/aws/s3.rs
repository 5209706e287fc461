//! [`BlobStore`] on an S3 bucket: raw MIME as `message/rfc822` objects.
//!
//! Bodies are streamed: at most one part is buffered. A body that fits in one part is a single
//! PutObject; a larger one is a multipart upload, aborted on any failure so no half-written object
//! ever becomes visible (the bucket's lifecycle rule also cleans up uploads an abort could not
//! reach). Encryption comes from the bucket's default, set in the template, not per request.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream as S3ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::domain::event::RawLocation;
use crate::ports::{BlobError, BlobStore, ByteStream};

const CONTENT_TYPE: &str = "message/rfc822";

/// S3's smallest allowed part (all but the last part of a multipart upload).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// Part size unless told otherwise: a typical message is one PutObject, and a large one streams
/// through 8 MiB of memory.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// S3 allows at most this many parts in one upload.
const MAX_PARTS: i32 = 10_000;

/// A [`BlobStore`] on one S3 bucket.
#[derive(Clone, Debug)]
pub struct S3BlobStore {
    client: Client,
    bucket: String,
    part_size: usize,
}

impl S3BlobStore {
    /// A store on `bucket`, with [`DEFAULT_PART_SIZE`] parts.
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            part_size: DEFAULT_PART_SIZE,
        }
    }

    /// Sets the part size: the memory one upload needs, and the size above which an upload is
    /// multipart. Raised to [`MIN_PART_SIZE`] if smaller, since S3 rejects smaller parts.
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(MIN_PART_SIZE);
        self
    }

    /// Sets any part size (at least 1 byte), for tests that force a multipart upload with a small
    /// body. S3 rejects the completion of an upload with parts under 5 MiB, so only use it for
    /// uploads that are meant to fail, or against an emulator configured to allow it.
    #[doc(hidden)]
    pub fn with_part_size_unchecked(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(1);
        self
    }

    /// The S3 operations this store makes (SDK method, an IAM action it needs). A role that
    /// runs the store needs exactly these actions: the object ones on `bucket/*`, `s3:ListBucket`
    /// on the bucket. `infra/template.yaml` grants them and `tests/tests/template.rs` checks it.
    ///
    /// The multipart calls are authorised as `s3:PutObject`, except the abort. HeadObject is
    /// authorised as `s3:GetObject`, and without `s3:ListBucket` S3 answers a missing key with
    /// 403 instead of 404, which would turn [`BlobStore::size`]'s `None` into an error.
    pub const IAM_ACTIONS: &[(&str, &str)] = &[
        ("put_object", "s3:PutObject"),
        ("create_multipart_upload", "s3:PutObject"),
        ("upload_part", "s3:PutObject"),
        ("complete_multipart_upload", "s3:PutObject"),
        ("abort_multipart_upload", "s3:AbortMultipartUpload"),
        ("head_object", "s3:GetObject"),
        ("head_object", "s3:ListBucket"),
        ("get_object", "s3:GetObject"),
    ];

    /// The bucket this store writes to.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put_single(&self, key: &str, body: Bytes) -> Result<(), BlobError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(CONTENT_TYPE)
            .body(S3ByteStream::from(body))
            .send()
            .await
            .map_err(|e| unavailable("write", key, e))?;
        Ok(())
    }

    async fn put_multipart(
        &self,
        key: &str,
        first: Bytes,
        parts: &mut PartReader,
    ) -> Result<(), BlobError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(CONTENT_TYPE)
            // Declared here so every part carries a CRC32 that S3 checks on completion.
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .map_err(|e| unavailable("start a multipart upload of", key, e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| BlobError::Unavailable {
                operation: "start a multipart upload of",
                key: key.to_owned(),
                detail: "the response carried no upload id".into(),
            })?
            .to_owned();

        let result = self.upload_parts(key, &upload_id, first, parts).await;
        if result.is_err() {
            self.abort(key, &upload_id).await;
        }
        result
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        first: Bytes,
        parts: &mut PartReader,
    ) -> Result<(), BlobError> {
        let mut completed = Vec::new();
        let mut next = Some(first);
        let mut number: i32 = 1;
        while let Some(part) = next {
            if number > MAX_PARTS {
                return Err(BlobError::Unavailable {
                    operation: "write",
                    key: key.to_owned(),
                    detail: format!(
                        "the message is larger than {MAX_PARTS} parts of {} bytes",
                        self.part_size
                    ),
                });
            }
            let uploaded = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .body(S3ByteStream::from(part))
                .send()
                .await
                .map_err(|e| unavailable("upload a part of", key, e))?;
            completed.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(uploaded.e_tag)
                    .set_checksum_crc32(uploaded.checksum_crc32)
                    .build(),
            );
            number += 1;
            next = parts
                .next_part()
                .await
                .map_err(|source| BlobError::Source {
                    key: key.to_owned(),
                    source,
                })?;
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| unavailable("complete the multipart upload of", key, e))?;
        Ok(())
    }

    /// Best effort: the caller already has the error that matters, and the bucket's lifecycle
    /// rule removes incomplete uploads an abort could not.
    async fn abort(&self, key: &str, upload_id: &str) {
        let aborted = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
        if let Err(e) = aborted {
            tracing::warn!(
                bucket = %self.bucket,
                key,
                upload_id,
                error = %DisplayErrorContext(&e),
                "could not abort a failed multipart upload; the bucket's lifecycle rule will remove it"
            );
        }
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &str, body: ByteStream) -> Result<(), BlobError> {
        let source_error = |source| BlobError::Source {
            key: key.to_owned(),
            source,
        };
        let mut parts = PartReader::new(body, self.part_size);
        let first = parts.next_part().await.map_err(source_error)?;
        // A body that ends within the first part is one request: most messages are small.
        if parts.at_end().await.map_err(source_error)? {
            return self.put_single(key, first.unwrap_or_default()).await;
        }
        self.put_multipart(key, first.unwrap_or_default(), &mut parts)
            .await
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(
                head.content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
            )),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(e) => Err(unavailable("read the size of", key, e)),
        }
    }

    async fn get(&self, key: &str) -> Result<ByteStream, BlobError> {
        let object = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(object) => object,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Err(BlobError::Unavailable {
                    operation: "read",
                    key: key.to_owned(),
                    detail: "no such object".into(),
                });
            }
            Err(e) => return Err(unavailable("read", key, e)),
        };
        // Chunk by chunk as the SDK receives them; nothing is collected.
        let chunks = futures::stream::unfold(object.body, |mut body| async move {
            body.next()
                .await
                .map(|chunk| (chunk.map_err(std::io::Error::from), body))
        });
        Ok(Box::pin(chunks))
    }

    fn location(&self, key: &str) -> RawLocation {
        RawLocation::S3 {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
        }
    }
}

fn unavailable(operation: &'static str, key: &str, err: impl std::error::Error) -> BlobError {
    BlobError::Unavailable {
        operation,
        key: key.to_owned(),
        // The bare SdkError Display says only "service error".
        detail: DisplayErrorContext(err).to_string(),
    }
}

/// Past this many bytes a part buffer is grown straight to the full part size.
const GROW_TO_PART: usize = 1024 * 1024;

/// Cuts a byte stream into parts of exactly `part_size` bytes (the last may be shorter), holding
/// at most one part plus the source's current chunk.
struct PartReader {
    body: ByteStream,
    part_size: usize,
    /// The unread rest of the source's latest chunk (slices of `Bytes` share memory, no copy).
    pending: Bytes,
    ended: bool,
}

impl PartReader {
    fn new(body: ByteStream, part_size: usize) -> Self {
        Self {
            body,
            part_size,
            pending: Bytes::new(),
            ended: false,
        }
    }

    /// The next part, or `None` at the end of the stream.
    async fn next_part(&mut self) -> std::io::Result<Option<Bytes>> {
        let mut part = BytesMut::new();
        while part.len() < self.part_size {
            if self.pending.is_empty() && !self.fill().await? {
                break;
            }
            let take = self.pending.len().min(self.part_size - part.len());
            if part.len() >= GROW_TO_PART && part.capacity() - part.len() < take {
                // A large message: make room for the whole part once, instead of doubling
                // (which briefly holds 1.5 parts). Small messages never allocate a full part.
                part.reserve(self.part_size - part.len());
            }
            part.extend_from_slice(&self.pending.split_to(take));
        }
        Ok((!part.is_empty()).then(|| part.freeze()))
    }

    /// Whether the stream has nothing more, reading ahead one chunk if needed to find out.
    async fn at_end(&mut self) -> std::io::Result<bool> {
        Ok(self.pending.is_empty() && !self.fill().await?)
    }

    /// Reads the next non-empty chunk into `pending`; false at the end of the stream.
    async fn fill(&mut self) -> std::io::Result<bool> {
        while !self.ended {
            match self.body.next().await {
                Some(Ok(chunk)) if chunk.is_empty() => {}
                Some(Ok(chunk)) => {
                    self.pending = chunk;
                    return Ok(true);
                }
                Some(Err(e)) => return Err(e),
                None => self.ended = true,
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(chunks: Vec<std::io::Result<Bytes>>) -> ByteStream {
        Box::pin(futures::stream::iter(chunks))
    }

    async fn parts(chunks: &[&'static str], part_size: usize) -> Vec<String> {
        let body = stream(chunks.iter().map(|c| Ok(Bytes::from(*c))).collect());
        let mut reader = PartReader::new(body, part_size);
        let mut out = Vec::new();
        while let Some(part) = reader.next_part().await.unwrap() {
            assert!(part.len() <= part_size);
            out.push(String::from_utf8(part.to_vec()).unwrap());
        }
        assert!(reader.at_end().await.unwrap());
        out
    }

    #[test]
    fn iam_actions_cover_exactly_the_operations_called() {
        let called = crate::adapters::aws::sdk_calls(include_str!("s3.rs"), &[]);
        assert_eq!(
            called,
            crate::adapters::aws::listed_calls(S3BlobStore::IAM_ACTIONS)
        );
    }

    #[tokio::test]
    async fn parts_are_cut_at_the_part_size_across_chunks() {
        assert_eq!(
            parts(&["abc", "", "defgh", "i"], 4).await,
            ["abcd", "efgh", "i"]
        );
        assert_eq!(parts(&["abcdefghij"], 5).await, ["abcde", "fghij"]);
        assert!(parts(&[], 4).await.is_empty());
    }

    #[tokio::test]
    async fn at_end_reads_ahead_without_losing_data() {
        let body = stream(vec![Ok(Bytes::from("abcd")), Ok(Bytes::from("e"))]);
        let mut reader = PartReader::new(body, 4);
        assert_eq!(reader.next_part().await.unwrap().unwrap(), "abcd");
        assert!(!reader.at_end().await.unwrap());
        assert_eq!(reader.next_part().await.unwrap().unwrap(), "e");
        assert!(reader.at_end().await.unwrap());
    }

    #[tokio::test]
    async fn a_source_error_surfaces() {
        let body = stream(vec![
            Ok(Bytes::from("ab")),
            Err(std::io::Error::other("reset")),
        ]);
        let mut reader = PartReader::new(body, 4);
        assert_eq!(reader.next_part().await.unwrap_err().to_string(), "reset");
    }

    #[test]
    fn part_size_has_a_floor_unless_unchecked() {
        let client = Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .build(),
        );
        let store = S3BlobStore::new(client, "b");
        assert_eq!(store.part_size, DEFAULT_PART_SIZE);
        assert_eq!(store.clone().with_part_size(1).part_size, MIN_PART_SIZE);
        assert_eq!(store.with_part_size_unchecked(1024).part_size, 1024);
    }
}
