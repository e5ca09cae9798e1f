//! Connections to nodes: an idle keep-alive one from the node's list
//! ([`crate::keepalive`]) or a new one, built directly on `hyper::client::conn::http1` so
//! that a request that never left can be handed back.
//!
//! hyper-util's pooled client would be shorter, but it consumes the request; here a
//! connect failure happens before the body is touched, and `try_send_request` returns an
//! unsent request from a dead keep-alive connection, so [`send`] can report it back for
//! another node with a streaming upload still intact.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use speedbox_common::config::BalancerConfig;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;

use crate::error::{caused_by_dead_peer, ConnectError};
use crate::idle::IdleIo;
use crate::keepalive::Sender;
use crate::node::{Node, NodeState};
use crate::up_body::UpBody;

/// hyper's read buffer grows up to this and its write queue holds about as much: large
/// frames mean fewer syscalls per GiB, and the figure bounds memory per transfer. Measured
/// on 5 concurrent 1 GiB downloads: 1 MiB gives ~0.36 CPU-s/GiB and 22-25 MiB peak RSS,
/// 256 KiB gives 0.52 CPU-s/GiB and 11 MiB.
pub const MAX_BUF_SIZE: usize = 1024 * 1024;
/// A keep-alive connection idle longer than this is not reused: nodes close idle
/// connections after their header timeout, and a request sent into that race is lost.
const MAX_IDLE_AGE: Duration = Duration::from_secs(4);
/// Uploads cannot be replayed once sent, so they only take a connection that was busy a
/// moment ago, otherwise a fresh one (a loopback connect is cheap next to an upload).
const MAX_IDLE_AGE_FOR_UPLOADS: Duration = Duration::from_millis(500);

/// Why [`send`] got no response.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be opened: the request comes back untouched.
    Connect {
        request: Box<Request<UpBody>>,
        error: ConnectError,
    },
    /// A fresh connection closed before the request was written: it comes back untouched.
    Unsent {
        request: Box<Request<UpBody>>,
        error: hyper::Error,
    },
    /// The node received (part of) the request, then failed before its response head.
    Sent(hyper::Error),
    /// No response head within `response_timeout` after the request was fully sent.
    Timeout(Duration),
    /// The node stopped taking a protected upload's bytes for this long (see
    /// [`crate::protect::STALL`]); the attempt was dropped, closing its connection.
    Stalled(Duration),
}

impl SendError {
    /// The node is gone (refused, reset or unanswered connect, or a reset mid-request).
    pub fn dead_peer(&self) -> bool {
        match self {
            SendError::Connect { error, .. } => error.marks_down(),
            SendError::Unsent { error, .. } | SendError::Sent(error) => caused_by_dead_peer(error),
            SendError::Timeout(_) | SendError::Stalled(_) => false,
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect { error, .. } => write!(f, "{error}"),
            SendError::Unsent { error, .. } | SendError::Sent(error) => write!(f, "{error}"),
            SendError::Timeout(t) => write!(f, "no response headers within {t:?}"),
            SendError::Stalled(t) => write!(f, "took none of the upload for {t:?}"),
        }
    }
}

/// Sends `request` to `node` over a pooled or a new connection and waits for the response
/// head, which comes with the connection's [`Lease`]. `body_done` resolves when the request body has been fully sent; the response
/// timer starts then (it is `None` for requests without a body).
pub async fn send(
    node: &Node,
    mut request: Request<UpBody>,
    body_done: &mut Option<oneshot::Receiver<()>>,
    cfg: &BalancerConfig,
) -> Result<(Response<Incoming>, Lease), SendError> {
    let max_age = if body_done.is_some() {
        MAX_IDLE_AGE_FOR_UPLOADS
    } else {
        MAX_IDLE_AGE
    };
    while let Some(sender) = node.state.idle.take(max_age) {
        match attempt(sender, request, body_done, cfg, &node.state).await {
            Attempt::Done(result) => return result,
            // The node closed this keep-alive connection: not the node's fault, try another.
            Attempt::Unsent(back, _) => request = back,
        }
    }
    let sender = match open(node.addr, cfg).await {
        Ok(sender) => sender,
        Err(error) => {
            return Err(SendError::Connect {
                request: Box::new(request),
                error,
            })
        }
    };
    match attempt(sender, request, body_done, cfg, &node.state).await {
        Attempt::Done(result) => result,
        Attempt::Unsent(request, error) => Err(SendError::Unsent {
            request: Box::new(request),
            error,
        }),
    }
}

