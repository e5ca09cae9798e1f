//! Bandwidth shaping: a body whose frames wait for their principal's byte bucket
//! ([`crate::limits`]) before they pass, so a transfer over its limit goes on slower and
//! is never failed. Waiting holds one frame; TCP's flow control slows the sender.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use governor::clock::Clock;
use http_body::{Body, Frame, SizeHint};
use speedbox_common::observe::data_len;
use tokio::time::Sleep;

use crate::limits::{Bucket, Principal, Transfer};

/// One principal's share of a byte bucket, for one body.
#[derive(Debug)]
pub struct Shaper {
    bucket: Arc<Bucket>,
    principal: Principal,
    /// Bytes charged at once: at most the bucket's size.
    step: NonZeroU32,
    /// Bytes that had to wait, counted for `/metrics`.
    shaped: Arc<AtomicU64>,
}

impl Shaper {
    pub fn new(
        bucket: Arc<Bucket>,
        principal: Principal,
        step: u32,
        shaped: Arc<AtomicU64>,
    ) -> Shaper {
        Shaper {
            bucket,
            principal,
            step: NonZeroU32::new(step).unwrap_or(NonZeroU32::MIN),
            shaped,
        }
    }
}

/// `B`, shaped when a [`Shaper`] is given; holds a transfer slot until dropped.
pub struct Shaped<B: Body> {
    inner: B,
    shaper: Option<Shaper>,
    /// A frame that waits for the bucket, and its bytes not yet charged.
    held: Option<(Frame<B::Data>, u64)>,
    /// The held frame had to wait.
    waited: bool,
    sleep: Option<Pin<Box<Sleep>>>,
    _transfer: Option<Transfer>,
}

impl<B: Body> std::fmt::Debug for Shaped<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shaped")
            .field("shaper", &self.shaper)
            .finish_non_exhaustive()
    }
}

impl<B: Body> Shaped<B> {
    pub fn new(inner: B, shaper: Option<Shaper>, transfer: Option<Transfer>) -> Shaped<B> {
        Shaped {
            inner,
            shaper,
            held: None,
            waited: false,
            sleep: None,
            _transfer: transfer,
        }
    }
}

impl<B> Body for Shaped<B>
where
    B: Body + Unpin,
    B::Data: Buf + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let Some(shaper) = &this.shaper else {
            return Pin::new(&mut this.inner).poll_frame(cx);
        };
        loop {
            if let Some(sleep) = &mut this.sleep {
                ready!(sleep.as_mut().poll(cx));
                this.sleep = None;
            }
            let Some((_, uncharged)) = &mut this.held else {
                match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        let n = data_len(&frame);
                        this.held = Some((frame, n));
                        continue;
                    }
                    other => return Poll::Ready(other),
                }
            };
            while *uncharged > 0 {
                let step = shaper
                    .step
                    .get()
                    .min(u32::try_from(*uncharged).unwrap_or(u32::MAX));
                let n = NonZeroU32::new(step).unwrap_or(NonZeroU32::MIN);
                match shaper.bucket.check_key_n(&shaper.principal, n) {
                    Ok(Ok(())) => *uncharged -= u64::from(step),
                    Ok(Err(not_until)) => {
                        let wait = not_until.wait_time_from(shaper.bucket.clock().now());
                        this.waited = true;
                        this.sleep = Some(Box::pin(tokio::time::sleep(wait)));
                        break;
                    }
                    // A step never exceeds the bucket (see `Shaper::step`); charge nothing.
                    Err(_) => *uncharged = 0,
                }
            }
            if this.sleep.is_some() {
                continue;
            }
            if let Some((frame, _)) = this.held.take() {
                if std::mem::take(&mut this.waited) {
                    shaper.shaped.fetch_add(data_len(&frame), Ordering::Relaxed);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        if let Some((frame, _)) = &self.held {
            let held = data_len(frame);
            hint.set_lower(hint.lower() + held);
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + held);
            }
        }
        hint
    }
}
