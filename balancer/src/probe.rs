//! Active health checks: `GET /healthz` on every node each `health_interval_ms`, each
//! result fed to the node's rise/fall counter. Only flips are logged (in
//! [`Node::observe_check`](crate::node::Node::observe_check)).
//!
//! The same loop forgets removed nodes once their last transfer is done, so there is one
//! background loop rather than several timers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::Empty;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use speedbox_common::config::BalancerConfig;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::conn;

/// Checks every node, sleeps, repeats; runs until its task is aborted. The first round
/// starts at once, and a reload that adds nodes starts another (`Cluster::probe_now`).
pub async fn run(cluster: Arc<Cluster>) {
    loop {
        let snapshot = cluster.snapshot();
        let cfg = &snapshot.config.balancer;
        let rounds = snapshot.nodes.iter().map(|node| async move {
            let result = check(node.addr, cfg).await;
            node.observe_check(result, cfg.rise, cfg.fall);
        });
        futures::future::join_all(rounds).await;
        cluster.prune_drained();
        let interval = cfg.health_interval();
        drop(snapshot);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = cluster.probe_now.notified() => {}
        }
    }
}

/// One health check within `health_timeout_ms`: the latency, or why it failed.
pub async fn check(addr: std::net::SocketAddr, cfg: &BalancerConfig) -> Result<Duration, String> {
    let started = Instant::now();
    match tokio::time::timeout(cfg.health_timeout(), healthz(addr, cfg.connect_timeout())).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(format!(
            "health check timed out after {} ms",
            cfg.health_timeout_ms
        )),
    }
}

/// A fresh connection each time: it proves the node still accepts connections, which a
/// pooled keep-alive would not.
async fn healthz(addr: std::net::SocketAddr, connect_timeout: Duration) -> Result<(), String> {
    let stream = conn::connect(addr, connect_timeout)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let request = Request::get("/healthz")
        .header(header::HOST, addr.to_string())
        .header(header::CONNECTION, "close")
        .header(header::USER_AGENT, "speedbox-balancer")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    // Ends once the response is dropped: hyper closes a connection whose request is gone.
    tokio::spawn(conn);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("/healthz: {e}"))?;
    match response.status() {
        StatusCode::OK => Ok(()),
        status => Err(format!("/healthz answered {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-shot server answering every connection with `reply`.
    async fn serve(reply: &'static str) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = socket.read(&mut buf).await;
                    if !reply.is_empty() {
                        let _ = socket.write_all(reply.as_bytes()).await;
                    } else {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                });
            }
        });
        addr
    }

    fn cfg() -> BalancerConfig {
        BalancerConfig {
            health_timeout_ms: 300,
            ..BalancerConfig::default()
        }
    }

    #[tokio::test]
    async fn healthy_unhealthy_silent_and_closed_nodes() {
        let ok = serve("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await;
        let latency = check(ok, &cfg()).await;
        assert!(latency.is_ok(), "{latency:?}");

        let sick = serve("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n").await;
        let err = check(sick, &cfg()).await.unwrap_err();
        assert!(err.contains("503"), "{err}");

        let silent = serve("").await;
        let err = check(silent, &cfg()).await.unwrap_err();
        assert!(err.contains("timed out after 300 ms"), "{err}");

        // a port nobody listens on
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let err = check(closed, &cfg()).await.unwrap_err();
        assert!(err.contains("refused"), "{err}");
    }
}
