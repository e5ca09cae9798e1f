//! `GET /_cluster`: what the balancer currently believes about the cluster, as JSON.
//!
//! The only path the balancer answers itself; everything else (`/healthz` included) goes
//! to a node, so `/healthz` through the balancer says that some node is healthy.

use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use http::{Method, Request, Response, StatusCode};
use serde::Serialize;
use speedbox_common::auth::{bearer, Authenticator, Scope};
use speedbox_common::config::Algorithm;
use speedbox_common::respond;

use crate::cluster::Cluster;
use crate::down_body::DownBody;
use crate::error::ProxyError;
use crate::node::Node;
use crate::ClientBody;

pub const PATH: &str = "/_cluster";

#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    /// Unix seconds.
    pub config_loaded_at: u64,
    pub config_path: String,
    pub algorithm: Algorithm,
    pub nodes: Vec<NodeStatus>,
    pub uploads: UploadsStatus,
}

/// Plain PUTs protected against their node's death ([`crate::protect`]): counters since
/// the balancer started.
#[derive(Debug, Serialize)]
pub struct UploadsStatus {
    /// Bytes of `upload_window_budget_bytes` the windows of uploads under way reserve.
    pub window_bytes_reserved: u64,
    pub window_budget_bytes: u64,
    /// Uploads that found the budget spent and went on unprotected.
    pub unprotected: u64,
    /// Uploads continued on another node after theirs died.
    pub continued: u64,
    /// Uploads whose node died and that could not be continued.
    pub cut: u64,
}

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub id: String,
    pub address: String,
    pub weight: u32,
    /// `up`, `down` or `removed-draining`.
    pub state: &'static str,
    pub in_flight: usize,
    pub consecutive_failures: u32,
    pub last_check_latency_ms: Option<u64>,
    pub last_error: Option<String>,
    /// Failures of this node that clients did not see (see [`crate::node::Bypassed`]).
    pub bypassed: BypassedStatus,
}

/// [`crate::node::Bypassed`]'s counters, since the balancer started.
#[derive(Debug, Serialize)]
pub struct BypassedStatus {
    pub hedged: u64,
    pub continued: u64,
    pub ejected: u64,
}

/// `GET /_cluster`; needs an `admin` token when access control is on (it names every
/// node's address and error).
pub fn respond(
    cluster: &Cluster,
    auth: &Authenticator,
    request: &Request<ClientBody>,
) -> Response<DownBody> {
    if let Err(refused) = admin_read(auth, request) {
        return refused.into_response();
    }
    respond::json(StatusCode::OK, &status(cluster)).map(DownBody::Full)
}

/// A GET or HEAD with an `admin` token (any request when access control is off): what the
/// balancer's own answers (`/_cluster`, `/metrics`) need; else why not.
pub fn admin_read(auth: &Authenticator, request: &Request<ClientBody>) -> Result<(), ProxyError> {
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        return Err(ProxyError::MethodNotAllowed(method.clone()));
    }
    bearer(request.headers(), request.uri().query())
        .and_then(|token| auth.authenticate(token))
        .and_then(|principal| principal.may(Scope::Admin, None))
        .map_err(ProxyError::Auth)
}

pub fn status(cluster: &Cluster) -> ClusterStatus {
    let snapshot = cluster.snapshot();
    let draining = snapshot
        .draining
        .iter()
        .filter(|n| n.state.in_flight() > 0)
        .map(|n| node_status(n, Some("removed-draining")));
    ClusterStatus {
        config_loaded_at: snapshot
            .loaded_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        config_path: cluster.config_path.display().to_string(),
        algorithm: snapshot.config.balancer.algorithm,
        nodes: snapshot
            .nodes
            .iter()
            .map(|n| node_status(n, None))
            .chain(draining)
            .collect(),
        uploads: UploadsStatus {
            window_bytes_reserved: cluster.uploads.reserved(),
            window_budget_bytes: snapshot.config.balancer.upload_window_budget_bytes,
            unprotected: cluster.uploads.unprotected.load(Ordering::Relaxed),
            continued: cluster.uploads.continued.load(Ordering::Relaxed),
            cut: cluster.uploads.cut.load(Ordering::Relaxed),
        },
    }
}

fn node_status(node: &Node, state: Option<&'static str>) -> NodeStatus {
    let health = node.state.health();
    let up = health.rise_fall.is_up();
    NodeStatus {
        id: node.id.clone(),
        address: node.addr.to_string(),
        weight: node.weight,
        state: state.unwrap_or(if up { "up" } else { "down" }),
        in_flight: node.state.in_flight(),
        consecutive_failures: health.rise_fall.consecutive_failures(),
        last_check_latency_ms: health.last_check_latency_ms,
        last_error: health.last_error,
        bypassed: {
            let (hedged, continued, ejected) = node.state.bypassed.read();
            BypassedStatus {
                hedged,
                continued,
                ejected,
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use speedbox_common::config::ClusterConfig;

    #[test]
    fn status_lists_nodes_and_draining_ones() {
        let text = "[mongodb]\nuri = \"mongodb://127.0.0.1:27017\"\n\
            [[nodes]]\nid = \"a\"\nlisten = \"127.0.0.1:8001\"\n\
            [[nodes]]\nid = \"b\"\nlisten = \"127.0.0.1:8002\"\nweight = 2\n";
        let cfg = ClusterConfig::from_toml(text).unwrap();
        let cluster = Cluster::new("cluster.toml".into(), cfg.clone());
        let snap = cluster.snapshot();
        let _busy = snap.nodes[1].state.begin();
        snap.nodes[0].force_down("connect: refused".into());
        let mut fewer = cfg;
        fewer.nodes.truncate(1);
        cluster.apply(fewer);

        let json = serde_json::to_value(status(&cluster)).unwrap();
        assert_eq!(json["config_path"], "cluster.toml");
        assert_eq!(json["algorithm"], "least-outstanding");
        assert!(json["config_loaded_at"].as_u64().unwrap() > 1_600_000_000);
        let nodes = json["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0]["id"], "a");
        assert_eq!(nodes[0]["state"], "down");
        assert_eq!(nodes[0]["consecutive_failures"], 1);
        assert_eq!(nodes[0]["last_error"], "connect: refused");
        assert_eq!(nodes[1]["id"], "b");
        assert_eq!(nodes[1]["address"], "127.0.0.1:8002");
        assert_eq!(nodes[1]["weight"], 2);
        assert_eq!(nodes[1]["state"], "removed-draining");
        assert_eq!(nodes[1]["in_flight"], 1);
        assert_eq!(nodes[1]["bypassed"]["hedged"], 0);
    }
}
