//! A plain `PUT /files/...` that survives the death of the node writing it.
//!
//! The request goes out tagged with `Speedbox-Upload: <id>` and `Speedbox-Upload-Offset:
//! 0`, which makes the node store it as a resumable upload whose durable offset it moves
//! every couple of MiB (speedbox-node's `put_resume`). The body's frames pass through a
//! [`Window`] that keeps the last `upload_window_bytes` forwarded. When the node dies
//! mid-request, [`Protection::continue_upload`] sends the same PUT to another node, with
//! `Expect: 100-continue` and the body from the window's first byte: the node takes the
//! upload's lease over from the dead node (`Speedbox-Upload-Takeover`), answers 100,
//! skips what it already has, and the client's remaining bytes follow. The client
//! sees one PUT and one answer. Each attempt's body is a [`crate::attempt::Attempt`].

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use hyper::body::Incoming;
use speedbox_common::config::{BalancerConfig, ClusterConfig};
use speedbox_common::headers::{SPEEDBOX_UPLOAD, SPEEDBOX_UPLOAD_OFFSET, SPEEDBOX_UPLOAD_TAKEOVER};
use tokio::sync::oneshot;

use crate::attempt::{lock, Attempt, Opened, Source};
use crate::cluster::{Cluster, Snapshot};
use crate::conn::{self, Lease, SendError};
use crate::error::ProxyError;
use crate::expect::Gate;
use crate::node::InFlight;
use crate::node::Node;
use crate::up_body::{empty_request, UpBody};
use crate::window::{Reservation, Window};

/// How long a continuation may take to find a node that takes the upload.
const CONTINUE_WITHIN: Duration = Duration::from_secs(10);
/// Between two asks while the upload is locked, or no node is up.
const ASK_AGAIN: Duration = Duration::from_millis(200);
/// A node that takes none of an upload's bytes for this long while the balancer has some
/// for it is taken for hung (SIGSTOPped, or its process wedged), and the upload goes on on
/// another node, which takes the lease over. A node waiting on its database pauses for
/// milliseconds (a journaled batch); a second is far beyond that, and still no stall a
/// client notices. A false alarm costs a continuation, never data.
pub const STALL: Duration = Duration::from_secs(2);

/// Whether `request` is an upload the balancer protects: a `PUT` of a file with a body.
pub fn applies(method: &Method, uri: &Uri, body: &UpBody) -> bool {
    method == Method::PUT && uri.path().starts_with("/files/") && matches!(body, UpBody::Stream(_))
}

/// One protected upload: its id, the client's body behind its window, the request to
/// send again, and its share of the window budget.
pub struct Protection {
    id: String,
    source: Arc<Mutex<Source>>,
    gate: Option<Arc<Gate>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    _reservation: Reservation,
}

impl Protection {
    /// Protects `body` if the window budget has room: tags `headers` and returns the
    /// protection with the first attempt's body and the receiver that fires once that
    /// body is sent. `Err(body)` gives the body back unprotected (logged, counted).
    pub fn start(
        cluster: &Cluster,
        config: &ClusterConfig,
        parts: &mut http::request::Parts,
        body: UpBody,
        gate: Option<Arc<Gate>>,
    ) -> Result<(Self, UpBody, oneshot::Receiver<()>), UpBody> {
        let (window, budget) = (
            config.upload_window_bytes(),
            config.balancer.upload_window_budget_bytes,
        );
        if window == 0 {
            return Err(body);
        }
        let Some(reservation) = cluster.uploads.reserve(window, budget) else {
            tracing::warn!(
                path = parts.uri.path(),
                budget,
                "upload unprotected: the window budget is spent"
            );
            return Err(body);
        };
        let id = format!("{:032x}", fastrand::u128(..));
        let total = body.size_hint().exact();
        parts.headers.insert(SPEEDBOX_UPLOAD, header_value(&id));
        parts
            .headers
            .insert(SPEEDBOX_UPLOAD_OFFSET, HeaderValue::from(0u64));
        let source = Arc::new(Mutex::new(Source {
            client: Box::pin(body),
            window: Window::new(window),
            epoch: 0,
            ended: false,
            failed: false,
            total,
            handed_at: None,
        }));
        let (first, done) = Attempt::new(&source, 0, VecDeque::new(), None, None);
        let protection = Self {
            id,
            source,
            gate,
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            _reservation: reservation,
        };
        Ok((protection, UpBody::Protected(first), done))
    }

