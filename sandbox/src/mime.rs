//! RFC 5322 / MIME rendering of messages, streamed in chunks.
//!
//! A message's MIME is a [`MimeTemplate`]: literal segments (headers, text parts, boundaries)
//! and pseudo-random base64 segments (attachments). Random segments are regenerated from their
//! seed each time the message is read, so neither a 150 MB generated message nor the demo's
//! attachments occupy memory, the byte length is known up front (`Content-Length`), and the
//! SHA-256 is reproducible.

use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::ids::fnv1a;
use crate::world::{Address, AttachmentSpec};

/// Streamed `$value` bodies come in chunks of about this size.
pub(crate) const CHUNK_SIZE: usize = 64 * 1024;

/// Raw bytes per base64 line: 57 bytes encode to 76 characters, the RFC 2045 maximum.
const RAW_PER_LINE: u64 = 57;
/// Encoded bytes per full line, CRLF included.
const LINE_BYTES: u64 = 78;

#[derive(Debug)]
enum Segment {
    Literal(Bytes),
    /// `raw_len` pseudo-random bytes from `seed`, base64-encoded in CRLF-terminated lines.
    Random {
        seed: u64,
        raw_len: u64,
    },
    /// Bytes a client attached, base64-encoded in CRLF-terminated lines while streaming.
    Content(Bytes),
}

impl Segment {
    fn len(&self) -> u64 {
        match self {
            Segment::Literal(b) => b.len() as u64,
            Segment::Random { raw_len, .. } => base64_lines_len(*raw_len),
            Segment::Content(b) => base64_lines_len(b.len() as u64),
        }
    }
}

/// The encoded length of `raw_len` bytes as base64 lines of 76 characters plus CRLF.
fn base64_lines_len(raw_len: u64) -> u64 {
    let full = raw_len / RAW_PER_LINE;
    let rest = raw_len % RAW_PER_LINE;
    let last = if rest == 0 {
        0
    } else {
        rest.div_ceil(3) * 4 + 2
    };
    full * LINE_BYTES + last
}

/// The largest raw length whose base64 lines fit in `budget` bytes.
fn raw_len_for_budget(budget: u64) -> u64 {
    let full = budget / LINE_BYTES;
    let rest = budget % LINE_BYTES;
    let partial = if rest >= 6 { (rest - 2) / 4 * 3 } else { 0 };
    full * RAW_PER_LINE + partial
}

/// A message's MIME: segments plus cached length and SHA-256.
#[derive(Debug)]
pub(crate) struct MimeTemplate {
    segments: Vec<Segment>,
    len: u64,
    sha256: OnceLock<String>,
}

impl MimeTemplate {
    fn new(segments: Vec<Segment>) -> Self {
        let len = segments.iter().map(Segment::len).sum();
        Self {
            segments,
            len,
            sha256: OnceLock::new(),
        }
    }

    /// The exact byte length.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// A reader producing the bytes in chunks.
    pub(crate) fn reader(self: &Arc<Self>) -> MimeReader {
        MimeReader {
            template: Arc::clone(self),
            segment: 0,
            offset: 0,
            rng: None,
        }
    }

    /// Hex SHA-256 of the bytes, computed by streaming once and cached.
    pub(crate) fn sha256(self: &Arc<Self>) -> String {
        self.sha256
            .get_or_init(|| {
                let mut hasher = Sha256::new();
                let mut reader = self.reader();
                while let Some(chunk) = reader.next_chunk(CHUNK_SIZE) {
                    hasher.update(&chunk);
                }
                hex::encode(hasher.finalize())
            })
            .clone()
    }

    /// All bytes in one buffer (for small messages).
    pub(crate) fn to_vec(self: &Arc<Self>) -> Vec<u8> {
        let mut out = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        let mut reader = self.reader();
        while let Some(chunk) = reader.next_chunk(CHUNK_SIZE) {
            out.extend_from_slice(&chunk);
        }
        out
    }
}

