//! An upload in progress (`PUT`, multipart): chunks written as they come, invisible until
//! [`Upload::commit`]. Dropping an uncommitted upload removes its chunks, so a broken-off
//! upload never leaves anything behind, even when its request future is dropped.
//!
//! One batch is written while the next is received: each insert is a journaled round trip,
//! and waiting for it before reading on left the network and the database taking turns.

use std::collections::VecDeque;
use std::time::Instant;

use bson::oid::ObjectId;
use bson::{doc, DateTime};
use bytes::Bytes;
use tokio::task::JoinHandle;

use super::{FileInfo, Finished, Store};
use crate::error::{NodeError, Result};

pub struct Upload {
    store: Store,
    file_id: ObjectId,
    name: String,
    next_n: i64,
    last_beat: Instant,
    done: bool,
    /// Inserts under way, oldest first: at most [`WRITES_IN_FLIGHT`] once `write` returns.
    /// Spawned, so that a dropped request never cancels a write half-way; kept here so
    /// that an abort waits for them before it removes the chunks.
    writing: VecDeque<JoinHandle<Result<()>>>,
}

/// Batches being inserted while the request reads on; each costs a batch of memory per
/// upload. Measured (`scripts/bench --only storage --size-mib 256 --reps 2`, secantusd-rs):
/// 0 (write, then read on) 64 MB/s, 1 97, 2 120, 3 117; the plain driver 131-147.
const WRITES_IN_FLIGHT: usize = 2;

impl Store {
    /// Registers a new upload under a fresh file id, with a heartbeat the sweep watches.
    pub async fn begin_upload(&self, name: &str) -> Result<Upload> {
        let file_id = ObjectId::new();
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
            writing: VecDeque::new(),
        })
    }
}

impl Upload {
    pub fn file_id(&self) -> ObjectId {
        self.file_id
    }

    /// Appends whole chunks (all full but possibly the file's last) in one round trip, which
    /// goes on in the background; returns once no more than [`WRITES_IN_FLIGHT`] are under
    /// way, with the first error of those that finished.
    pub async fn write(&mut self, chunks: Vec<Bytes>) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let (store, file_id, first_n) = (self.store.clone(), self.file_id, self.next_n);
        self.next_n += chunks.len() as i64;
        self.writing.push_back(tokio::spawn(async move {
            store.insert_chunks(file_id, first_n, &chunks).await
        }));
        while self.writing.len() > WRITES_IN_FLIGHT {
            self.wait_oldest().await?;
        }
        if self.last_beat.elapsed() >= self.store.heartbeat_every {
            self.heartbeat().await?;
        }
        Ok(())
    }

    /// Waits until every chunk written so far is in the database.
    async fn flush(&mut self) -> Result<()> {
        while !self.writing.is_empty() {
            self.wait_oldest().await?;
        }
        Ok(())
    }

    async fn wait_oldest(&mut self) -> Result<()> {
        let Some(oldest) = self.writing.front_mut() else {
            return Ok(());
        };
        // Awaited in place: if this request is dropped now, Drop still finds the write.
        let result = oldest.await;
        self.writing.pop_front();
        result.map_err(|e| NodeError::Internal(format!("chunk write task: {e}")))?
    }

    /// Proves this upload is still registered (the sweep has not taken it for abandoned).
    async fn heartbeat(&mut self) -> Result<()> {
        let beat = self
            .store
            .uploads
            .update_one(
                doc! {"_id": self.file_id},
                doc! {"$set": {"heartbeat_at": DateTime::now()}},
            )
            .await?;
        if beat.matched_count == 0 {
            return Err(NodeError::Body(
                "upload was idle past the grace period and has been discarded".into(),
            ));
        }
        self.last_beat = Instant::now();
        Ok(())
    }

    /// Makes the upload visible under its name.
    pub async fn commit(mut self, done: Finished) -> Result<FileInfo> {
        self.flush().await?;
        self.heartbeat().await?;
        let store = self.store.clone();
        let info = store
            .publish(self.file_id, std::mem::take(&mut self.name), done)
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
        let writing = std::mem::take(&mut self.writing);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // the sweep will find the upload record
        };
        runtime.spawn(async move {
            // A write landing after the delete would leave its chunks behind.
            for write in writing {
                let _ = write.await;
            }
            let result = async {
                store.delete_content(file_id).await?;
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