enum Attempt {
    Done(Result<(Response<Incoming>, Lease), SendError>),
    Unsent(Request<UpBody>, hyper::Error),
}

async fn attempt(
    mut sender: Sender,
    request: Request<UpBody>,
    body_done: &mut Option<oneshot::Receiver<()>>,
    cfg: &BalancerConfig,
    state: &Arc<NodeState>,
) -> Attempt {
    let response = sender.try_send_request(request);
    let result = match after_body(response, body_done, cfg.response_timeout()).await {
        // Dropping the response future closed the connection, as a late answer must not
        // reach the next request.
        None => return Attempt::Done(Err(SendError::Timeout(cfg.response_timeout()))),
        Some(result) => result,
    };
    match result {
        Ok(response) => {
            let lease = Lease {
                sender,
                state: Arc::clone(state),
            };
            Attempt::Done(Ok((response, lease)))
        }
        Err(mut e) => match e.take_message() {
            Some(request) => Attempt::Unsent(request, e.into_error()),
            None => Attempt::Done(Err(SendError::Sent(e.into_error()))),
        },
    }
}

/// Runs `fut` with `timeout` counted from when the request body is done, so a slow upload
/// is governed by the idle timer alone.
async fn after_body<F: Future>(
    fut: F,
    body_done: &mut Option<oneshot::Receiver<()>>,
    timeout: Duration,
) -> Option<F::Output> {
    let mut fut = pin!(fut);
    if let Some(done) = body_done.as_mut() {
        tokio::select! {
            biased;
            out = &mut fut => return Some(out),
            // Err: the body was dropped (client gone); the send fails promptly either way.
            _ = done => {}
        }
        *body_done = None;
    }
    tokio::time::timeout(timeout, fut).await.ok()
}

/// A connection lent to one response: handed back with [`Lease::release`] once the
/// response body has ended. A body dropped half-way drops its lease, and hyper closes the
/// connection, since its remaining bytes would corrupt the next response.
#[derive(Debug)]
pub struct Lease {
    sender: Sender,
    state: Arc<NodeState>,
}

impl Lease {
    pub fn release(mut self) {
        if self.sender.is_ready() {
            self.state.idle.put(self.sender);
            return;
        }
        // hyper's connection task has not yet seen the end of the body; wait for it
        // off the request path. (No runtime means the process is shutting down.)
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if self.sender.ready().await.is_ok() {
                    self.state.idle.put(self.sender);
                }
            });
        }
    }
}

/// Opens an HTTP/1 connection to a node, driven by its own task.
async fn open(addr: SocketAddr, cfg: &BalancerConfig) -> Result<Sender, ConnectError> {
    let stream = connect(addr, cfg.connect_timeout()).await?;
    let io = TokioIo::new(IdleIo::new(stream, cfg.idle_timeout()));
    let (sender, conn) = http1::Builder::new()
        .max_buf_size(MAX_BUF_SIZE)
        .writev(true)
        .handshake(io)
        .await
        .map_err(ConnectError::Handshake)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, "node connection ended: {e}");
        }
    });
    Ok(sender)
}

/// The send buffer of connections to nodes (Linux doubles it). Linux grows it up to 4 MiB
/// on its own, and every byte in it is one the node has not yet made durable, which an
/// upload's window must hold (see [`crate::protect`]); loopback and LAN round trips are
/// short enough that this much keeps a node's upload at full speed.
const UPSTREAM_SEND_BUFFER: u32 = 256 * 1024;

/// A TCP connection with Nagle off (request heads and small bodies go out at once).
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_send_buffer_size(UPSTREAM_SEND_BUFFER)?;
    socket.set_nodelay(true)?;
    let stream = tokio::time::timeout(timeout, socket.connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(timeout))??;
    Ok(stream)
}