/// Sequential reader over a [`MimeTemplate`].
pub(crate) struct MimeReader {
    template: Arc<MimeTemplate>,
    segment: usize,
    /// Byte offset in a literal segment, raw-byte offset in a random one.
    offset: u64,
    rng: Option<fastrand::Rng>,
}

impl MimeReader {
    /// Whether every byte has been produced.
    pub(crate) fn is_done(&self) -> bool {
        self.segment >= self.template.segments.len()
    }

    /// The next chunk of at most about `max` bytes (whole base64 lines), or `None` at the end.
    pub(crate) fn next_chunk(&mut self, max: usize) -> Option<Bytes> {
        let mut out = BytesMut::with_capacity(max.min(CHUNK_SIZE));
        let mut line_raw = [0u8; RAW_PER_LINE as usize];
        let mut line_enc = [0u8; 80];
        let template = Arc::clone(&self.template);
        while out.len() < max {
            let Some(segment) = template.segments.get(self.segment) else {
                break;
            };
            match segment {
                Segment::Literal(bytes) => {
                    let start = usize::try_from(self.offset).unwrap_or(usize::MAX);
                    let rest = bytes.get(start..).unwrap_or_default();
                    let take = rest.len().min(max - out.len());
                    out.extend_from_slice(rest.get(..take).unwrap_or_default());
                    self.offset += take as u64;
                    if take == rest.len() {
                        self.next_segment();
                    }
                }
                Segment::Random { seed, raw_len } => {
                    let rng = self
                        .rng
                        .get_or_insert_with(|| fastrand::Rng::with_seed(*seed));
                    // Whole lines only, but always at least one so progress is made.
                    while self.offset < *raw_len
                        && (out.is_empty() || out.len() + LINE_BYTES as usize <= max)
                    {
                        let n = usize::try_from((*raw_len - self.offset).min(RAW_PER_LINE))
                            .unwrap_or(0);
                        let raw = line_raw.get_mut(..n).unwrap_or_default();
                        rng.fill(raw);
                        let written = STANDARD.encode_slice(&*raw, &mut line_enc).unwrap_or(0);
                        out.extend_from_slice(line_enc.get(..written).unwrap_or_default());
                        out.extend_from_slice(b"\r\n");
                        self.offset += n as u64;
                    }
                    if self.offset >= *raw_len {
                        self.next_segment();
                    } else {
                        break;
                    }
                }
                Segment::Content(raw) => {
                    let total = raw.len() as u64;
                    while self.offset < total
                        && (out.is_empty() || out.len() + LINE_BYTES as usize <= max)
                    {
                        let start = usize::try_from(self.offset).unwrap_or(usize::MAX);
                        let end = start.saturating_add(RAW_PER_LINE as usize).min(raw.len());
                        let line = raw.get(start..end).unwrap_or_default();
                        let written = STANDARD.encode_slice(line, &mut line_enc).unwrap_or(0);
                        out.extend_from_slice(line_enc.get(..written).unwrap_or_default());
                        out.extend_from_slice(b"\r\n");
                        self.offset += line.len().max(1) as u64;
                    }
                    if self.offset >= total {
                        self.next_segment();
                    } else {
                        break;
                    }
                }
            }
        }
        if out.is_empty() && self.is_done() {
            None
        } else {
            Some(out.freeze())
        }
    }

    fn next_segment(&mut self) {
        self.segment += 1;
        self.offset = 0;
        self.rng = None;
    }
}

/// Everything needed to render a message's MIME.
pub(crate) struct MimeInput<'a> {
    pub(crate) from: &'a Address,
    pub(crate) to: &'a [Address],
    pub(crate) cc: &'a [Address],
    pub(crate) subject: &'a str,
    pub(crate) date: OffsetDateTime,
    pub(crate) message_id: &'a str,
    pub(crate) body_text: &'a str,
    /// The HTML alternative as a client gave it; derived from `body_text` when absent.
    pub(crate) body_html: Option<&'a str>,
    /// `References`, oldest first; the last one is also `In-Reply-To` (RFC 5322 section 3.6.4).
    pub(crate) references: &'a [String],
    pub(crate) importance: &'a str,
    pub(crate) attachments: &'a [AttachmentSpec],
    /// Target total size for a generated message: one extra attachment fills the gap.
    pub(crate) generated_size: Option<u64>,
}

