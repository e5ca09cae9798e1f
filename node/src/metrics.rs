//! `GET /metrics` on a node: the HTTP request families ([`speedbox_common::observe`]), the
//! store's ([`crate::store::StoreMetrics`]: chunks, operation latency, sweeps), the video
//! workers' ([`MediaMetrics`]), uploads in progress and the process's own. A scrape reads memory only: no database round trip.

use std::sync::Arc;

use http::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use speedbox_common::metrics::{self, HttpMetrics};

use crate::media::MediaMetrics;
use crate::routes::{Route, TusRoute};
use crate::store::StoreMetrics;
use crate::{respond, Body};

/// The node's registry and the families its request path counts into.
#[derive(Debug)]
pub struct NodeMetrics {
    registry: Registry,
    pub http: Arc<HttpMetrics>,
    /// `speedbox_uploads_in_progress{kind="put"|"form"|"tus"}`.
    uploads: Family<Kind, Gauge>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

/// Counts one upload in progress until dropped.
pub struct Uploading(Gauge);

impl Drop for Uploading {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl NodeMetrics {
    /// A registry with the store's and the video workers' families (they keep counting
    /// into them).
    pub fn new(store: &StoreMetrics, media: &MediaMetrics) -> NodeMetrics {
        let (mut registry, http) = metrics::registry();
        let ours = metrics::speedbox(&mut registry);
        store.register(ours);
        media.register(ours);
        let uploads = Family::<Kind, Gauge>::default();
        ours.register(
            "uploads_in_progress",
            "Uploads this node is receiving: plain PUTs, form uploads, tus creations and PATCHes",
            uploads.clone(),
        );
        NodeMetrics {
            registry,
            http,
            uploads,
        }
    }

    /// Counts `route` as an upload in progress while the guard lives, if it is one.
    pub fn uploading(&self, route: &Route) -> Option<Uploading> {
        let kind = match route {
            Route::Put(_) => "put",
            Route::Multipart => "form",
            Route::Tus(TusRoute::Create | TusRoute::Patch(_)) => "tus",
            _ => return None,
        };
        let gauge = self.uploads.get_or_create_owned(&Kind { kind });
        gauge.inc();
        Some(Uploading(gauge))
    }

    /// The exposition, as the answer to `GET /metrics`.
    pub fn respond(&self) -> Response<Body> {
        respond::full(metrics::response(&self.registry))
    }
}
