//! Adapters: the ports implemented for AWS (features `aws` or `aws-*`), for local mode (SQLite,
//! files; feature `local`) and for memory (unit tests).

pub mod alerts;
#[cfg(any(
    feature = "aws-dynamodb",
    feature = "aws-s3",
    feature = "aws-secretsmanager",
    feature = "aws-sqs",
    feature = "aws-sns"
))]
pub mod aws;
#[cfg(feature = "local")]
pub mod local;
pub mod memory;

/// Lease times as whole epoch milliseconds, the form both persistent state stores keep.
#[cfg(any(feature = "aws-dynamodb", feature = "local"))]
pub(crate) fn epoch_millis(at: time::OffsetDateTime) -> i64 {
    // i64 milliseconds cover ±292 million years; `time` cannot represent anything outside that.
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap_or(i64::MAX)
}

/// The inverse of [`epoch_millis`]; `None` when out of `time`'s range.
#[cfg(any(feature = "aws-dynamodb", feature = "local"))]
pub(crate) fn from_epoch_millis(ms: i64) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}
