//! speedbox-node: a stateless storage server that streams files into MongoDB GridFS and back.
//!
//! Read [`server`] first: it routes each request ([`routes`], names decoded by [`percent`])
//! to an upload ([`upload`], [`multipart`] with [`disposition`], [`tus`] for resumable
//! uploads) or a download ([`download`], [`range`]). [`store`] is the only module that
//! talks to MongoDB; [`maintenance`] creates indexes and sweeps garbage in the background.
#![forbid(unsafe_code)]

pub mod conditional;
pub mod cors;
pub mod digest;
pub mod disposition;
pub mod download;
pub mod error;
pub mod maintenance;
pub mod multipart;
pub mod percent;
pub mod range;
pub mod routes;
pub mod server;
pub mod store;
pub mod tus;
pub mod upload;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

pub use server::AppState;

/// Every response body the node sends.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// In-flight requests get this long to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// A client must send its request headers within this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn empty_body() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Serves `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn run(listener: TcpListener, state: Arc<AppState>, shutdown: impl Future) {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(1024 * 1024);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let service = service_fn(move |req| server::handle(state.clone(), req));
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all requests finished"),
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("drain timeout: cutting remaining requests"),
    }
}
