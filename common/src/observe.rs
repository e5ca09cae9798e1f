//! What each request did, seen from outside the handler: counted into the HTTP metrics
//! ([`crate::metrics::HttpMetrics`]) and written as one access-log line when its answer
//! ends, on the balancer and every node alike.
//!
//! [`Observer::begin`] wraps the request's body to count what arrives ([`Metered`]) and
//! returns an [`Exchange`]; [`Exchange::respond`] wraps the answer's body to count what is
//! sent ([`Observed`]). When that body is dropped (hyper drops it after its last byte, or
//! when the client goes away) the request is counted and logged: status, bytes in and out,
//! duration, time to first byte. A request whose client left before any answer is logged
//! with nginx's 499.
//!
//! The log line ([`crate::access_log`], formatted by hand for speed, in the shape of a
//! `tracing` event with target `access` and message `access`) goes where every other line
//! goes (stdout, rotated by the supervisor), in text or JSON (`SPEEDBOX_LOG_FORMAT=json`),
//! and `RUST_LOG=info,access=off` turns it off. Successful
//! health checks and scrapes are logged at debug (`RUST_LOG=info,access=debug` shows them).
//! Credentials in the URL (a `token=` or `sig=` query value, a `/s/<sig>/` path segment)
//! are redacted.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Buf;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};

use crate::access_log::{self, AccessLine};
use crate::headers::{X_REQUEST_ID, X_SPEEDBOX_NODE};
use crate::metrics::{HttpMetrics, MethodLabel, RequestLabels, RouteClass, StatusClass};

/// The status logged for a request whose client went away before it was answered (nginx's
/// convention; never sent).
pub const CLIENT_CLOSED: u16 = 499;

/// Starts an observation per request; cheap to clone.
#[derive(Debug, Clone)]
pub struct Observer {
    http: Arc<HttpMetrics>,
}

/// One request under observation, from its arrival to its answer's head.
#[derive(Debug)]
pub struct Exchange {
    record: Option<Arc<Record>>,
}

/// A request body that counts the bytes read from it.
#[derive(Debug)]
pub struct Metered<B> {
    inner: B,
    record: Arc<Record>,
}

/// An answer body that counts the bytes sent and finishes the observation when dropped.
#[derive(Debug)]
pub struct Observed<B> {
    inner: B,
    sent: u64,
    finish: Option<Finish>,
}

#[derive(Debug)]
struct Record {
    http: Arc<HttpMetrics>,
    start: Instant,
    route: RouteClass,
    method: Method,
    uri: Uri,
    client: SocketAddr,
    received: AtomicU64,
    principal: OnceLock<Box<str>>,
}

#[derive(Debug)]
struct Finish {
    record: Arc<Record>,
    status: StatusCode,
    first_byte: Duration,
    node: Option<HeaderValue>,
    request_id: Option<HeaderValue>,
}

/// Where a handler that learns who a request came from writes it down (see
/// [`Exchange::principal_note`]).
#[derive(Debug, Clone)]
pub struct PrincipalNote(Arc<Record>);

impl PrincipalNote {
    /// Records who the request came from (a token's `sub`) for its access-log line; the
    /// first call counts.
    pub fn set(&self, principal: &str) {
        let _ = self.0.principal.set(principal.into());
    }
}

impl Observer {
    pub fn new(http: Arc<HttpMetrics>) -> Observer {
        Observer { http }
    }

    /// Starts observing `request`, which came from `client`.
    pub fn begin<B>(
        &self,
        request: Request<B>,
        client: SocketAddr,
    ) -> (Request<Metered<B>>, Exchange) {
        let (parts, body) = request.into_parts();
        let route = RouteClass::of(parts.uri.path());
        let record = Arc::new(Record {
            http: Arc::clone(&self.http),
            start: Instant::now(),
            route,
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            client,
            received: AtomicU64::new(0),
            principal: OnceLock::new(),
        });
        record.http.route(route).in_flight.inc();
        let body = Metered {
            inner: body,
            record: Arc::clone(&record),
        };
        let exchange = Exchange {
            record: Some(record),
        };
        (Request::from_parts(parts, body), exchange)
    }
}

impl Exchange {
    /// Where to note who the request came from, for a handler that finds out later (the
    /// node puts it in the request's extensions).
    pub fn principal_note(&self) -> Option<PrincipalNote> {
        self.record.as_ref().map(|r| PrincipalNote(Arc::clone(r)))
    }

    /// Records who the request came from; see [`PrincipalNote::set`].
    pub fn note_principal(&self, principal: &str) {
        if let Some(record) = &self.record {
            let _ = record.principal.set(principal.into());
        }
    }

