//! The signature on an event delivered over HTTP (docs/events.md, "Locally"): a receiver checks
//! that the POST comes from Mailroom and was not replayed.
//!
//! Mailroom sends `Mailroom-Timestamp: <Unix seconds>` and
//! `Mailroom-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`. The receiver
//! recomputes the HMAC over the raw body it received, compares in constant time, and refuses a
//! timestamp too far from its own clock.

use ring::hmac;

/// The header carrying the Unix time the event was signed at.
pub const TIMESTAMP_HEADER: &str = "Mailroom-Timestamp";
/// The header carrying the signature, `v1=` and 64 hex digits.
pub const SIGNATURE_HEADER: &str = "Mailroom-Signature";
/// The header carrying the event's stable id (also in the body), for a receiver's deduplication.
pub const EVENT_ID_HEADER: &str = "Mailroom-Event-Id";
/// How far a timestamp may be from the receiver's clock by default: five minutes.
pub const DEFAULT_TOLERANCE_SECONDS: i64 = 300;

const SCHEME: &str = "v1=";

/// The `Mailroom-Signature` value for `body` sent at `timestamp`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = hmac::Context::with_key(&key);
    context.update(&signed_prefix(timestamp));
    context.update(body);
    format!("{SCHEME}{}", hex::encode(context.sign().as_ref()))
}

/// Why a delivery's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the {TIMESTAMP_HEADER} header is missing or not a Unix time in seconds")]
    BadTimestamp,
    #[error("the timestamp is {0} seconds from now, more than allowed: a replay or a wrong clock")]
    Stale(i64),
    #[error("the {SIGNATURE_HEADER} header is missing or not v1= and 64 hex digits")]
    BadSignature,
    #[error("the signature does not match the body: another secret, or the body was changed")]
    Mismatch,
}

/// Checks a delivery as a receiver would: the timestamp header within `tolerance_seconds` of
/// `now` (Unix seconds), and the signature header matching `body`, compared in constant time.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_seconds: i64,
) -> Result<(), SignatureError> {
    let timestamp: i64 = timestamp
        .and_then(|t| t.trim().parse().ok())
        .ok_or(SignatureError::BadTimestamp)?;
    let skew = now.saturating_sub(timestamp);
    if skew.abs() > tolerance_seconds {
        return Err(SignatureError::Stale(skew));
    }
    let given = signature
        .and_then(|s| s.trim().strip_prefix(SCHEME))
        .filter(|hex| hex.len() == 64)
        .and_then(|hex| hex::decode(hex).ok())
        .ok_or(SignatureError::BadSignature)?;
    // ring compares in constant time.
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut signed = signed_prefix(timestamp);
    signed.extend_from_slice(body);
    hmac::verify(&key, &signed, &given).map_err(|_| SignatureError::Mismatch)
}

/// `<timestamp>.`: what the body is prefixed with before signing.
fn signed_prefix(timestamp: i64) -> Vec<u8> {
    format!("{timestamp}.").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec-test";
    const BODY: &[u8] = br#"{"id":"abc"}"#;

    #[test]
    fn a_signed_body_verifies_and_nothing_else_does() {
        let signature = sign(SECRET, 1_700_000_000, BODY);
        assert!(signature.starts_with("v1=") && signature.len() == 67);
        let check = |secret: &[u8], ts: Option<&str>, sig: Option<&str>, body: &[u8]| {
            verify(
                secret,
                ts,
                sig,
                body,
                1_700_000_010,
                DEFAULT_TOLERANCE_SECONDS,
            )
        };
        let ts = Some("1700000000");
        assert_eq!(check(SECRET, ts, Some(&signature), BODY), Ok(()));
        assert_eq!(
            check(b"other", ts, Some(&signature), BODY),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(SECRET, ts, Some(&signature), br#"{"id":"abd"}"#),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed: moving it breaks the signature.
        assert_eq!(
            check(SECRET, Some("1700000001"), Some(&signature), BODY),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(SECRET, None, Some(&signature), BODY),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            check(SECRET, ts, None, BODY),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(
            check(SECRET, ts, Some("v1=zz"), BODY),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn an_old_delivery_is_refused_as_a_replay() {
        let signature = sign(SECRET, 1_700_000_000, BODY);
        assert_eq!(
            verify(
                SECRET,
                Some("1700000000"),
                Some(&signature),
                BODY,
                1_700_000_000 + 301,
                DEFAULT_TOLERANCE_SECONDS
            ),
            Err(SignatureError::Stale(301))
        );
    }

    /// A fixed vector, so the documented scheme cannot drift: HMAC-SHA256 over "1700000000." and
    /// the body, as `openssl dgst -sha256 -hmac whsec-test` computes it.
    #[test]
    fn the_signature_is_the_documented_hmac() {
        assert_eq!(
            sign(SECRET, 1_700_000_000, BODY),
            format!("v1={}", OPENSSL_VECTOR)
        );
    }

    const OPENSSL_VECTOR: &str = "bdcb7664fa38fb3d3ac27b822c5e71c032416560d273e193a0bc3c8d56144fa2";
}