/// Renders a message: RFC 5322 headers, `multipart/mixed` holding a `multipart/alternative`
/// (text/plain + text/html) and base64 attachments; CRLF throughout.
pub(crate) fn render(input: &MimeInput<'_>) -> MimeTemplate {
    let seed = fnv1a(&[input.message_id.as_bytes(), input.subject.as_bytes()]);
    let mixed = format!("----=_NextPart_{seed:016x}_mixed");
    let alt = format!("----=_NextPart_{seed:016x}_alt");

    let mut head = String::new();
    head.push_str("Received: from mail.sandbox.invalid (10.0.0.1) by sandbox.outlook.invalid\r\n");
    head.push_str(&format!(
        " with Microsoft SMTP Server; {}\r\n",
        rfc2822(input.date)
    ));
    head.push_str(&header("From", &format_address(input.from)));
    let to: Vec<String> = input.to.iter().map(format_address).collect();
    head.push_str(&header("To", &to.join(", ")));
    if !input.cc.is_empty() {
        let cc: Vec<String> = input.cc.iter().map(format_address).collect();
        head.push_str(&header("Cc", &cc.join(", ")));
    }
    head.push_str(&header("Subject", &encode_header_text(input.subject)));
    head.push_str(&header("Date", &rfc2822(input.date)));
    head.push_str(&header("Message-ID", input.message_id));
    if let Some(parent) = input.references.last() {
        head.push_str(&header("In-Reply-To", parent));
        head.push_str(&header("References", &input.references.join(" ")));
    }
    if input.importance == "high" {
        head.push_str("Importance: high\r\nX-Priority: 1\r\n");
    }
    head.push_str("MIME-Version: 1.0\r\n");
    head.push_str(&format!(
        "Content-Type: multipart/mixed;\r\n\tboundary=\"{mixed}\"\r\n\r\n"
    ));
    head.push_str("This is a multi-part message in MIME format.\r\n\r\n");
    head.push_str(&format!("--{mixed}\r\n"));
    head.push_str(&format!(
        "Content-Type: multipart/alternative;\r\n\tboundary=\"{alt}\"\r\n\r\n"
    ));
    head.push_str(&format!("--{alt}\r\n"));
    head.push_str(&text_part("text/plain", input.body_text));
    head.push_str(&format!("--{alt}\r\n"));
    let html = input
        .body_html
        .map_or_else(|| html_body(input.body_text), str::to_owned);
    head.push_str(&text_part("text/html", &html));
    head.push_str(&format!("--{alt}--\r\n\r\n"));

    let mut segments = Vec::new();
    let mut literal = head;
    for (i, a) in input.attachments.iter().enumerate() {
        literal.push_str(&attachment_head(&mixed, &a.filename, &a.content_type));
        segments.push(Segment::Literal(Bytes::from(std::mem::take(&mut literal))));
        segments.push(match &a.content {
            Some(content) => Segment::Content(content.clone()),
            None => Segment::Random {
                seed: fnv1a(&[
                    a.filename.as_bytes(),
                    &a.size.to_le_bytes(),
                    input.subject.as_bytes(),
                    &(i as u64).to_le_bytes(),
                ]),
                raw_len: a.size,
            },
        });
    }
    let closing = format!("--{mixed}--\r\n");
    if let Some(target) = input.generated_size {
        let name = GENERATED_ATTACHMENT;
        literal.push_str(&attachment_head(&mixed, name, "application/octet-stream"));
        let fixed: u64 = segments.iter().map(Segment::len).sum::<u64>()
            + literal.len() as u64
            + closing.len() as u64;
        let raw_len = raw_len_for_budget(target.saturating_sub(fixed));
        segments.push(Segment::Literal(Bytes::from(std::mem::take(&mut literal))));
        segments.push(Segment::Random {
            seed: fnv1a(&[
                name.as_bytes(),
                &target.to_le_bytes(),
                input.subject.as_bytes(),
            ]),
            raw_len,
        });
    }
    literal.push_str(&closing);
    segments.push(Segment::Literal(Bytes::from(literal)));
    MimeTemplate::new(segments)
}

