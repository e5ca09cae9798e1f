//! The body sent up to a node: a client's upload, forwarded frame by frame (the response
//! side is [`crate::down_body`]).
//!
//! Frames are hyper's `Bytes`, passed through untouched (no copy, no re-chunking), and the
//! transfer is cut when the client stalls for `idle_timeout` (see [`crate::idle`]).
//! Backpressure is hyper's: a frame is only pulled when the node's connection can take it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;

use crate::attempt::Attempt;
use crate::error::BodyError;
use crate::expect::Gate;
use crate::idle::{poll_idle, IdleTimer};
use crate::sent::BodySent;
use crate::ClientBody;

/// The request body sent to a node.
#[derive(Debug)]
pub enum UpBody {
    /// Nothing to send (most GET/HEAD/DELETE): such a request can be rebuilt and replayed.
    Empty,
    Stream(RequestStream),
    /// A `Stream` behind a window, sent again elsewhere if its node dies (see
    /// [`crate::protect`]).
    Protected(Attempt),
}

/// A body-less request to send (again): a replay, a hedge, or a download's continuation.
pub fn empty_request(method: &Method, uri: &Uri, headers: &HeaderMap) -> Request<UpBody> {
    let mut request = Request::new(UpBody::Empty);
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri.clone();
    *request.headers_mut() = headers.clone();
    request
}

/// A client's upload, forwarded frame by frame.
#[derive(Debug)]
pub struct RequestStream {
    /// `None` while an `Expect: 100-continue` [`Gate`] still holds the body.
    inner: Option<ClientBody>,
    gate: Option<Arc<Gate>>,
    /// The body's length as the client declared it, for hyper to frame the request.
    size: SizeHint,
    idle: IdleTimer,
    /// Fired once the last byte has been handed to the node's connection, which is when
    /// the response-header timer may start (an upload can legitimately take hours).
    done: BodySent,
}

impl RequestStream {
    /// Wraps `inner`; the receiver resolves when the body has been fully read (or dropped).
    pub fn new(inner: ClientBody, idle: IdleTimer) -> (Self, oneshot::Receiver<()>) {
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
        inner: Option<ClientBody>,
        gate: Option<Arc<Gate>>,
        size: SizeHint,
        idle: IdleTimer,
    ) -> (Self, oneshot::Receiver<()>) {
        let (done, rx) = BodySent::new();
        let stream = Self {
            inner,
            gate,
            size,
            idle,
            done,
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
            UpBody::Protected(attempt) => return Pin::new(attempt).poll_frame(cx),
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
            stream.done.fire();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Empty => true,
            UpBody::Stream(stream) => stream.inner.as_ref().is_some_and(Body::is_end_stream),
            UpBody::Protected(attempt) => attempt.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpBody::Empty => SizeHint::with_exact(0),
            UpBody::Stream(stream) => match &stream.inner {
                Some(inner) => inner.size_hint(),
                None => stream.size,
            },
            UpBody::Protected(attempt) => attempt.size_hint(),
        }
    }
}
