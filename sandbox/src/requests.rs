//! The request log and the global counters.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use serde::Serialize;

use crate::throttle::MailboxStats;

/// Oldest records are dropped beyond this many, so long benchmarks stay bounded.
const LOG_CAPACITY: usize = 1_000_000;

/// One request as the sandbox saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Percent-decoded path.
    pub path: String,
    /// Path as sent (shows whether ids were percent-encoded).
    pub raw_path: String,
    /// Percent-decoded query string, without `?` (empty if none).
    pub query: String,
    /// Response status (200 for a streamed body even if a fault cut it short).
    pub status: u16,
    /// Lowercased mailbox address, once the path named one.
    pub mailbox: Option<String>,
    /// The app: from the access token (Graph) or the form (token endpoint).
    pub client_id: Option<String>,
    /// Whether `Prefer: IdType="ImmutableId"` was sent.
    pub immutable_ids: bool,
    /// The `client-request-id` header, if sent.
    pub client_request_id: Option<String>,
    /// The `request-id` the sandbox answered with.
    pub request_id: String,
    /// The injected fault that hit this request, if any ("status", "throttle", "delay",
    /// "dropConnection", "truncateBody").
    pub fault: Option<String>,
    /// When the request arrived.
    pub started: Instant,
    /// When the response was produced (for streamed bodies: when the last chunk was produced or
    /// the stream was dropped).
    pub finished: Instant,
}

/// Counters for `GET /_sandbox/stats` and [`crate::Sandbox::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Requests to the token endpoint (successful or not).
    pub token_requests: usize,
    /// Tokens issued.
    pub tokens_issued: usize,
    /// Graph requests of any outcome.
    pub graph_requests: usize,
    /// Per lowercased mailbox address.
    pub mailboxes: BTreeMap<String, MailboxStats>,
}

#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    records: VecDeque<RequestRecord>,
    pub(crate) token_requests: usize,
    pub(crate) tokens_issued: usize,
    pub(crate) graph_requests: usize,
}

impl RequestLog {
    pub(crate) fn push(&mut self, r: RequestRecord) {
        if self.records.len() >= LOG_CAPACITY {
            self.records.pop_front();
        }
        self.records.push_back(r);
    }

    pub(crate) fn records(&self) -> Vec<RequestRecord> {
        self.records.iter().cloned().collect()
    }

    pub(crate) fn clear(&mut self) {
        self.records.clear();
    }
}

/// JSON form of a [`RequestRecord`] for the control API; instants become milliseconds since the
/// sandbox started.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RequestRecordJson<'a> {
    method: &'a str,
    path: &'a str,
    raw_path: &'a str,
    query: &'a str,
    status: u16,
    mailbox: Option<&'a str>,
    client_id: Option<&'a str>,
    immutable_ids: bool,
    client_request_id: Option<&'a str>,
    request_id: &'a str,
    fault: Option<&'a str>,
    started_ms: f64,
    finished_ms: f64,
}

impl<'a> RequestRecordJson<'a> {
    pub(crate) fn new(r: &'a RequestRecord, origin: Instant) -> Self {
        Self {
            method: &r.method,
            path: &r.path,
            raw_path: &r.raw_path,
            query: &r.query,
            status: r.status,
            mailbox: r.mailbox.as_deref(),
            client_id: r.client_id.as_deref(),
            immutable_ids: r.immutable_ids,
            client_request_id: r.client_request_id.as_deref(),
            request_id: &r.request_id,
            fault: r.fault.as_deref(),
            started_ms: r.started.saturating_duration_since(origin).as_secs_f64() * 1000.0,
            finished_ms: r.finished.saturating_duration_since(origin).as_secs_f64() * 1000.0,
        }
    }
}
