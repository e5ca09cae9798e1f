//! `GET /metrics`: the balancer's Prometheus metrics (see [`speedbox_common::metrics`]).
//!
//! The request families are counted per request ([`speedbox_common::observe`]). Everything
//! about the nodes is read at scrape time from the one cluster snapshot and the counters
//! the request path keeps anyway ([`crate::node::Bypassed`], [`crate::node::Downs`],
//! [`crate::window::UploadStats`]), so a scrape costs no work on the request path and
//! a removed node's series simply end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};
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
    let mut response = Response::new(DownBody::Full(http_body_util::Full::new(
        metrics::encode(&metrics.registry).into(),
    )));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    response
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

        let mut bypassed = encoder.encode_descriptor(
            "failures_bypassed",
            "Node failures clients did not see, by how: a request sent elsewhere (retried), \
             a hung node's request hedged, a broken download continued on another node",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for node in &nodes {
            let b = &node.state.bypassed;
            for (how, counter) in [
                ("retried", &b.retried),
                ("hedged", &b.hedged),
                ("continued", &b.continued),
            ] {
                let labels = [("node", node.id.as_str()), ("how", how)];
                ConstCounter::new(read(counter)).encode(bypassed.encode_family(&labels)?)?;
            }
        }

        let mut downs = encoder.encode_descriptor(
            "node_downs",
            "Times a node was taken out of rotation, by reason: failed health checks, a \
             refused or reset connection, or ejected for late answers",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for node in &nodes {
            let s = &node.state;
            for (reason, counter) in [
                ("health_check", &s.downs.checks),
                ("connection", &s.downs.connection),
                ("ejected", &s.bypassed.ejected),
            ] {
                let labels = [("node", node.id.as_str()), ("reason", reason)];
                ConstCounter::new(read(counter)).encode(downs.encode_family(&labels)?)?;
            }
        }

        let uploads = &self.cluster.uploads;
        let mut protected = encoder.encode_descriptor(
            "uploads_unfinished_on_their_node",
            "PUTs whose node died or stalled: continued on another node, or cut; and PUTs \
             that went unprotected because the window budget was spent",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (outcome, counter) in [
            ("continued", &uploads.continued),
            ("cut", &uploads.cut),
            ("unprotected", &uploads.unprotected),
        ] {
            let labels = [("outcome", outcome)];
            ConstCounter::new(read(counter)).encode(protected.encode_family(&labels)?)?;
        }
        let reserved = ConstGauge::new(uploads.reserved() as i64);
        let m = encoder.encode_descriptor(
            "upload_window_reserved",
            "Bytes of upload_window_budget_bytes reserved by the windows of uploads under way",
            Some(&Unit::Bytes),
            reserved.metric_type(),
        )?;
        reserved.encode(m)?;

        let limits = &self.limits;
        let mut refused = encoder.encode_descriptor(
            "limited",
            "Requests refused with 429 by [limits], by limit",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (limit, counter) in [
            ("requests_per_second", &limits.refused_rate),
            ("concurrent_transfers", &limits.refused_transfers),
        ] {
            let labels = [("limit", limit)];
            ConstCounter::new(read(counter)).encode(refused.encode_family(&labels)?)?;
        }
        let mut shaped = encoder.encode_descriptor(
            "shaped",
            "Body bytes that waited for their principal's bandwidth limit, by direction",
            Some(&Unit::Bytes),
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (direction, counter) in [
            ("upload", &*limits.shaped_up),
            ("download", &*limits.shaped_down),
        ] {
            let labels = [("direction", direction)];
            ConstCounter::new(read(counter)).encode(shaped.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}
