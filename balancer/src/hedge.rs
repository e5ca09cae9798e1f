//! Hedged requests: a safe, body-less request (GET, HEAD, OPTIONS) whose node sends no
//! response head within `first_byte_timeout` is sent to a second node as well, and the
//! first response wins; the other attempt is dropped, which closes its connection.
//!
//! This bounds what a hung node (SIGSTOP, a stuck disk, a full accept queue) costs a
//! client to about the timeout, where waiting for the response timeout would cost 30 s.
//! Each late node is counted towards its ejection ([`Node::late`]). DELETE is never
//! hedged: two concurrent deletes could answer the client with the loser's 404.

use std::pin::pin;
use std::time::Duration;

use http::{HeaderMap, Method, Request, Response, Uri};
use hyper::body::Incoming;
use speedbox_common::config::BalancerConfig;

use crate::cluster::{Cluster, Snapshot};
use crate::conn::{self, Lease, SendError};
use crate::node::{Bypassed, InFlight, Node};
use crate::up_body::{empty_request, UpBody};

/// What one (possibly hedged) attempt came to.
pub struct Outcome {
    /// The node whose result this is.
    pub index: usize,
    pub in_flight: InFlight,
    pub result: Result<(Response<Incoming>, Lease), SendError>,
    /// The hedge's node when both attempts failed (the caller counts it as tried too).
    pub also_failed: Option<usize>,
}

/// Whether requests of `method` may be hedged.
pub fn may_hedge(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Sends `request` to node `first`; if no response head comes within `timeout`, sends
/// `parts` rebuilt to another up node not in `failed` as well and returns whichever
/// succeeds first (or, if both fail, `first`'s error).
pub async fn send(
    cluster: &Cluster,
    snapshot: &Snapshot,
    first: usize,
    request: Request<UpBody>,
    parts: &(Method, Uri, HeaderMap),
    failed: &[usize],
    timeout: Duration,
) -> Outcome {
    let cfg: &BalancerConfig = &snapshot.config.balancer;
    let a_node = &snapshot.nodes[first];
    let a_flight = a_node.state.begin();
    let (mut a_body, mut b_body) = (None, None);
    let mut a = pin!(conn::send(a_node, request, &mut a_body, cfg));
    let outcome = |index, in_flight, result| Outcome {
        index,
        in_flight,
        result,
        also_failed: None,
    };
    tokio::select! {
        biased;
        result = &mut a => {
            if result.is_ok() {
                a_node.on_time();
            }
            return outcome(first, a_flight, result);
        }
        () = tokio::time::sleep(timeout) => {}
    }
    a_node.late(cfg.eject_after);
    let accept =
        |i: usize, n: &crate::node::Node| i != first && n.state.is_up() && !failed.contains(&i);
    let Some(second) = snapshot.pick(cluster.next_cursor(), accept) else {
        return outcome(first, a_flight, a.await);
    };
    let b_node = &snapshot.nodes[second];
    Bypassed::count(&a_node.state.bypassed.hedged);
    tracing::info!(node = %a_node.id, hedge = %b_node.id, method = %parts.0, uri = %parts.1,
        "no response head within {timeout:?}: hedging on another node");
    let b_flight = b_node.state.begin();
    let mut b = pin!(conn::send(
        b_node,
        empty_request(&parts.0, &parts.1, &parts.2),
        &mut b_body,
        cfg
    ));
    let (mut a_failed, mut b_failed) = (None, None);
    loop {
        tokio::select! {
            result = &mut a, if a_failed.is_none() => match result {
                Ok(_) => return outcome(first, a_flight, result),
                Err(e) => a_failed = Some(marked(a_node, e)),
            },
            result = &mut b, if b_failed.is_none() => match result {
                Ok(_) => return outcome(second, b_flight, result),
                Err(e) => b_failed = Some(marked(b_node, e)),
            },
        }
        if let (Some(_), Some(_)) = (&a_failed, &b_failed) {
            break;
        }
    }
    Outcome {
        index: first,
        in_flight: a_flight,
        result: Err(a_failed.unwrap_or(SendError::Timeout(timeout))),
        also_failed: Some(second),
    }
}

/// `error`, after marking `node` down if it says the node is dead. Marked here for both
/// attempts: the caller hears of the first one's error only if the hedge fails too.
fn marked(node: &Node, error: SendError) -> SendError {
    if error.dead_peer() {
        node.force_down(error.to_string());
    }
    error
}