    /// Wraps `response`, the request's answer, to finish the observation after its body.
    pub fn respond<B>(mut self, response: Response<B>) -> Response<Observed<B>> {
        let (parts, body) = response.into_parts();
        let finish = self.record.take().map(|record| Finish {
            first_byte: record.start.elapsed(),
            status: parts.status,
            node: parts.headers.get(X_SPEEDBOX_NODE).cloned(),
            request_id: parts.headers.get(X_REQUEST_ID).cloned(),
            record,
        });
        let body = Observed {
            inner: body,
            sent: 0,
            finish,
        };
        Response::from_parts(parts, body)
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            let elapsed = record.start.elapsed();
            let status = StatusCode::from_u16(CLIENT_CLOSED).unwrap_or(StatusCode::BAD_REQUEST);
            record.finish(status, 0, elapsed, elapsed, None, None);
        }
    }
}

impl Record {
    fn finish(
        &self,
        status: StatusCode,
        sent: u64,
        first_byte: Duration,
        duration: Duration,
        node: Option<&HeaderValue>,
        request_id: Option<&HeaderValue>,
    ) {
        let received = self.received.load(Ordering::Relaxed);
        let http = &self.http;
        let series = http.route(self.route);
        series.in_flight.dec();
        http.requests
            .get_or_create(&RequestLabels {
                route: self.route,
                method: MethodLabel::of(&self.method),
                status: StatusClass::of(status),
            })
            .inc();
        series.duration.observe(duration.as_secs_f64());
        series.first_byte.observe(first_byte.as_secs_f64());
        series.received.inc_by(received);
        series.sent.inc_by(sent);
        fn text(v: Option<&HeaderValue>) -> &str {
            v.and_then(|v| v.to_str().ok()).unwrap_or("-")
        }
        // Health checks and scrapes come every second from the balancer and Prometheus:
        // their successes would drown the log, so they are logged at debug.
        let routine = status.is_success() && is_routine(self.uri.path());
        access_log::write(
            routine,
            &AccessLine {
                client: self.client,
                principal: self.principal.get().map_or("-", |p| p),
                method: self.method.as_str(),
                path: &redact(&self.uri),
                status: status.as_u16(),
                bytes_in: received,
                bytes_out: sent,
                duration_ms: duration,
                first_byte_ms: first_byte,
                node: text(node),
                request_id: text(request_id),
            },
        );
    }
}

/// Paths polled by machines: `/healthz` and `/metrics`.
fn is_routine(path: &str) -> bool {
    path == "/healthz" || path == crate::metrics::PATH
}

/// `uri`'s path and query with credentials replaced by `REDACTED`: a signed link's path
/// signature (`/s/<sig>/…`) and `token=` and `sig=` query values.
pub fn redact(uri: &Uri) -> Cow<'_, str> {
    let Some(pq) = uri.path_and_query() else {
        return Cow::Borrowed("/");
    };
    let (path, query) = (pq.path(), pq.query());
    let signed = path.starts_with("/s/");
    let secret_query = query.is_some_and(|q| q.split('&').any(is_secret_pair));
    if !signed && !secret_query {
        return Cow::Borrowed(pq.as_str());
    }
    let mut out = String::with_capacity(pq.as_str().len());
    match path
        .strip_prefix("/s/")
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
    {
        Some(rest) if signed => {
            out.push_str("/s/REDACTED");
            out.push_str(rest);
        }
        _ => out.push_str(path),
    }
    if let Some(query) = query {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((key, _)) if is_secret_pair(pair) => {
                    out.push_str(key);
                    out.push_str("=REDACTED");
                }
                _ => out.push_str(pair),
            }
        }
    }
    Cow::Owned(out)
}

fn is_secret_pair(pair: &str) -> bool {
    pair.starts_with("token=") || pair.starts_with("sig=")
}

/// The payload bytes of `frame` (0 for trailers).
pub fn data_len<D: Buf>(frame: &Frame<D>) -> u64 {
    frame.data_ref().map_or(0, |d| d.remaining() as u64)
}

/// What polling body `B` for a frame gives.
type Polled<B> = Poll<Option<Result<Frame<<B as Body>::Data>, <B as Body>::Error>>>;

/// Polls `body` for its next frame and tells `count` the bytes of a data frame.
fn poll_counting<B: Body + Unpin>(
    body: &mut B,
    cx: &mut Context<'_>,
    count: impl FnOnce(u64),
) -> Polled<B>
where
    B::Data: Buf,
{
    let polled = Pin::new(body).poll_frame(cx);
    if let Poll::Ready(Some(Ok(frame))) = &polled {
        count(data_len(frame));
    }
    polled
}

impl<B: Body + Unpin> Body for Metered<B>
where
    B::Data: Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        poll_counting(&mut this.inner, cx, |n| {
            this.record.received.fetch_add(n, Ordering::Relaxed);
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body + Unpin> Body for Observed<B>
where
    B::Data: Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        poll_counting(&mut this.inner, cx, |n| this.sent += n)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Observed<B> {
    fn drop(&mut self) {
        if let Some(f) = self.finish.take() {
            let duration = f.record.start.elapsed();
            let (node, id) = (f.node.as_ref(), f.request_id.as_ref());
            f.record
                .finish(f.status, self.sent, f.first_byte, duration, node, id);
        }
    }
}

#[cfg(test)]
#[path = "observe_tests.rs"]
mod tests;