/// The file name of the attachment that pads a generated message out to its size.
pub(crate) const GENERATED_ATTACHMENT: &str = "payload.bin";

fn attachment_head(boundary: &str, filename: &str, content_type: &str) -> String {
    let name = encode_header_text(filename).replace('"', "'");
    format!(
        "--{boundary}\r\nContent-Type: {content_type};\r\n\tname=\"{name}\"\r\n\
         Content-Description: {name}\r\n\
         Content-Disposition: attachment;\r\n\tfilename=\"{name}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n"
    )
}

/// A text part: 7bit when ASCII with short lines, else base64.
fn text_part(content_type: &str, text: &str) -> String {
    let normalized = crlf(text);
    let seven_bit = normalized.is_ascii() && normalized.split("\r\n").all(|l| l.len() <= 998);
    if seven_bit {
        format!(
            "Content-Type: {content_type}; charset=\"utf-8\"\r\n\
             Content-Transfer-Encoding: 7bit\r\n\r\n{normalized}\r\n\r\n"
        )
    } else {
        let encoded = STANDARD.encode(normalized.as_bytes());
        let mut wrapped = String::with_capacity(encoded.len() + encoded.len() / 38);
        for line in encoded.as_bytes().chunks(76) {
            wrapped.push_str(&String::from_utf8_lossy(line));
            wrapped.push_str("\r\n");
        }
        format!(
            "Content-Type: {content_type}; charset=\"utf-8\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{wrapped}\r\n"
        )
    }
}

/// Normalizes any line endings to CRLF.
fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .replace('\n', "\r\n")
}

