//! One attempt to send a protected upload's body to a node ([`crate::protect`]): the
//! window's bytes to send again, then the client's, read through the [`Source`] that all
//! attempts share. A new attempt supersedes the old ones, so a dead connection that hyper
//! polls once more can never take a frame meant for its successor.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;

use crate::error::BodyError;
use crate::sent::BodySent;
use crate::window::Window;

/// The client's body as the attempts read it (an [`crate::up_body::UpBody`]; boxed so
/// that this module needs nothing of the one that sends it).
pub(crate) type ClientBody = Pin<Box<dyn Body<Data = Bytes, Error = BodyError> + Send>>;

/// The client's body, shared by the attempts to send it.
pub(crate) struct Source {
    pub(crate) client: ClientBody,
    pub(crate) window: Window,
    /// The attempt allowed to read on.
    pub(crate) epoch: u64,
    /// The client's body has ended (its last frame is in the window).
    pub(crate) ended: bool,
    /// The client's body failed (it went away, or stalled): nothing to continue.
    pub(crate) failed: bool,
    /// The body's length as the client declared it.
    pub(crate) total: Option<u64>,
    /// When the current attempt last handed its node's connection a frame that the
    /// connection has not asked past yet (`None` while it waits on the client): a node
    /// that stops reading leaves this ageing (see [`crate::protect::Protection::stalled`]).
    pub(crate) handed_at: Option<Instant>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("window", &self.window)
            .field("epoch", &self.epoch)
            .field("ended", &self.ended)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock(source: &Mutex<Source>) -> MutexGuard<'_, Source> {
    // Every update leaves a whole state behind: a panic cannot half-write one.
    source.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A continuation's body waits for the node's `100 Continue`: until the node holds the
/// upload's lease, no byte may leave (an early refusal would waste the client's bytes).
#[derive(Debug, Default)]
pub(crate) struct Opened(Mutex<(bool, Option<Waker>)>);

impl Opened {
    pub(crate) fn open(&self) {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 = true;
        if let Some(waker) = state.1.take() {
            waker.wake();
        }
    }

    fn poll_open(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if state.0 {
            return Poll::Ready(());
        }
        state.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// One attempt's body: the window's bytes to send again, then the client's.
#[derive(Debug)]
pub struct Attempt {
    source: Arc<Mutex<Source>>,
    epoch: u64,
    replay: VecDeque<Bytes>,
    opened: Option<Arc<Opened>>,
    done: BodySent,
    /// `None`: the client's own size hint (the first attempt).
    size: Option<Option<u64>>,
}

impl Attempt {
    pub(crate) fn new(
        source: &Arc<Mutex<Source>>,
        epoch: u64,
        replay: VecDeque<Bytes>,
        opened: Option<Arc<Opened>>,
        size: Option<u64>,
    ) -> (Self, oneshot::Receiver<()>) {
        let (done, rx) = BodySent::new();
        let first = opened.is_none();
        let attempt = Self {
            source: Arc::clone(source),
            epoch,
            replay,
            opened,
            done,
            size: (!first).then_some(size),
        };
        (attempt, rx)
    }
}

impl Body for Attempt {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(opened) = &this.opened {
            std::task::ready!(opened.poll_open(cx));
        }
        let mut source = lock(&this.source);
        if source.epoch != this.epoch {
            return Poll::Ready(Some(Err(BodyError::Superseded)));
        }
        // Polled again: the node's connection took what it was handed.
        source.handed_at = None;
        if let Some(frame) = this.replay.pop_front() {
            source.handed_at = Some(Instant::now());
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        if source.ended {
            drop(source);
            this.done.fire();
            return Poll::Ready(None);
        }
        let polled = source.client.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    source.window.push(data.clone());
                }
                source.handed_at = Some(Instant::now());
            }
            Poll::Ready(Some(Err(_))) => source.failed = true,
            Poll::Ready(None) => source.ended = true,
            Poll::Pending => {}
        }
        // hyper stops polling once a sized body reports its end
        source.ended |= source.client.is_end_stream();
        let ended = source.ended;
        if ended {
            // the node now owes an answer, not a read: response_timeout's to judge
            source.handed_at = None;
        }
        drop(source);
        if ended {
            this.done.fire();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.replay.is_empty() && lock(&self.source).ended
    }

    fn size_hint(&self) -> SizeHint {
        match self.size {
            Some(Some(exact)) => SizeHint::with_exact(exact),
            Some(None) => SizeHint::default(),
            None => lock(&self.source).client.size_hint(),
        }
    }
}
