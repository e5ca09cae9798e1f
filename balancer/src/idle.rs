//! Idle cut-offs: a transfer that moves no byte for `idle_timeout` is cut, however long it
//! has been running in total.
//!
//! A stall is measured from the moment a poll starts waiting, not from the last byte, so a
//! body that the other side simply did not poll for a while (backpressure) is never blamed.
//! The timer is armed lazily and only re-armed when a new stall begins; extending a tokio
//! deadline is a cheap atomic store, so fast transfers pay about one `Instant::now()` per stall.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::error::BodyError;

/// Detects one side waiting for longer than `timeout`.
#[derive(Debug)]
pub struct IdleTimer {
    timeout: Duration,
    waiting_since: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl IdleTimer {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            waiting_since: None,
            sleep: None,
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Something moved: the next wait starts a new stall.
    pub fn progress(&mut self) {
        self.waiting_since = None;
    }

    /// Call when the watched operation returned `Pending`. `Ready` means the stall has
    /// lasted `timeout`; otherwise the task is woken when it would.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        let deadline = since + self.timeout;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx)
    }
}

/// The next frame of a body (either side's), or an error once it has stalled for the idle
/// timeout.
pub fn poll_idle<B>(
    inner: &mut B,
    idle: &mut IdleTimer,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BodyError>>>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
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

/// A socket whose writes fail with `TimedOut` when the peer stops reading for `timeout`:
/// a client that never reads its download, or a node that never reads an upload, would
/// otherwise hold the connection (and its buffers) forever.
#[derive(Debug)]
pub struct IdleIo<T> {
    inner: T,
    writes: IdleTimer,
}

impl<T> IdleIo<T> {
    pub fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            writes: IdleTimer::new(timeout),
        }
    }

    fn poll_write_op<R>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>>
    where
        T: Unpin,
    {
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Ready(result) => {
                self.writes.progress();
                Poll::Ready(result)
            }
            Poll::Pending => match self.writes.poll_expired(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("peer read nothing for {:?}", self.writes.timeout()),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_op(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_op(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_write_op(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn stalled_writer_times_out() {
        // a duplex whose reader never reads: the 16-byte buffer fills, then writes stall
        let (a, _b) = tokio::io::duplex(16);
        let mut io = IdleIo::new(a, Duration::from_secs(5));
        let started = Instant::now();
        let err = io.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_but_moving_reader_is_not_cut() {
        use tokio::io::AsyncReadExt;
        let (a, mut b) = tokio::io::duplex(16);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let mut total = 0;
            while total < 160 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                total += b.read(&mut buf).await.unwrap();
            }
            total
        });
        let mut io = IdleIo::new(a, Duration::from_secs(5));
        // 40 s in total, but never 5 s without progress
        io.write_all(&[7u8; 160]).await.unwrap();
        assert_eq!(reader.await.unwrap(), 160);
    }

    #[tokio::test(start_paused = true)]
    async fn an_old_idle_period_does_not_count_against_a_new_stall() {
        let (a, _b) = tokio::io::duplex(16);
        let mut io = IdleIo::new(a, Duration::from_secs(5));
        io.write_all(&[0u8; 8]).await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        let started = Instant::now();
        let err = io.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
