//! speedbox-node: a stateless storage server that streams files into MongoDB GridFS and back.
//!
//! Read [`server`] first: it parses each request into a route ([`routes`]; names checked by
//! [`name`], decoded by [`percent`]) and sends it to its handler: the file API ([`files`],
//! which calls [`upload`] (or [`put_resume`] for a PUT the balancer may continue), [`multipart`] with [`disposition`], [`download`] with [`range`]
//! and [`conditional`]) or resumable uploads ([`tus`]). Answers are built by [`respond`];
//! every failure is a [`error::NodeError`] mapped to HTTP in one place. [`store`] is the only
//! module that talks to MongoDB; [`maintenance`] creates indexes and sweeps garbage in the
//! background; [`media`] runs video jobs (posters, HLS) and answers `GET /media/{name}`;
//! [`metrics`] answers `GET /metrics`.
#![forbid(unsafe_code)]

mod access;
mod admin;
mod conditional;
mod cors;
mod digest;
mod disposition;
mod download;
mod error;
mod files;
mod maintenance;
mod media;
mod metrics;
mod multipart;
mod name;
mod percent;
mod put_resume;
mod range;
mod respond;
mod routes;
mod server;
mod store;
mod tus;
mod upload;

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use speedbox_common::config::NodeServerConfig;
use tokio::net::TcpListener;

pub use server::AppState;
use speedbox_common::observe::Observer;

/// Every response body the node sends.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A request body as handlers read it: hyper's, held by the server too so that an answer
/// given before its end is followed by a lingering close ([`speedbox_common::linger`]).
pub(crate) type ReqBody =
    speedbox_common::linger::Held<speedbox_common::observe::Metered<hyper::body::Incoming>>;

/// Largest request head (line and headers) read, in bytes: hyper's read buffer grows up to
/// this, which an upload's balancer window counts on (see `IN_TRANSIT_BYTES` in the config).
const MAX_HEAD_BYTES: usize = speedbox_common::config::NODE_READ_BUFFER_BYTES;

/// The receive buffer of the node's connections (Linux doubles it). Linux grows it up to
/// 6 MiB on its own; every byte in it is one an upload's balancer window must hold until
/// the node makes it durable (see `put_resume`), and more buffering does not make a node
/// that writes to its database any faster.
const RECEIVE_BUFFER: u32 = 256 * 1024;

/// Listens on `addr` with the node's socket settings (its connections inherit them).
///
/// Errors: the address cannot be bound (in use, not local, no permission).
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_recv_buffer_size(RECEIVE_BUFFER)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Serves `listener` until `shutdown` resolves, then drains in-flight requests for up to
/// `config.drain_timeout_ms` (see [`speedbox_common::serve`]).
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    config: NodeServerConfig,
    shutdown: impl Future,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout())
        .max_buf_size(MAX_HEAD_BYTES);
    let observer = Observer::new(Arc::clone(&state.metrics.http));
    let connection = move |stream, peer| {
        let (state, observer) = (state.clone(), observer.clone());
        let service =
            service_fn(move |req| server::handle(state.clone(), observer.clone(), peer, req));
        http.serve_connection(TokioIo::new(stream), service)
    };
    speedbox_common::serve::serve(listener, connection, shutdown, || config.drain_timeout()).await;
}
