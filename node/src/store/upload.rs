//! An upload in progress (`PUT`, multipart): chunks written as they come, invisible until
//! [`Upload::commit`]. Dropping an uncommitted upload removes its chunks, so a broken-off
//! upload never leaves anything behind, even when its request future is dropped.
//! Chunks go through a [`ChunkWriter`], so batches are written while the next is received.

use std::time::Instant;

use bson::oid::ObjectId;
use bson::{doc, DateTime};
use bytes::Bytes;

use super::writer::ChunkWriter;
use super::{FileInfo, Finished, Guard, Store};
use crate::error::{NodeError, Result};

pub struct Upload {
    store: Store,
    file_id: ObjectId,
    name: String,
    next_n: i64,
    last_beat: Instant,
    done: bool,
    writer: ChunkWriter,
}

impl Store {
    /// Registers a new upload under a fresh file id, with a heartbeat the sweep watches.
    pub async fn begin_upload(&self, name: &str) -> Result<Upload> {
        let _timer = self.metrics.time("begin_upload");
        let file_id = super::new_file_id();
        let now = DateTime::now();
        self.uploads
            .insert_one(doc! {
                "_id": file_id, "name": name, "node": &self.node_id,
                "started_at": now, "heartbeat_at": now,
            })
            .await?;
        Ok(Upload {
            store: self.clone(),
            file_id,
            name: name.to_string(),
            next_n: 0,
            last_beat: Instant::now(),
            done: false,
            writer: self.chunk_writer(file_id, None),
        })
    }
}

impl Upload {
    pub fn file_id(&self) -> ObjectId {
        self.file_id
    }

    /// Appends whole chunks (all full but possibly the file's last); see
    /// [`ChunkWriter::write`].
    pub async fn write(&mut self, chunks: Vec<Bytes>) -> Result<()> {
        let first_n = self.next_n;
        self.next_n += chunks.len() as i64;
        self.writer.write(first_n, chunks).await?;
        self.heartbeat_if_due().await
    }

    /// Proves this upload is still registered (the sweep has not taken it for abandoned)
    /// unless our last beat is recent: within `heartbeat_every`, a quarter of the grace
    /// period, the sweep cannot have taken it.
    async fn heartbeat_if_due(&mut self) -> Result<()> {
        if self.last_beat.elapsed() < self.store.heartbeat_every {
            return Ok(());
        }
        let beat = self
            .store
            .uploads
            .update_one(
                doc! {"_id": self.file_id},
                doc! {"$set": {"heartbeat_at": DateTime::now()}},
            )
            .await?;
        if beat.matched_count == 0 {
            // Our decision, not the client's fault: a 5xx, so clients retry.
            return Err(NodeError::Internal(
                "upload was idle past the grace period and has been discarded".into(),
            ));
        }
        self.last_beat = Instant::now();
        Ok(())
    }

    /// Makes the upload visible under its name if `guard` allows (else
    /// [`NodeError::PreconditionFailed`], and the upload is removed).
    pub async fn commit(mut self, done: Finished, guard: Option<&dyn Guard>) -> Result<FileInfo> {
        let metrics = std::sync::Arc::clone(&self.store.metrics);
        let _timer = metrics.time("commit");
        self.writer.flush().await?;
        // A small PUT, whose only beat was its record's creation, writes no other.
        self.heartbeat_if_due().await?;
        let store = self.store.clone();
        let info = store
            .publish(self.file_id, std::mem::take(&mut self.name), done, guard)
            .await?;
        // From here the file is live whatever happens; the record is only for the sweep.
        self.done = true;
        if let Err(e) = store.uploads.delete_one(doc! {"_id": self.file_id}).await {
            tracing::warn!(file_id = %self.file_id, error = %e, "upload record left for the sweep");
        }
        Ok(info)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let (store, file_id) = (self.store.clone(), self.file_id);
        let settled = self.writer.settled();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // the sweep will find the upload record
        };
        runtime.spawn(async move {
            // A write landing after the delete would leave its chunks behind.
            settled.await;
            let result = async {
                // A swap whose reply was lost may still have made it live; then it stays.
                if !store.is_referenced(file_id).await? {
                    store.delete_content(file_id).await?;
                }
                store.uploads.delete_one(doc! {"_id": file_id}).await?;
                Ok::<_, NodeError>(())
            }
            .await;
            match result {
                Ok(()) => tracing::info!(%file_id, "aborted upload removed"),
                Err(e) => tracing::warn!(%file_id, error = %e, "aborted upload left for the sweep"),
            }
        });
    }
}