    /// After the node writing the upload died (`failed` holds the nodes tried): sends the
    /// PUT to another node from the window's first byte until one takes it; its response
    /// (the 201, or the PUT's own refusal) with the node's index.
    pub async fn continue_upload(
        &self,
        cluster: &Cluster,
        snapshot: &Snapshot,
        failed: &mut Vec<usize>,
        cfg: &BalancerConfig,
        why: &str,
    ) -> Result<(Response<Incoming>, InFlight, Lease, usize), ProxyError> {
        if lock(&self.source).failed {
            // The client's body broke off: nothing to continue, and no node to blame.
            return Err(ProxyError::Upstream {
                node: "-".into(),
                reason: format!("the client's upload broke off: {why}"),
            });
        }
        let deadline = tokio::time::Instant::now() + CONTINUE_WITHIN;
        let mut last = why.to_string();
        while tokio::time::Instant::now() < deadline {
            let accept =
                |i: usize, node: &crate::node::Node| node.state.is_up() && !failed.contains(&i);
            let Some(i) = snapshot.pick(cluster.next_cursor(), accept) else {
                // Every node was tried: the dead one is down now; ask the others again.
                failed.retain(|&i| !snapshot.nodes[i].state.is_up());
                tokio::time::sleep(ASK_AGAIN).await;
                continue;
            };
            let node = &snapshot.nodes[i];
            let (request, done, start, end) = self.next_attempt();
            tracing::info!(upload = %self.id, node = %node.id, from = start, forwarded = end,
                "continuing an upload on another node: {last}");
            let in_flight = node.state.begin();
            match self.send(node, request, &mut Some(done), cfg).await {
                Ok((response, _)) if response.status() == StatusCode::LOCKED => {
                    // Another continuation holds the lease (a node's own 423).
                    last = format!("{} found the upload locked", node.id);
                    tokio::time::sleep(ASK_AGAIN).await;
                }
                Ok((response, _)) if response.status().is_server_error() => {
                    // e.g. a chunk the dead node still had in flight landed where this
                    // attempt wrote: the next attempt's lease clears it first.
                    last = format!("{} answered {}", node.id, response.status());
                    tokio::time::sleep(ASK_AGAIN).await;
                }
                Ok((response, _)) if response.status() == StatusCode::CONFLICT => {
                    cluster.uploads.cut.fetch_add(1, Ordering::Relaxed);
                    return Err(ProxyError::Upstream {
                        node: node.id.clone(),
                        reason: format!(
                            "the upload could not be continued: {} has less than the window's first byte {start} (raise upload_window_bytes)",
                            node.id
                        ),
                    });
                }
                Ok((response, lease)) => {
                    cluster.uploads.continued.fetch_add(1, Ordering::Relaxed);
                    return Ok((response, in_flight, lease, i));
                }
                Err(e) => {
                    if e.dead_peer() {
                        node.force_down(e.to_string());
                    }
                    last = format!("{}: {e}", node.id);
                    failed.push(i);
                }
            }
        }
        cluster.uploads.cut.fetch_add(1, Ordering::Relaxed);
        Err(ProxyError::Upstream {
            node: "-".into(),
            reason: format!("the upload could not be continued: {last}"),
        })
    }

