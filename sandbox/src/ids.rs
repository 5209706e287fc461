//! Identifier formats: Exchange-style message and folder ids, mailbox GUIDs and access tokens.
//!
//! Real Exchange ids are standard base64 and contain `/`, `+` and `=`; clients that forget to
//! percent-encode them in path segments get `400 ErrorInvalidIdMalformed` (docs/graph.md section 2).
//! Every id minted here contains all three characters so such clients break in tests too.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// Prefix of a REST (default format) message id; real ones start the same way.
const REST_MESSAGE_PREFIX: &str = "AAMkAGI2";
/// Prefix of an immutable message id (`Prefer: IdType="ImmutableId"`).
const IMMUTABLE_MESSAGE_PREFIX: &str = "AAkALgAA";
/// Prefix of a mail folder id.
const FOLDER_PREFIX: &str = "AQMkADAw";
/// Prefix of a conversation id.
const CONVERSATION_PREFIX: &str = "AAQkAGI2";

/// The kinds of Exchange ids the sandbox mints.
#[derive(Clone, Copy, Debug)]
pub(crate) enum IdKind {
    RestMessage,
    ImmutableMessage,
    Folder,
    Conversation,
}

/// A fresh random id of the given kind: 76 characters of valid standard base64 with at least one
/// `+`, one `/` and a trailing `=`.
pub(crate) fn new_id(kind: IdKind) -> String {
    let prefix = match kind {
        IdKind::RestMessage => REST_MESSAGE_PREFIX,
        IdKind::ImmutableMessage => IMMUTABLE_MESSAGE_PREFIX,
        IdKind::Folder => FOLDER_PREFIX,
        IdKind::Conversation => CONVERSATION_PREFIX,
    };
    // 50 bytes encode to 68 characters ending in a single '='.
    let mut bytes = [0u8; 50];
    fastrand::fill(&mut bytes);
    let mut body: Vec<u8> = STANDARD.encode(bytes).into_bytes();
    // Force the characters that need percent-encoding; both are base64 digits, so the id stays
    // valid base64 (only the bits change).
    if let Some(c) = body.get_mut(7) {
        *c = b'+';
    }
    if let Some(c) = body.get_mut(23) {
        *c = b'/';
    }
    format!("{prefix}{}", String::from_utf8_lossy(&body))
}

/// Whether `s` could be an Exchange id: base64 (standard or URL-safe) with padding only at the
/// end. Anything else is answered with `400 ErrorInvalidIdMalformed`, as Graph does.
pub(crate) fn is_plausible_id(s: &str) -> bool {
    if s.len() < 16 {
        return false;
    }
    let trimmed = s.trim_end_matches('=');
    if s.len() - trimmed.len() > 2 {
        return false;
    }
    trimmed
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_'))
}

/// A random GUID in the usual lowercase hyphenated form.
pub(crate) fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// An opaque access token shaped like a JWT (header.payload.signature) whose payload is random:
/// Microsoft says clients must not parse Graph tokens (docs/graph.md section 1), and a client that
/// tries gets garbage.
pub(crate) fn new_access_token() -> String {
    let mut payload = [0u8; 96];
    fastrand::fill(&mut payload);
    let mut signature = [0u8; 64];
    fastrand::fill(&mut signature);
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// A stable 64-bit FNV-1a hash, used to derive deterministic seeds from message properties.
pub(crate) fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separator so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_need_percent_encoding_and_are_valid_base64() {
        for kind in [
            IdKind::RestMessage,
            IdKind::ImmutableMessage,
            IdKind::Folder,
        ] {
            let id = new_id(kind);
            assert!(
                id.contains('/') && id.contains('+') && id.ends_with('='),
                "{id}"
            );
            assert!(STANDARD.decode(&id).is_ok(), "{id}");
            assert!(is_plausible_id(&id));
        }
    }

    #[test]
    fn short_or_odd_ids_are_malformed() {
        assert!(!is_plausible_id("abc"));
        assert!(!is_plausible_id("AAMkAGI2 with spaces and more"));
        assert!(!is_plausible_id("AAMkAGI2AAAAAAAAAAAA===="));
    }
}
