//! The body sent down to a client: a node's response streamed back, or an answer the
//! balancer made itself (the request side is [`crate::up_body`]).
//!
//! A node's frames pass through untouched, pulled only when the client's connection can
//! take them, and the transfer is cut when the node stalls for `idle_timeout` (see
//! [`crate::idle`]). Until it ends, the body holds the node's in-flight count and its
//! connection's [`Lease`].
//!
//! A download that [`crate::resume`] can continue is not cut when its node breaks off
//! (reset, early end, idle timeout): the rest comes from another node and the client sees
//! one unbroken body. A node that merely stalls for `first_byte_timeout` gets a
//! continuation racing it; whichever sends first goes on.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::conn::Lease;
use crate::error::BodyError;
use crate::expect::AnsweredFirst;
use crate::idle::{poll_idle, IdleTimer};
use crate::node::InFlight;
use crate::resume::{self, Resume};

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
    in_flight: InFlight,
    /// Its connection, reusable once this body has been read to the end.
    lease: Option<Lease>,
    ended: bool,
    /// Set when the node answered before asking for the request body: its connection
    /// is not reusable, and ends when this body is dropped.
    answered_first: Option<AnsweredFirst>,
    /// A download that another node can finish (see [`crate::resume`]).
    resume: Option<Box<Resuming>>,
}

/// A continuable download's progress.
struct Resuming {
    resume: Resume,
    /// Body bytes handed to the client so far.
    sent: u64,
    /// `first_byte_timeout` between frames: a node that sends nothing for that long gets
    /// a continuation racing it (`None`: hedging off).
    stall: Option<IdleTimer>,
    /// Hedged once in this stall already (a failed hedge is not retried until progress).
    hedged: bool,
    eject_after: u32,
    /// The current node broke off: only `pending` can go on.
    broken: bool,
    pending: Option<resume::Pending>,
}

impl std::fmt::Debug for Resuming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resuming")
            .field("resume", &self.resume)
            .field("sent", &self.sent)
            .field("broken", &self.broken)
            .field("pending", &self.pending.is_some())
            .finish()
    }
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
            in_flight,
            lease: Some(lease),
            ended: false,
            answered_first,
            resume: None,
        }
    }

    /// Lets another node finish this body if its node breaks off or stalls for
    /// `first_byte_timeout`.
    pub fn resumable(
        mut self,
        resume: Resume,
        first_byte_timeout: Option<Duration>,
        eject_after: u32,
    ) -> Self {
        self.resume = Some(Box::new(Resuming {
            resume,
            sent: 0,
            stall: first_byte_timeout.map(IdleTimer::new),
            hedged: false,
            eject_after,
            broken: false,
            pending: None,
        }));
        self
    }

    /// The next frame of a continuable download: from the current node, or, once it has
    /// broken off (or stalled and lost the race), from the node that continues it.
    fn poll_resumable(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some(r) = self.resume.as_deref_mut() else {
            let polled = poll_idle(&mut self.inner, &mut self.idle, cx);
            if matches!(polled, Poll::Ready(None)) {
                self.ended = true;
            }
            return polled;
        };
        loop {
            if let Some(pending) = r.pending.as_mut() {
                match pending.as_mut().poll(cx) {
                    Poll::Ready(Ok(next)) => {
                        r.pending = None;
                        r.broken = false;
                        r.hedged = false;
                        self.inner = next.body;
                        self.in_flight = next.in_flight;
                        // the old connection (if any) closes: its response is unfinished
                        self.lease = Some(next.lease);
                        r.resume.node = next.node;
                        self.idle.progress();
                        if let Some(stall) = r.stall.as_mut() {
                            stall.progress();
                        }
                        continue;
                    }
                    Poll::Ready(Err(e)) => {
                        r.pending = None;
                        if r.broken {
                            r.resume.give_up(r.sent, &e);
                            return Poll::Ready(Some(Err(e)));
                        }
                        // a hedge that found no taker: the current node may yet go on
                    }
                    Poll::Pending if r.broken => return Poll::Pending,
                    Poll::Pending => {}
                }
            }
            let error = match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    self.idle.progress();
                    if let Some(stall) = r.stall.as_mut() {
                        stall.progress();
                    }
                    // Progress: a hedge still racing this node lost (drop it), and the
                    // next stall may hedge again, also after a hedge that found no taker.
                    r.pending = None;
                    r.hedged = false;
                    if let Some(data) = frame.data_ref() {
                        r.sent += data.len() as u64;
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Err(e))) => BodyError::from(e),
                Poll::Ready(None) if r.sent >= r.resume.plan().len() => {
                    self.ended = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(None) => {
                    BodyError::NotContinued("the node ended the body early".into())
                }
                Poll::Pending => {
                    if self.idle.poll_expired(cx).is_ready() {
                        BodyError::Idle(self.idle.timeout())
                    } else {
                        let stalled = r
                            .stall
                            .as_mut()
                            .is_some_and(|s| s.poll_expired(cx).is_ready());
                        if stalled && !r.hedged && r.pending.is_none() {
                            r.hedged = true;
                            r.resume.node.late(r.eject_after);
                            r.pending = r.resume.start(r.sent);
                            if r.pending.is_some() {
                                continue;
                            }
                        }
                        return Poll::Pending;
                    }
                }
            };
            r.resume.broke_off(&error);
            r.broken = true;
            self.lease = None;
            if r.pending.is_none() {
                r.pending = r.resume.start(r.sent);
                if r.pending.is_none() {
                    r.resume.give_up(r.sent, &error);
                    return Poll::Ready(Some(Err(error)));
                }
            }
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
        match self.get_mut() {
            DownBody::Full(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            DownBody::Upstream(stream) => stream.poll_resumable(cx),
        }
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
