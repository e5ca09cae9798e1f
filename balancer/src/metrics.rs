//! `GET /metrics`: the balancer's Prometheus metrics (see [`speedbox_common::metrics`]).
//!
//! The request families are counted per request ([`speedbox_common::observe`]). Everything
//! about the nodes is read at scrape time from the one cluster snapshot and the counters
//! the request path keeps anyway ([`crate::node::Bypassed`], [`crate::node::Downs`],
//! [`crate::window::UploadStats`]), so a scrape costs no work on the request path and
//! a removed node's series simply end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::{Request, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use speedbox_common::auth::Authenticator;
use speedbox_common::metrics::{self, HttpMetrics};

use crate::cluster::Cluster;
use crate::down_body::DownBody;
use crate::limits::Limits;
use crate::node::Node;
use crate::ClientBody;

/// The balancer's registry and the request families the service counts into.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http: Arc<HttpMetrics>,
    /// `[limits]` in force, and what they did.
    pub limits: Arc<Limits>,
}

impl Metrics {
    pub fn new(cluster: Arc<Cluster>) -> Metrics {
        let (mut registry, http) = metrics::registry();
        let limits = Arc::new(Limits::default());
        metrics::speedbox(&mut registry)
            .sub_registry_with_prefix("balancer")
            .register_collector(Box::new(ClusterCollector {
                cluster,
                limits: Arc::clone(&limits),
            }));
        Metrics {
            registry,
            http,
            limits,
        }
    }
}

/// `GET /metrics`; needs an `admin` token when access control is on, like `/_cluster`.
pub fn respond(
    metrics: &Metrics,
    auth: &Authenticator,
    request: &Request<ClientBody>,
) -> Response<DownBody> {
    if let Err(refused) = crate::status::admin_read(auth, request) {
        return refused.into_response();
    }
    metrics::response(&metrics.registry).map(DownBody::Full)
}

/// The nodes' series, read from the cluster at each scrape.
#[derive(Debug)]
struct ClusterCollector {
    cluster: Arc<Cluster>,
    limits: Arc<Limits>,
}

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.cluster.snapshot();
        let nodes: Vec<&Node> = snapshot.nodes.iter().chain(&snapshot.draining).collect();
        let node_gauge = |encoder: &mut DescriptorEncoder, name, help, value: fn(&Node) -> i64| {
            let mut family =
                encoder.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
            for node in &nodes {
                let labels = [("node", node.id.as_str())];
                ConstGauge::new(value(node)).encode(family.encode_family(&labels)?)?;
            }
            Ok::<_, std::fmt::Error>(())
        };
        node_gauge(
            &mut encoder,
            "node_up",
            "1 while the node takes requests (health checks), else 0",
            |n| i64::from(n.state.is_up()),
        )?;
        node_gauge(
            &mut encoder,
            "node_requests_in_flight",
            "Requests under way on the node",
            |n| n.state.in_flight() as i64,
        )?;
        node_gauge(
            &mut encoder,
            "node_consecutive_failures",
            "Health checks failed in a row",
            |n| i64::from(n.state.health().rise_fall.consecutive_failures()),
        )?;

        let mut checks = encoder.encode_descriptor(
            "health_check_duration",
            "Durations of passed health checks (GET /healthz, a real database read)",
            Some(&Unit::Seconds),
            prometheus_client::metrics::MetricType::Histogram,
        )?;
        for node in &nodes {
            let labels = [("node", node.id.as_str())];
            node.state.checks.0.encode(checks.encode_family(&labels)?)?;
        }

        counters(
            &mut encoder,
            "failures_bypassed",
            "Node failures clients did not see, by how: a request sent elsewhere (retried), \
             a hung node's request hedged, a broken download continued on another node",
            None,
            per_node(&nodes, "how", |n| {
                let b = &n.state.bypassed;
                [
                    ("retried", read(&b.retried)),
                    ("hedged", read(&b.hedged)),
                    ("continued", read(&b.continued)),
                ]
            }),
        )?;
        counters(
            &mut encoder,
            "node_downs",
            "Times a node was taken out of rotation, by reason: failed health checks, a \
             refused or reset connection, or ejected for late answers",
            None,
            per_node(&nodes, "reason", |n| {
                let s = &n.state;
                [
                    ("health_check", read(&s.downs.checks)),
                    ("connection", read(&s.downs.connection)),
                    ("ejected", read(&s.bypassed.ejected)),
                ]
            }),
        )?;
        let uploads = &self.cluster.uploads;
        counters(
            &mut encoder,
            "uploads_unfinished_on_their_node",
            "PUTs whose node died or stalled: continued on another node, or cut; and PUTs \
             that went unprotected because the window budget was spent",
            None,
            [
                ("continued", &uploads.continued),
                ("cut", &uploads.cut),
                ("unprotected", &uploads.unprotected),
            ]
            .map(|(outcome, c)| (vec![("outcome", outcome)], read(c))),
        )?;
        let reserved = ConstGauge::new(uploads.reserved() as i64);
        let m = encoder.encode_descriptor(
            "upload_window_reserved",
            "Bytes of upload_window_budget_bytes reserved by the windows of uploads under way",
            Some(&Unit::Bytes),
            reserved.metric_type(),
        )?;
        reserved.encode(m)?;

        let limits = &self.limits;
        counters(
            &mut encoder,
            "limited",
            "Requests refused with 429 by [limits], by limit",
            None,
            [
                ("requests_per_second", &limits.refused_rate),
                ("concurrent_transfers", &limits.refused_transfers),
            ]
            .map(|(limit, c)| (vec![("limit", limit)], read(c))),
        )?;
        counters(
            &mut encoder,
            "shaped",
            "Body bytes that waited for their principal's bandwidth limit, by direction",
            Some(&Unit::Bytes),
            [
                ("upload", &*limits.shaped_up),
                ("download", &*limits.shaped_down),
            ]
            .map(|(direction, c)| (vec![("direction", direction)], read(c))),
        )?;
        Ok(())
    }
}

/// A series per node and value of `key`: labels `node` and `key`, from `pairs`.
fn per_node<'a>(
    nodes: &[&'a Node],
    key: &'a str,
    pairs: impl Fn(&Node) -> [(&'a str, u64); 3],
) -> Vec<(Vec<(&'a str, &'a str)>, u64)> {
    let series = nodes.iter().flat_map(|node| {
        pairs(node).map(|(value, n)| (vec![("node", node.id.as_str()), (key, value)], n))
    });
    series.collect()
}

/// One counter family, a series per `(labels, value)`.
fn counters<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, u64)>,
) -> Result<(), std::fmt::Error> {
    let kind = ConstCounter::new(0u64).metric_type();
    let mut family = encoder.encode_descriptor(name, help, unit, kind)?;
    for (labels, value) in series {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}
