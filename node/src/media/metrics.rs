//! What this node's video workers count for `/metrics` (registered under `speedbox_media_`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// The media families.
#[derive(Debug, Default)]
pub struct MediaMetrics {
    /// `speedbox_media_attempts_total{outcome}`: job attempts that ended here, by how.
    attempts: Family<Outcome, Counter>,
    /// `speedbox_media_running`: jobs running on this node now.
    running: Gauge,
    /// `speedbox_media_video_seconds_total`: seconds of video turned into renditions.
    video: Counter<f64>,
    /// `speedbox_media_busy_seconds_total`: wall-clock seconds workers spent on attempts;
    /// `rate(video) / rate(busy)` is the processing speed in × real time.
    busy: Counter<f64>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// Counts one running job until dropped.
pub struct Running<'a>(&'a MediaMetrics, std::time::Instant);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.dec();
        self.0.busy.inc_by(self.1.elapsed().as_secs_f64());
    }
}

impl MediaMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let media = registry.sub_registry_with_prefix("media");
        media.register(
            "attempts",
            "Video job attempts that ended on this node, by outcome (done, retried, failed, cancelled, left: the lease was lost, released: the source was still being published)",
            self.attempts.clone(),
        );
        media.register(
            "running",
            "Video jobs running on this node",
            self.running.clone(),
        );
        media.register_with_unit(
            "video",
            "Seconds of video this node turned into renditions",
            Unit::Seconds,
            self.video.clone(),
        );
        media.register_with_unit(
            "busy",
            "Wall-clock seconds this node's workers spent running job attempts",
            Unit::Seconds,
            self.busy.clone(),
        );
    }

    /// Counts an attempt as running until the guard drops.
    pub fn running(&self) -> Running<'_> {
        self.running.inc();
        Running(self, std::time::Instant::now())
    }

    pub fn ended(&self, outcome: &'static str) {
        self.attempts.get_or_create(&Outcome { outcome }).inc();
    }

    pub fn processed(&self, video_secs: f64) {
        self.video.inc_by(video_secs.max(0.0));
    }
}
