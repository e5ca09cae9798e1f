//! Video jobs on this node: a poster frame and HLS renditions for every uploaded video.
//!
//! The jobs themselves live in MongoDB ([`crate::store`]'s `media` module: recorded when a
//! video is published, claimed under a lease, cancelled when the source goes). Here:
//! [`start`] runs `[media] workers` [`worker`]s, which [`probe`] the source and run
//! [`ffmpeg`] with the [`args`] of its renditions as niced child processes, reading the
//! source from this node over loopback HTTP ([`source`]) into a bounded [`scratch`]
//! directory, and store the results ([`outputs`]); [`status`] answers `GET /media/{name}`.

mod args;
mod ffmpeg;
mod metrics;
mod outputs;
mod probe;
mod scratch;
mod source;
pub mod status;
mod worker;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use speedbox_common::config::MediaConfig;

pub use metrics::MediaMetrics;

use crate::store::Store;
use crate::upload::Limits;

/// What this node's workers share.
pub struct Media {
    cfg: MediaConfig,
    store: Store,
    source: Arc<source::SourceServer>,
    scratch: PathBuf,
    /// For writing outputs.
    limits: Limits,
    metrics: Arc<MediaMetrics>,
}

/// Starts this node's workers, unless `[media] enabled = false` or ffmpeg cannot be run
/// (then this node runs no jobs; other nodes still do, and jobs wait for one that can).
pub async fn start(
    store: Store,
    cfg: &MediaConfig,
    node_id: &str,
    limits: Limits,
    chunks_per_read: u64,
    metrics: Arc<MediaMetrics>,
) {
    if !cfg.enabled {
        tracing::info!("video jobs are off on this node ([media] enabled = false)");
        return;
    }
    for tool in [&cfg.ffmpeg, &cfg.ffprobe] {
        let runs = tokio::process::Command::new(tool)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        if !runs.is_ok_and(|s| s.success()) {
            tracing::error!(
                tool,
                "cannot run {tool}: this node runs no video jobs (scripts/setup installs ffmpeg)"
            );
            return;
        }
    }
    let scratch = match scratch::root(&cfg.scratch_dir, node_id) {
        Ok(root) => root,
        Err(e) => {
            tracing::error!(error = %e, "no scratch directory: this node runs no video jobs");
            return;
        }
    };
    let source = match source::SourceServer::start(store.clone(), chunks_per_read).await {
        Ok(source) => source,
        Err(e) => {
            tracing::error!(error = %e, "no loopback source server: this node runs no video jobs");
            return;
        }
    };
    let media = Arc::new(Media {
        cfg: cfg.clone(),
        store,
        source,
        scratch,
        limits,
        metrics,
    });
    tracing::info!(
        workers = cfg.workers,
        threads = cfg.threads,
        nice = cfg.nice,
        "video jobs on"
    );
    for _ in 0..cfg.workers {
        tokio::spawn(worker::work(Arc::clone(&media)));
    }
}
