//! Background work of a node: create indexes once the database answers, then sweep garbage
//! (abandoned uploads, retired revisions) every `sweep_interval_secs`. Every node sweeps;
//! the deletes are idempotent, so nodes racing on the same garbage is harmless.

use std::time::Duration;

use crate::store::Store;

/// Spawns the maintenance loop.
pub fn spawn(store: Store, grace: Duration, interval: Duration) {
    tokio::spawn(async move {
        while let Err(e) = store.ensure_indexes().await {
            tracing::warn!(error = %e, "cannot create indexes yet; retrying");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        tracing::info!("indexes in place");
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