/// The HTML alternative of a plain-text body.
pub(crate) fn html_body(text: &str) -> String {
    let mut html = String::from(
        "<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">\n</head>\n<body>\n",
    );
    for paragraph in text.replace("\r\n", "\n").split("\n\n") {
        html.push_str("<p>");
        html.push_str(&escape_html(paragraph).replace('\n', "<br>\n"));
        html.push_str("</p>\n");
    }
    html.push_str("</body>\n</html>");
    html
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `Name: value` folded at whitespace so lines stay under 78 characters where possible.
fn header(name: &str, value: &str) -> String {
    let mut out = format!("{name}:");
    let mut line_len = out.len();
    for (i, word) in value.split(' ').enumerate() {
        if i > 0 && line_len + 1 + word.len() > 76 {
            out.push_str("\r\n");
            line_len = 0;
        }
        out.push(' ');
        out.push_str(word);
        line_len += 1 + word.len();
    }
    out.push_str("\r\n");
    out
}

/// RFC 2047 encoded words for non-ASCII text; ASCII text unchanged.
fn encode_header_text(text: &str) -> String {
    if text.is_ascii() && !text.contains(['\r', '\n']) {
        return text.to_owned();
    }
    // Encoded words of at most 45 bytes of UTF-8, split on character boundaries.
    let mut words = Vec::new();
    let mut current = String::new();
    for c in text.chars().filter(|c| *c != '\r' && *c != '\n') {
        if current.len() + c.len_utf8() > 45 {
            words.push(format!(
                "=?utf-8?B?{}?=",
                STANDARD.encode(current.as_bytes())
            ));
            current.clear();
        }
        current.push(c);
    }
    if !current.is_empty() {
        words.push(format!(
            "=?utf-8?B?{}?=",
            STANDARD.encode(current.as_bytes())
        ));
    }
    words.join(" ")
}

fn format_address(a: &Address) -> String {
    if a.name.is_empty() {
        return format!("<{}>", a.address);
    }
    let name = if a.name.is_ascii() {
        format!("\"{}\"", a.name.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        encode_header_text(&a.name)
    };
    format!("{name} <{}>", a.address)
}

fn rfc2822(t: OffsetDateTime) -> String {
    t.format(&Rfc2822).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(
        from: &'a Address,
        to: &'a [Address],
        attachments: &'a [AttachmentSpec],
        generated: Option<u64>,
    ) -> MimeInput<'a> {
        MimeInput {
            from,
            to,
            cc: &[],
            subject: "Grüße: quarterly report",
            date: OffsetDateTime::UNIX_EPOCH,
            message_id: "<abc@fabrikam.com>",
            body_text: "Hello,\nplease find the report attached.\n",
            body_html: None,
            references: &[],
            importance: "normal",
            attachments,
            generated_size: generated,
        }
    }

    #[test]
    fn length_matches_rendered_bytes_and_lines_are_crlf() {
        let from = Address::new("Fabrikam Billing", "billing@fabrikam.com");
        let to = [Address::new("Reports", "reports@contoso.com")];
        for size in [0usize, 1, 56, 57, 58, 1000, 100_003] {
            let att = [AttachmentSpec {
                filename: "report.pdf".into(),
                content_type: "application/pdf".into(),
                size: size as u64,
                ..AttachmentSpec::default()
            }];
            let t = Arc::new(render(&input(&from, &to, &att, None)));
            let bytes = t.to_vec();
            assert_eq!(bytes.len() as u64, t.len());
            let text = String::from_utf8(bytes).unwrap();
            assert!(!text.replace("\r\n", "").contains('\n'));
            assert!(text.lines().all(|l| l.len() <= 998));
            assert!(text.contains("Subject: =?utf-8?B?"));
            assert!(text.contains("MIME-Version: 1.0\r\n"));
        }
    }

    #[test]
    fn attachment_content_is_deterministic() {
        let from = Address::new("A", "a@b.c");
        let att = [AttachmentSpec {
            filename: "x.bin".into(),
            content_type: "application/octet-stream".into(),
            size: 5000,
            ..AttachmentSpec::default()
        }];
        let a = Arc::new(render(&input(&from, &[], &att, None)));
        let b = Arc::new(render(&input(&from, &[], &att, None)));
        assert_eq!(a.sha256(), b.sha256());
    }

    #[test]
    fn generated_messages_are_about_the_requested_size() {
        let from = Address::new("A", "a@b.c");
        for target in [10_000u64, 1_000_000, 3_333_333] {
            let t = Arc::new(render(&input(&from, &[], &[], Some(target))));
            assert!(
                t.len() <= target && t.len() + 80 >= target,
                "{} vs {target}",
                t.len()
            );
            assert_eq!(t.to_vec().len() as u64, t.len());
        }
    }

    #[test]
    fn attached_content_is_encoded_and_replies_name_their_parent() {
        let from = Address::new("A", "a@b.c");
        for size in [0usize, 1, 56, 57, 58, 4000] {
            let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let att = [AttachmentSpec {
                filename: "data.bin".into(),
                content_type: "application/octet-stream".into(),
                size: size as u64,
                content: Some(Bytes::from(bytes.clone())),
                sha256: None,
            }];
            let references = ["<parent@b.c>".to_owned()];
            let mut i = input(&from, &[], &att, None);
            i.references = &references;
            let t = Arc::new(render(&i));
            let text = String::from_utf8(t.to_vec()).unwrap();
            assert_eq!(text.len() as u64, t.len());
            assert!(text.contains("In-Reply-To: <parent@b.c>\r\nReferences: <parent@b.c>\r\n"));
            let start = text.find("filename=\"data.bin\"").unwrap();
            let body = &text[start..];
            let body = &body[body.find("\r\n\r\n").unwrap() + 4..];
            let body = &body[..body.find("--").unwrap()];
            let decoded = STANDARD.decode(body.replace("\r\n", "")).unwrap();
            assert_eq!(decoded, bytes);
        }
    }

    #[test]
    fn chunks_are_bounded() {
        let from = Address::new("A", "a@b.c");
        let t = Arc::new(render(&input(&from, &[], &[], Some(1_000_000))));
        let mut r = t.reader();
        let mut total = 0;
        while let Some(c) = r.next_chunk(CHUNK_SIZE) {
            assert!(c.len() <= CHUNK_SIZE);
            total += c.len();
        }
        assert_eq!(total as u64, t.len());
    }
}
