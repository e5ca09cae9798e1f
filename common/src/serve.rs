//! The serving loop of both binaries: accept connections until shutdown, then stop
//! accepting, let in-flight requests finish within a drain deadline, and cut what is left.
//!
//! Each binary says how to serve one connection (its HTTP settings and service); the loop,
//! the accept-error back-off and the drain are the same for the balancer and every node.

use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::server::graceful::{GracefulConnection, GracefulShutdown};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// After a failed `accept` (typically EMFILE: out of file descriptors), wait this long
/// before retrying rather than spinning.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `listener` until `shutdown` resolves: every accepted stream (with `TCP_NODELAY`
/// set) becomes a connection by `connection(stream, peer)`, driven in its own task. Then
/// the listener closes, idle connections close, and requests under way get
/// `drain_timeout()` (read at shutdown, so a reloaded value counts) to finish before their
/// connections are cut.
pub async fn serve<C>(
    listener: TcpListener,
    mut connection: impl FnMut(TcpStream, SocketAddr) -> C,
    shutdown: impl Future,
    drain_timeout: impl FnOnce() -> Duration,
) where
    C: GracefulConnection + Send + 'static,
    C::Error: Display,
{
    let graceful = GracefulShutdown::new();
    // Kept so that connections still open at the drain deadline can be cut.
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "set_nodelay: {e}");
        }
        let conn = graceful.watch(connection(stream, peer));
        connections.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
        while connections.try_join_next().is_some() {}
    }

    drop(listener);
    let deadline = drain_timeout();
    tracing::info!(
        "stopped accepting; draining {} connection(s) for up to {} ms",
        graceful.count(),
        deadline.as_millis()
    );
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(deadline) => {
            while connections.try_join_next().is_some() {}
            tracing::warn!(
                "drain deadline reached; closing {} connection(s)",
                connections.len()
            );
        }
    }
    connections.shutdown().await;
}
