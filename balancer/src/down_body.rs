//! The body sent down to a client: a node's response streamed back, or an answer the
//! balancer made itself (the request side is [`crate::up_body`]).
//!
//! A node's frames pass through untouched, pulled only when the client's connection can
//! take them, and the transfer is cut when the node stalls for `idle_timeout` (see
//! [`crate::idle`]). Until it ends, the body holds the node's in-flight count and its
//! connection's [`Lease`].

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::conn::Lease;
use crate::error::BodyError;
use crate::expect::AnsweredFirst;
use crate::idle::{poll_idle, IdleTimer};
use crate::node::InFlight;

/// The body of every response the balancer sends.
#[derive(Debug)]
pub enum DownBody {
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

impl Body for DownBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let stream = match self.get_mut() {
            DownBody::Full(full) => {
                return Pin::new(full)
                    .poll_frame(cx)
                    .map_err(|never| match never {})
            }
            DownBody::Upstream(stream) => stream,
        };
        let polled = poll_idle(&mut stream.inner, &mut stream.idle, cx);
        if matches!(polled, Poll::Ready(None)) {
            stream.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match self {
            DownBody::Full(full) => full.is_end_stream(),
            DownBody::Upstream(stream) => stream.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            DownBody::Full(full) => full.size_hint(),
            DownBody::Upstream(stream) => stream.inner.size_hint(),
        }
    }
}
/// Lets [`crate::error`] build its answers without knowing this type.
impl From<Full<Bytes>> for DownBody {
    fn from(full: Full<Bytes>) -> Self {
        DownBody::Full(full)
    }
}
