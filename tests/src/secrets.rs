//! Looking for secrets in text: the forms a secret takes on the wire and in `Debug` output, and
//! where in a text any of them appears. Used by the secrets hygiene tests
//! (`tests/tests/secrets.rs`, `cli/tests/secrets.rs`).
//!
//! Test support: serializing a string as JSON cannot fail, hence the `unwrap`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;

/// A distinctive Entra-shaped client secret: 40 characters with `~`, `.`, `-` and `_`, which a
/// form body encodes.
pub fn distinctive_secret(tag: &str) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{tag}8Q~{}.{}-{}_x",
        &random[..12],
        &random[12..24],
        &random[24..]
    )
}

/// The forms a value takes on the wire or in `Debug` output: as is, form-urlencoded,
/// JSON-escaped, hex, as a byte list, and base64 (standard and URL-safe) at each of the three
/// alignments it can have inside a longer encoded text.
pub fn forms(value: &str) -> Vec<(String, String)> {
    let mut forms = vec![("as is".to_owned(), value.to_owned())];
    let mut add = |name: &str, form: String| {
        if form.len() >= 12 && !forms.iter().any(|(_, f)| *f == form) {
            forms.push((name.to_owned(), form));
        }
    };
    add(
        "form-urlencoded",
        url::form_urlencoded::byte_serialize(value.as_bytes()).collect(),
    );
    let json = serde_json::to_string(value).unwrap();
    add("JSON-escaped", json[1..json.len() - 1].to_owned());
    add("hex", hex::encode(value));
    add("hex (upper case)", hex::encode_upper(value));
    let bytes = format!("{:?}", value.as_bytes());
    add("byte list", bytes[1..bytes.len() - 1].to_owned());
    for (name, engine) in [
        ("base64", base64::engine::general_purpose::STANDARD_NO_PAD),
        (
            "base64url",
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ),
    ] {
        for shift in 0..3usize {
            let mut shifted = vec![0u8; shift];
            shifted.extend_from_slice(value.as_bytes());
            let encoded = engine.encode(&shifted);
            // The first group holds the padding bytes, the last one what follows the value.
            let start = if shift == 0 { 0 } else { 4 };
            let end = encoded.len().saturating_sub(4);
            if start < end {
                add(
                    &format!("{name} (offset {shift})"),
                    encoded[start..end].to_owned(),
                );
            }
        }
    }
    forms
}

/// `text` without ANSI escape sequences (a terminal's colours), which could otherwise split a
/// value in two.
pub fn strip_ansi(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Each secret found in `text` (ANSI colours removed first): `(secret, form, the line with it masked)`.
pub fn leaks(secrets: &BTreeMap<String, String>, text: &str) -> Vec<String> {
    let text = strip_ansi(text);
    let mut found = Vec::new();
    for (label, value) in secrets {
        for (form, encoded) in forms(value) {
            for line in text.lines().filter(|l| l.contains(&encoded)) {
                let masked = line.replace(&encoded, &format!("<{label}>"));
                let shown: String = masked.chars().take(600).collect();
                found.push(format!("{label} ({form}): {shown}"));
            }
        }
    }
    found
}

/// An HTTP endpoint for `[events]` on loopback: keeps each delivery's signature header (the
/// signatures are secrets' children, searched for too) and answers 204.
pub struct EventSink {
    pub url: url::Url,
    pub signatures: Arc<Mutex<Vec<String>>>,
}

impl EventSink {
    pub async fn start() -> EventSink {
        let signatures = Arc::new(Mutex::new(Vec::new()));
        let kept = signatures.clone();
        let receive = move |headers: axum::http::HeaderMap| {
            let kept = kept.clone();
            async move {
                if let Some(v) = headers
                    .get(mailroom::domain::signature::SIGNATURE_HEADER)
                    .and_then(|v| v.to_str().ok())
                {
                    kept.lock().unwrap().push(v.to_owned());
                }
                axum::http::StatusCode::NO_CONTENT
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/events", axum::routing::post(receive));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        EventSink {
            url: url.parse().unwrap(),
            signatures,
        }
    }
}
