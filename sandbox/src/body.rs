//! Response bodies: the streamed MIME of `$value`, and bodies cut short by injected faults.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::Stream;

use crate::core::Core;
use crate::mime::{CHUNK_SIZE, MimeReader, MimeTemplate};
use crate::requests::RequestRecord;
use crate::throttle::SlotGuard;

/// How an injected fault cuts a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultCut {
    /// The body errors before its first byte: the connection closes without a complete response.
    Drop,
    /// Half the body (against the full `Content-Length`), then an error closes the connection.
    Truncate,
}

fn cut_error(cut: FaultCut) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        match cut {
            FaultCut::Drop => "connection dropped by an injected fault",
            FaultCut::Truncate => "body truncated by an injected fault",
        },
    )
}

/// How long a truncated body waits before failing, so the server flushes the part already
/// produced (otherwise the connection is torn down with the bytes still buffered).
const FLUSH_GRACE: Duration = Duration::from_millis(20);

/// A small body cut by a fault.
pub(crate) fn faulty_body(bytes: Bytes, cut: FaultCut) -> axum::body::Body {
    let prefix = match cut {
        FaultCut::Drop => None,
        FaultCut::Truncate => Some(bytes.slice(..bytes.len() / 2)).filter(|b| !b.is_empty()),
    };
    axum::body::Body::from_stream(CutBody {
        prefix,
        grace: None,
        cut,
        done: false,
    })
}

/// Yields an optional prefix, waits [`FLUSH_GRACE`] if it did, then fails.
struct CutBody {
    prefix: Option<Bytes>,
    grace: Option<Pin<Box<tokio::time::Sleep>>>,
    cut: FaultCut,
    done: bool,
}

impl Stream for CutBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(prefix) = this.prefix.take() {
            this.grace = Some(Box::pin(tokio::time::sleep(FLUSH_GRACE)));
            return Poll::Ready(Some(Ok(prefix)));
        }
        if let Some(grace) = this.grace.as_mut()
            && grace.as_mut().poll(cx).is_pending()
        {
            return Poll::Pending;
        }
        this.done = true;
        Poll::Ready(Some(Err(cut_error(this.cut))))
    }
}

/// The MIME of a message streamed in chunks, holding the request's in-flight slot and log
/// record. Both are released when the last chunk is produced (before the client can have read
/// it), when a fault cuts the body, or when the client goes away and the stream is dropped.
pub(crate) struct MimeStream {
    reader: MimeReader,
    slot: Option<SlotGuard>,
    pending: Option<(Arc<Core>, RequestRecord)>,
    /// With a fault: stop after this many bytes and fail.
    cut_at: Option<(u64, FaultCut)>,
    produced: u64,
    failed: bool,
    grace: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl MimeStream {
    pub(crate) fn new(
        template: &Arc<MimeTemplate>,
        slot: Option<SlotGuard>,
        core: Arc<Core>,
        record: RequestRecord,
        cut: Option<FaultCut>,
    ) -> Self {
        let cut_at = cut.map(|c| match c {
            FaultCut::Drop => (0, c),
            FaultCut::Truncate => (template.len() / 2, c),
        });
        Self {
            reader: template.reader(),
            slot,
            pending: Some((core, record)),
            cut_at,
            produced: 0,
            failed: false,
            grace: None,
        }
    }

    fn finish(&mut self) {
        self.slot.take();
        if let Some((core, mut record)) = self.pending.take() {
            record.finished = Instant::now();
            core.record(record);
        }
    }
}

impl Stream for MimeStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        if let Some((limit, cut)) = this.cut_at
            && this.produced >= limit
        {
            this.finish();
            // Let the server flush what was produced before the connection is torn down.
            if this.produced > 0 {
                let grace = this
                    .grace
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(FLUSH_GRACE)));
                if grace.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            this.failed = true;
            return Poll::Ready(Some(Err(cut_error(cut))));
        }
        let max = match this.cut_at {
            Some((limit, _)) => usize::try_from(limit - this.produced)
                .unwrap_or(CHUNK_SIZE)
                .min(CHUNK_SIZE),
            None => CHUNK_SIZE,
        };
        match this.reader.next_chunk(max) {
            None => {
                this.finish();
                Poll::Ready(None)
            }
            Some(chunk) => {
                let chunk = match this.cut_at {
                    Some((limit, _)) => {
                        let room = usize::try_from(limit - this.produced).unwrap_or(usize::MAX);
                        chunk.slice(..chunk.len().min(room))
                    }
                    None => chunk,
                };
                this.produced += chunk.len() as u64;
                let last = this.reader.is_done()
                    || this.cut_at.is_some_and(|(limit, _)| this.produced >= limit);
                if last {
                    // Free the slot before this final chunk can reach the client.
                    this.finish();
                }
                Poll::Ready(Some(Ok(chunk)))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, None)
    }
}

impl Drop for MimeStream {
    fn drop(&mut self) {
        self.finish();
    }
}
