//! Garbage removal: uploads whose node went silent, revisions that lost their name longer
//! than the grace period ago, and resumable uploads past their expiry. Every node runs it;
//! each step is idempotent, so nodes racing on the same garbage is harmless.

use std::time::Duration;

use bson::{doc, DateTime, Document};
use futures::TryStreamExt;

use super::Store;
use crate::error::Result;

/// What one sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub abandoned_uploads: u64,
    pub retired_files: u64,
    pub expired_tus_uploads: u64,
    /// Output names of video jobs whose source was replaced or deleted.
    pub media_outputs: u64,
}

impl Store {
    /// Removes uploads abandoned longer than `grace` and revisions retired longer than it.
    pub async fn sweep(&self, grace: Duration) -> Result<Swept> {
        let _timer = self.metrics.time("sweep");
        let cutoff =
            DateTime::from_millis(DateTime::now().timestamp_millis() - grace.as_millis() as i64);
        let mut swept = Swept::default();
        let stale: Vec<Document> = self
            .uploads
            .find(doc! {"heartbeat_at": {"$lt": cutoff}})
            .limit(100)
            .await?
            .try_collect()
            .await?;
        for upload in stale {
            let Ok(id) = upload.get_object_id("_id") else {
                continue;
            };
            // Claimed in one step with the proof that it is still silent: an upload whose
            // node heartbeats again after our read keeps its record and its chunks, and one
            // whose record we took can no longer commit (its heartbeat finds no record).
            let claimed = self
                .uploads
                .delete_one(doc! {"_id": id, "heartbeat_at": {"$lt": cutoff}})
                .await?;
            // A node killed between swapping the name and clearing its upload record
            // leaves a record of a file that is live: keep the file.
            if claimed.deleted_count == 1 && !self.is_referenced(id).await? {
                self.delete_content(id).await?;
                swept.abandoned_uploads += 1;
            }
        }
        let retired: Vec<Document> = self
            .files
            .find(doc! {"metadata.retired_at": {"$lt": cutoff}})
            .projection(doc! {"_id": 1, "metadata.contentType": 1})
            .limit(100)
            .await?
            .try_collect()
            .await?;
        for file in retired {
            let Ok(id) = file.get_object_id("_id") else {
                continue;
            };
            if self.is_referenced(id).await? {
                // A mark left by a swap that lost its race. Conditional, so that a fresh mark
                // (the name moved on since our read) is not undone.
                self.files
                    .update_one(
                        doc! {"_id": id, "metadata.retired_at": {"$lt": cutoff}},
                        doc! {"$unset": {"metadata.retired_at": ""}},
                    )
                    .await?;
                continue;
            }
            // A video's outputs go with it (before its files document, so a sweep cut short
            // here finds it again).
            let content_type = file
                .get_document("metadata")
                .and_then(|m| m.get_str("contentType"))
                .unwrap_or_default();
            if super::is_video(content_type) {
                swept.media_outputs += self.media_forget(id).await?;
            }
            // The files document goes only if it is still retired long enough, in the same
            // step: another node may have found it referenced and unmarked it meanwhile.
            let gone = self
                .files
                .delete_one(doc! {"_id": id, "metadata.retired_at": {"$lt": cutoff}})
                .await?;
            if gone.deleted_count == 1 {
                self.chunks.delete_many(doc! {"files_id": id}).await?;
                swept.retired_files += 1;
            }
        }
        swept.expired_tus_uploads = self.sweep_tus().await?;
        self.metrics.swept(&swept);
        Ok(swept)
    }

    /// Updates `speedbox_store_chunks_size_bytes` from the database's `collStats` of the
    /// chunks collection (so a scrape never asks the database). Errors leave the last figure.
    pub async fn measure_stored(&self) {
        let stats = self
            .db
            .run_command(doc! {"collStats": self.chunks.name()})
            .await;
        let size = stats.ok().and_then(|s| match s.get("size") {
            Some(bson::Bson::Int32(n)) => u64::try_from(*n).ok(),
            Some(bson::Bson::Int64(n)) => u64::try_from(*n).ok(),
            Some(bson::Bson::Double(n)) => Some(*n as u64),
            _ => None,
        });
        if let Some(size) = size {
            self.metrics.set_stored(size);
        }
    }
}
