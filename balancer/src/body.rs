//! The two bodies the balancer streams: a client's upload on its way to a node, and a
//! node's response on its way to the client.
//!
//! Both pass hyper's `Bytes` frames through untouched (no copy, no re-chunking) and cut the
//! transfer when the sending side stalls for `idle_timeout` (see [`crate::idle`]).
//! Backpressure is hyper's: a frame is only pulled when the other side can take it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::sync::oneshot;

use crate::conn::Lease;
use crate::error::BodyError;
use crate::expect::{AnsweredFirst, Gate};
use crate::idle::IdleTimer;
use crate::pool::InFlight;

/// The request body sent to a node.
#[derive(Debug)]
pub enum UpBody {
    /// Nothing to send (most GET/HEAD/DELETE): such a request can be rebuilt and replayed.
    Empty,
    Stream(RequestStream),
}

/// A client's upload, forwarded frame by frame.
#[derive(Debug)]
pub struct RequestStream {
    /// `None` while an `Expect: 100-continue` [`Gate`] still holds the body.
    inner: Option<Incoming>,
    gate: Option<Arc<Gate>>,
    /// The body's length as the client declared it, for hyper to frame the request.
    size: SizeHint,
    idle: IdleTimer,
    /// Fired once the last byte has been handed to the node's connection, which is when
    /// the response-header timer may start (an upload can legitimately take hours).
    done: Option<oneshot::Sender<()>>,
}

impl RequestStream {
    /// Wraps `inner`; the receiver resolves when the body has been fully read (or dropped).
    pub fn new(inner: Incoming, idle: IdleTimer) -> (Self, oneshot::Receiver<()>) {
        let size = inner.size_hint();
        Self::with(Some(inner), None, size, idle)
    }

    /// A body that stays pending until `gate` hands it over; `size` is the client's.
    pub fn gated(
        gate: Arc<Gate>,
        size: SizeHint,
        idle: IdleTimer,
    ) -> (Self, oneshot::Receiver<()>) {
        Self::with(None, Some(gate), size, idle)
    }

    fn with(
        inner: Option<Incoming>,
        gate: Option<Arc<Gate>>,
        size: SizeHint,
        idle: IdleTimer,
    ) -> (Self, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let stream = Self {
            inner,
            gate,
            size,
            idle,
            done: Some(tx),
        };
        (stream, rx)
    }

    /// Ready once the client's body is here to poll: at once, or when the gate (if any)
    /// lets it through.
    fn poll_open(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BodyError>> {
        if self.inner.is_none() {
            let Some(gate) = &self.gate else {
                return Poll::Ready(Err(BodyError::Withdrawn));
            };
            match ready!(gate.poll_take(cx)) {
                Some(body) => self.inner = Some(body),
                None => return Poll::Ready(Err(BodyError::Withdrawn)),
            }
            // the idle clock starts when the node asks, not when the request came
            self.idle.progress();
        }
        Poll::Ready(Ok(()))
    }

    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let stream = match self.get_mut() {
            UpBody::Empty => return Poll::Ready(None),
            UpBody::Stream(stream) => stream,
        };
        if let Err(e) = ready!(stream.poll_open(cx)) {
            return Poll::Ready(Some(Err(e)));
        }
        let Some(inner) = stream.inner.as_mut() else {
            return Poll::Ready(Some(Err(BodyError::Withdrawn)));
        };
        let polled = poll_idle(inner, &mut stream.idle, cx);
        // hyper stops polling once a sized body reports its end, so the last frame may be
        // the last call we get
        if matches!(polled, Poll::Ready(None)) || inner.is_end_stream() {
            stream.finish();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Empty => true,
            UpBody::Stream(stream) => stream.inner.as_ref().is_some_and(Body::is_end_stream),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpBody::Empty => SizeHint::with_exact(0),
            UpBody::Stream(stream) => match &stream.inner {
                Some(inner) => inner.size_hint(),
                None => stream.size,
            },
        }
    }
}

/// The body of every response the balancer sends.
#[derive(Debug)]
pub enum ProxyBody {
    /// Made by the balancer itself (errors, `/_cluster`).
    Full(Full<Bytes>),
    Upstream(ResponseStream),
}

/// A node's response body. Holds the node's in-flight count until the last byte is out
/// (or the client goes away), so least-outstanding and draining see whole transfers.
#[derive(Debug)]
pub struct ResponseStream {
    inner: Incoming,
    idle: IdleTimer,
    _in_flight: InFlight,
    /// Its connection, reusable once this body has been read to the end.
    lease: Option<Lease>,
    ended: bool,
    /// Set when the node answered before asking for the request body: its connection
    /// is not reusable, and ends when this body is dropped.
    answered_first: Option<AnsweredFirst>,
}

impl ResponseStream {
    pub fn new(
        inner: Incoming,
        idle: IdleTimer,
        in_flight: InFlight,
        lease: Lease,
        answered_first: Option<AnsweredFirst>,
    ) -> Self {
        Self {
            inner,
            idle,
            _in_flight: in_flight,
            lease: Some(lease),
            ended: false,
            answered_first,
        }
    }
}

impl Drop for ResponseStream {
    /// Released here rather than at the last frame so hyper's connection task has had
    /// the most time to get ready for the next request (saving a task to wait for it).
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            if self.answered_first.is_none() && (self.ended || self.inner.is_end_stream()) {
                lease.release();
            }
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let stream = match self.get_mut() {
            ProxyBody::Full(full) => {
                return Pin::new(full)
                    .poll_frame(cx)
                    .map_err(|never| match never {})
            }
            ProxyBody::Upstream(stream) => stream,
        };
        let polled = poll_idle(&mut stream.inner, &mut stream.idle, cx);
        if matches!(polled, Poll::Ready(None)) {
            stream.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(full) => full.is_end_stream(),
            ProxyBody::Upstream(stream) => stream.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(full) => full.size_hint(),
            ProxyBody::Upstream(stream) => stream.inner.size_hint(),
        }
    }
}

/// The next frame of `inner`, or an error once it has stalled for the idle timeout.
fn poll_idle(
    inner: &mut Incoming,
    idle: &mut IdleTimer,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
    match Pin::new(inner).poll_frame(cx) {
        Poll::Ready(Some(Ok(frame))) => {
            idle.progress();
            Poll::Ready(Some(Ok(frame)))
        }
        Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
        Poll::Ready(None) => Poll::Ready(None),
        Poll::Pending => match idle.poll_expired(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::Idle(idle.timeout())))),
            Poll::Pending => Poll::Pending,
        },
    }
}
