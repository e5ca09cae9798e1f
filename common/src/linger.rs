//! Lingering close (RFC 9112 §9.6): an answer given before the request body was read must
//! still reach the client.
//!
//! A server that answers early (401, 413, 503) and closes with the client's body still
//! arriving makes the kernel reset the connection, and the client sees a broken pipe
//! instead of the status. hyper reads a request body only while someone polls it, so the
//! server keeps hold of the body ([`hold`]), and when the handler answered without reading
//! it to its end, [`Linger::after`] reads the rest in the background and throws it away
//! (for [`LINGER_TIME`] at most, [`LINGER_IDLE`] without a byte), with `Connection: close`
//! on the answer. A client that sent `Expect: 100-continue` and was never asked for its
//! body is not asked now: hyper sends no 100 and the client sends no body.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{header, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

/// How long an unread body is read on at most after the answer: nginx's `lingering_time`.
pub const LINGER_TIME: Duration = Duration::from_secs(30);
/// ... and how long without a byte: nginx's `lingering_timeout`.
pub const LINGER_IDLE: Duration = Duration::from_secs(5);

/// The request body as the handler sees it: the server keeps a hold on the same body.
pub struct Held<B> {
    shared: Arc<Shared<B>>,
}

struct Shared<B> {
    body: Mutex<B>,
    /// The handler polled the body (so a 100 Continue, if asked for, went out).
    polled: AtomicBool,
    /// The body ended (not every body knows it has: `is_end_stream` may stay false).
    ended: AtomicBool,
}

impl<B> Shared<B> {
    fn body(&self) -> MutexGuard<'_, B> {
        // A handler that panicked mid-poll leaves the body as it was: still usable.
        self.body
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The server's hold on a request body, to call [`Linger::after`] with the answer.
pub struct Linger<B> {
    shared: Arc<Shared<B>>,
    expect_continue: bool,
}

/// Splits `request` into the request the handler gets and the server's hold on its body.
pub fn hold<B>(request: Request<B>) -> (Request<Held<B>>, Linger<B>) {
    let expect_continue = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (parts, body) = request.into_parts();
    let shared = Arc::new(Shared {
        body: Mutex::new(body),
        polled: AtomicBool::new(false),
        ended: AtomicBool::new(false),
    });
    let held = Held {
        shared: Arc::clone(&shared),
    };
    let linger = Linger {
        shared,
        expect_continue,
    };
    (Request::from_parts(parts, held), linger)
}

impl<B> std::fmt::Debug for Held<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").finish_non_exhaustive()
    }
}

impl<B> Body for Held<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.shared.polled.store(true, Ordering::Relaxed);
        let polled = Pin::new(&mut *self.shared.body()).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.shared.ended.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.shared.body().is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.shared.body().size_hint()
    }
}

impl<B> Linger<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
{
    /// Called with the handler's answer once it has returned: if the handler let go of
    /// the body before its end, reads the rest off in the background (see the module
    /// doc) and marks `response` `Connection: close`. A body still held elsewhere (a
    /// task of the handler's that reads on) is left to it.
    pub fn after<R>(self, response: &mut Response<R>) {
        let Ok(shared) = Arc::try_unwrap(self.shared) else {
            return;
        };
        let polled = shared.polled.load(Ordering::Relaxed);
        let ended = shared.ended.load(Ordering::Relaxed);
        let body = shared
            .body
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if ended || body.is_end_stream() || (self.expect_continue && !polled) {
            return;
        }
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        tokio::spawn(drain(body));
    }
}

/// Reads `body` to its end and drops what it reads, for [`LINGER_TIME`] at most and
/// [`LINGER_IDLE`] between frames; then drops the body (hyper closes the connection).
async fn drain<B: Body + Unpin>(mut body: B) {
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    loop {
        let until = deadline.min(tokio::time::Instant::now() + LINGER_IDLE);
        match tokio::time::timeout_at(until, body.frame()).await {
            Ok(Some(Ok(_))) => continue,
            // The end, a broken body, or too long: stop reading.
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};

    type Frames = StreamBody<
        futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::convert::Infallible>>>,
    >;

    fn body(frames: usize) -> Frames {
        let frames: Vec<_> = (0..frames)
            .map(|_| Ok(Frame::data(Bytes::from_static(b"abc"))))
            .collect();
        StreamBody::new(futures::stream::iter(frames))
    }

    fn request(frames: usize, expect: bool) -> Request<Frames> {
        let mut builder = Request::builder().method("PUT").uri("/files/x");
        if expect {
            builder = builder.header("expect", "100-continue");
        }
        builder.body(body(frames)).unwrap()
    }

    /// The `Connection` header `linger` puts on an answer, if any.
    fn connection_after(linger: Linger<Frames>) -> Option<String> {
        let mut response = Response::new(());
        linger.after(&mut response);
        let connection = response.headers().get(header::CONNECTION);
        connection.map(|v| v.to_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn an_answer_before_the_bodys_end_closes_the_connection_after_reading_it() {
        let (req, linger) = hold(request(3, false));
        drop(req); // answered without reading
        assert_eq!(connection_after(linger).as_deref(), Some("close"));
    }

    #[tokio::test]
    async fn a_body_read_to_its_end_changes_nothing() {
        let (req, linger) = hold(request(3, false));
        let read = req.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(read.len(), 9);
        assert_eq!(connection_after(linger), None);
    }

    #[tokio::test]
    async fn a_client_waiting_for_100_continue_is_not_asked_for_its_body() {
        let (req, linger) = hold(request(3, true));
        drop(req);
        assert_eq!(connection_after(linger), None);
        // ... but one whose body the handler began to read is drained like any.
        let (mut req, linger) = hold(request(3, true));
        req.body_mut().frame().await.unwrap().unwrap();
        drop(req);
        assert_eq!(connection_after(linger).as_deref(), Some("close"));
    }

    #[tokio::test]
    async fn a_body_still_read_by_the_handler_is_left_to_it() {
        let (req, linger) = hold(request(3, false));
        assert_eq!(connection_after(linger), None);
        drop(req);
    }
}
