//! Background work of a node: create indexes once the database answers, then sweep garbage
//! (abandoned uploads, retired revisions) every `sweep_interval_secs`, and now and then
//! record the jobs of videos published without one, and measure what the chunks take
//! every `size_interval_secs`. Every node sweeps;
//! the deletes are idempotent, so nodes racing on the same garbage is harmless.

use std::time::{Duration, Instant};

use crate::store::Store;

/// How long a starting node waits for its indexes before it serves anyway (the database
/// may be down; then requests get 503 and the loop below keeps trying).
const INDEXES_AT_START: Duration = Duration::from_secs(15);

/// Sweeps between two looks for videos without a job (and one at start). Such videos are
/// those published before video jobs existed: `publish` records a job before the name
/// swap, so no crash makes one. The look reads every video's name, hence not every sweep.
const BACKFILL_EVERY: u64 = 60;

/// Jobs recorded per look at most.
const BACKFILL_BATCH: i64 = 1000;

/// Creates the indexes before the node serves, if the database answers within
/// [`INDEXES_AT_START`]: an index build that creates a collection while a request's insert
/// creates it too livelocks secantusd-py (seen: both threads retrying write conflicts in
/// `create_collection` and `_insert_chunk`, the first PUT hung for minutes). True if done.
pub async fn indexes_at_start(store: &Store) -> bool {
    match tokio::time::timeout(INDEXES_AT_START, store.ensure_indexes()).await {
        Ok(Ok(())) => {
            tracing::info!("indexes in place");
            true
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot create indexes yet; serving, and retrying");
            false
        }
        Err(_) => {
            tracing::warn!("database slow to answer; serving, and creating indexes later");
            false
        }
    }
}

/// How often the maintenance loop does what (`[storage]`).
#[derive(Debug, Clone, Copy)]
pub struct Intervals {
    /// Garbage older than this goes (`gc_grace_secs`).
    pub grace: Duration,
    /// Between two sweeps (`sweep_interval_secs`).
    pub sweep: Duration,
    /// Between two measurements of the chunks' size (`size_interval_secs`), each at a
    /// sweep: `collStats` reads every stored byte on the embedded `secantusd-py`, which
    /// once every second on 3 nodes took half of its time under a small-PUT load.
    pub size: Duration,
}

/// Spawns the maintenance loop; it creates the indexes first unless `indexes_ready`.
pub fn spawn(store: Store, every: Intervals, indexes_ready: bool) {
    tokio::spawn(async move {
        if !indexes_ready {
            while let Err(e) = store.ensure_indexes().await {
                tracing::warn!(error = %e, "cannot create indexes yet; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            tracing::info!("indexes in place");
        }
        let mut ticker = tokio::time::interval(every.sweep);
        let mut measured: Option<Instant> = None;
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for tick in 0u64.. {
            ticker.tick().await;
            if tick % BACKFILL_EVERY == 0 {
                match store.media_backfill(BACKFILL_BATCH).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(jobs = n, "recorded jobs of videos that had none"),
                    Err(e) => tracing::warn!(error = %e, "cannot look for videos without a job"),
                }
            }
            if measured.is_none_or(|at| at.elapsed() >= every.size) {
                measured = Some(Instant::now());
                store.measure_stored().await;
            }
            match store.sweep(every.grace).await {
                Ok(swept) if swept == Default::default() => {}
                Ok(swept) => tracing::info!(
                    abandoned_uploads = swept.abandoned_uploads,
                    retired_files = swept.retired_files,
                    media_outputs = swept.media_outputs,
                    "swept garbage"
                ),
                Err(e) => tracing::warn!(error = %e, "sweep failed"),
            }
        }
    });
}
