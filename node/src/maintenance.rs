//! Background work of a node: create indexes once the database answers, then sweep garbage
//! (abandoned uploads, retired revisions) every `sweep_interval_secs`. Every node sweeps;
//! the deletes are idempotent, so nodes racing on the same garbage is harmless.

use std::time::Duration;

use crate::store::Store;

/// How long a starting node waits for its indexes before it serves anyway (the database
/// may be down; then requests get 503 and the loop below keeps trying).
const INDEXES_AT_START: Duration = Duration::from_secs(15);

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

/// Spawns the maintenance loop; it creates the indexes first unless `indexes_ready`.
pub fn spawn(store: Store, grace: Duration, interval: Duration, indexes_ready: bool) {
    tokio::spawn(async move {
        if !indexes_ready {
            while let Err(e) = store.ensure_indexes().await {
                tracing::warn!(error = %e, "cannot create indexes yet; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            tracing::info!("indexes in place");
        }
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match store.sweep(grace).await {
                Ok(swept) if swept == Default::default() => {}
                Ok(swept) => tracing::info!(
                    abandoned_uploads = swept.abandoned_uploads,
                    retired_files = swept.retired_files,
                    "swept garbage"
                ),
                Err(e) => tracing::warn!(error = %e, "sweep failed"),
            }
        }
    });
}
