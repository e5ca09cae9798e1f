//! Serving a stored file: conditional requests, ranges, and the chunk-window body.
//!
//! The body is produced by a task that reads `chunks_per_read` chunks per query (the first
//! query one chunk, [`FIRST_WINDOW`]), starting at the chunk that holds the first requested
//! byte, and hands them to hyper through a channel one window deep: the next window is
//! fetched while the previous one is being sent, and memory stays at about two windows per
//! download. A client that goes away closes the channel and
//! the task stops. A small file's chunks come with its name's lookup ([`Store::lookup_whole`])
//! and are sent from memory, by no task of their own.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;

use crate::conditional::{etag, http_date, Decision, Preconditions};
use crate::error::{NodeError, Result};
use crate::range::{chunk_span, if_range_holds, parse_range, RangeRequest};
use crate::respond::{self, empty_body};
use crate::store::{FileInfo, Store};
use crate::Body;

/// The response to GET or HEAD of `file`; `whole`: its every chunk, when the lookup read
/// them already ([`Store::lookup_whole`]), else they are read in windows.
pub fn respond(
    store: &Store,
    file: FileInfo,
    whole: Option<Vec<Bytes>>,
    headers: &HeaderMap,
    head: bool,
    chunks_per_read: u64,
) -> Result<Response<Body>> {
    let etag = etag(&file);
    let last_modified = http_date(file.uploaded_at.timestamp_millis());
    let header_str = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let mut builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, &last_modified)
        .header(header::ACCEPT_RANGES, "bytes");
    match Preconditions::from_headers(headers).evaluate_file(Some(&file), true) {
        Decision::Proceed => {}
        Decision::Failed => return Err(NodeError::PreconditionFailed(file.name)),
        Decision::NotModified => return respond::empty(builder.status(StatusCode::NOT_MODIFIED)),
    }
    let length = file.length as u64;
    let range = if if_range_holds(header_str(header::IF_RANGE), &etag) {
        parse_range(header_str(header::RANGE), length)
    } else {
        RangeRequest::Full
    };
    let (status, start, count) = match range {
        RangeRequest::Unsatisfiable => return Err(NodeError::RangeNotSatisfiable { length }),
        RangeRequest::Full => (StatusCode::OK, 0, length),
        RangeRequest::Partial { start, end } => {
            builder = builder.header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{length}"),
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
    };
    let body = if head || count == 0 {
        empty_body()
    } else {
        stream_chunks(
            store.clone(),
            file.clone(),
            whole,
            start,
            count,
            chunks_per_read,
        )
    };
    respond::body(
        builder
            .status(status)
            .header(header::CONTENT_TYPE, &file.content_type)
            .header(header::CONTENT_LENGTH, count),
        body,
    )
}

/// How often a window whose read failed on the database is tried again mid-download,
/// after pauses doubling from [`FIRST_PAUSE`] (1.5 s in all): a failover or a dropped
/// connection costs the download a pause, not its end. (The driver retries a read once
/// by itself; `scripts/drill-failpoints` cut a direct GET with that alone.)
const READ_RETRIES: u32 = 4;
const FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Chunks `from..to` of `file`, retried on database errors (see [`READ_RETRIES`]); a
/// damaged file is not retried.
async fn read_window(store: &Store, file: &FileInfo, from: u64, to: u64) -> Result<Vec<Bytes>> {
    let mut pause = FIRST_PAUSE;
    for _ in 0..READ_RETRIES {
        match store.read_chunks(file.layout(), from, to).await {
            Err(NodeError::Database(e)) => {
                tracing::warn!(file = %file.name, chunk = from, error = %e, "chunk read failed; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            read => return read,
        }
    }
    store.read_chunks(file.layout(), from, to).await
}

/// Chunks in a download's first window read: the first byte waits for this window alone
/// (a player seeking into a large file waits for it), and the next, full window is read
/// while it is sent. One chunk instead of `chunks_per_read` cuts a 1 GiB file's time to
/// first byte (see `scripts/bench`, "time to first byte"); the extra query per download costs
/// one round trip.
const FIRST_WINDOW: u64 = 1;

fn stream_chunks(
    store: Store,
    file: FileInfo,
    whole: Option<Vec<Bytes>>,
    start: u64,
    count: u64,
    window: u64,
) -> Body {
    let chunk_size = file.chunk_size as u64;
    let (first, last, skip) = chunk_span(start, start + count - 1, chunk_size);
    let mut cut = Cut {
        skip,
        remaining: count,
    };
    if let Some(all) = whole {
        // In memory already: no task, no channel.
        let frames: Vec<std::io::Result<Frame<Bytes>>> = all
            .into_iter()
            .skip(first as usize)
            .take((last - first + 1) as usize)
            .map(|chunk| Ok(Frame::data(cut.next(chunk))))
            .collect();
        return StreamBody::new(futures::stream::iter(frames)).boxed_unsync();
    }
    let (tx, rx) = mpsc::channel::<std::io::Result<Frame<Bytes>>>(window as usize);
    tokio::spawn(async move {
        let mut n = first;
        let mut reading = FIRST_WINDOW.min(window);
        while n <= last {
            let to = (n + reading).min(last + 1);
            reading = window;
            let chunks = match read_window(&store, &file, n, to).await {
                Ok(chunks) => chunks,
                Err(e) => {
                    tracing::error!(file = %file.name, chunk = n, error = %e, "download cut short");
                    // An error frame makes hyper abort the response: the client sees a
                    // truncated body rather than wrong bytes.
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            for chunk in chunks {
                if tx.send(Ok(Frame::data(cut.next(chunk)))).await.is_err() {
                    return; // client went away
                }
            }
            n = to;
        }
    });
    let frames = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (frame, rx))
    });
    StreamBody::new(frames).boxed_unsync()
}

/// What of each chunk, in order from the range's first, the response carries: the first
/// loses the bytes before the range's start, the last those after its end.
struct Cut {
    skip: usize,
    remaining: u64,
}

impl Cut {
    fn next(&mut self, mut chunk: Bytes) -> Bytes {
        if self.skip > 0 {
            chunk = chunk.slice(self.skip.min(chunk.len())..);
            self.skip = 0;
        }
        if chunk.len() as u64 > self.remaining {
            chunk.truncate(self.remaining as usize);
        }
        self.remaining -= chunk.len() as u64;
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_cuts_its_first_and_last_chunk() {
        let chunks = [&b"0123"[..], b"4567", b"89ab"].map(Bytes::from_static);
        // bytes 2..=8 of 12 in chunks of 4: chunk 0 from offset 2, chunk 2 up to offset 0
        let (first, last, skip) = chunk_span(2, 8, 4);
        assert_eq!((first, last, skip), (0, 2, 2));
        let mut cut = Cut { skip, remaining: 7 };
        let got: Vec<Bytes> = chunks.into_iter().map(|c| cut.next(c)).collect();
        assert_eq!(got, [&b"23"[..], b"4567", b"8"]);
        assert_eq!(cut.remaining, 0);
        // One chunk, cut at both ends.
        let mut cut = Cut {
            skip: 1,
            remaining: 2,
        };
        assert_eq!(cut.next(Bytes::from_static(b"0123")), &b"12"[..]);
    }
}