    /// [`conn::send`] of an attempt of this upload, given up as [`SendError::Stalled`] once
    /// its node has taken none of the bytes it was handed for [`STALL`] (a hung node would
    /// otherwise hold the upload until `idle_timeout`).
    pub async fn send(
        &self,
        node: &Node,
        request: Request<UpBody>,
        body_done: &mut Option<oneshot::Receiver<()>>,
        cfg: &BalancerConfig,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        tokio::select! {
            sent = conn::send(node, request, body_done, cfg) => sent,
            () = self.stalled() => Err(SendError::Stalled(STALL)),
        }
    }

    /// Resolves once the current attempt's node has taken none of the bytes it was handed
    /// for [`STALL`]; never while the balancer waits on the client.
    async fn stalled(&self) {
        loop {
            tokio::time::sleep(STALL / 4).await;
            let handed = lock(&self.source).handed_at;
            if handed.is_some_and(|at| at.elapsed() >= STALL) {
                return;
            }
        }
    }

    /// The request for the next attempt, which supersedes every earlier one: the PUT with
    /// the window's bytes then the client's; with the window's offsets.
    fn next_attempt(&self) -> (Request<UpBody>, oneshot::Receiver<()>, u64, u64) {
        let opened = Arc::new(Opened::default());
        let mut source = lock(&self.source);
        source.epoch += 1;
        // The stall clock is the new attempt's: the old node's stopped one is not.
        source.handed_at = None;
        let (start, end) = (source.window.start(), source.window.end());
        let replay = source.window.replay();
        let total = source.total.map(|t| t - start);
        let epoch = source.epoch;
        drop(source);
        let (attempt, done) = Attempt::new(
            &self.source,
            epoch,
            replay,
            Some(Arc::clone(&opened)),
            total,
        );
        let mut request = empty_request(&self.method, &self.uri, &self.headers)
            .map(|_| UpBody::Protected(attempt));
        let headers = request.headers_mut();
        headers.insert(SPEEDBOX_UPLOAD_OFFSET, HeaderValue::from(start));
        // Every earlier attempt's connection is gone: its node's request can no longer end
        // in an answer, so its lease may be taken at once (fenced by the node's token).
        headers.insert(SPEEDBOX_UPLOAD_TAKEOVER, HeaderValue::from_static("1"));
        headers.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        headers.remove(header::CONTENT_LENGTH);
        if let Some(total) = total {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
        }
        let gate = self.gate.clone();
        hyper::ext::on_informational(&mut request, move |response| {
            if response.status() == StatusCode::CONTINUE {
                opened.open();
                // A body the first node never asked for is still behind its gate.
                if let Some(gate) = &gate {
                    gate.open();
                }
            }
        });
        (request, done, start, end)
    }
}

fn header_value(id: &str) -> HeaderValue {
    HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;
    use http_body_util::BodyExt;

    use super::*;
    use crate::window::UploadStats;

    #[tokio::test(start_paused = true)]
    async fn a_new_attempt_starts_its_own_stall_clock() {
        let stats = Arc::new(UploadStats::default());
        let client = http_body_util::Empty::<Bytes>::new().map_err(|never| match never {});
        let source = Arc::new(Mutex::new(Source {
            client: Box::pin(client),
            window: Window::new(16),
            epoch: 0,
            ended: false,
            failed: false,
            total: None,
            // The node of the attempt under way took nothing for twice the limit.
            handed_at: Instant::now().checked_sub(STALL * 2),
        }));
        let protection = Protection {
            id: "00".into(),
            source,
            gate: None,
            method: Method::PUT,
            uri: Uri::from_static("/files/x"),
            headers: HeaderMap::new(),
            _reservation: stats.reserve(1, 1).expect("room"),
        };
        tokio::time::timeout(STALL, protection.stalled())
            .await
            .expect("the stalled attempt is seen as such");
        let _next = protection.next_attempt();
        assert!(
            tokio::time::timeout(STALL * 3, protection.stalled())
                .await
                .is_err(),
            "an attempt not yet handed a frame is no stall, whatever its predecessor did"
        );
    }
}
