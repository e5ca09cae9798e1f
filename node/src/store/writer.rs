//! Chunk inserts of one file, kept going in the background while the request reads on.
//!
//! Each insert is a journaled round trip; waiting for it before reading the next batch left
//! the network and the database taking turns. Writes are spawned, so a dropped request
//! never cancels one half-way, and kept here so that whoever deletes or publishes chunks
//! can first wait for every write under way.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;

use bson::oid::ObjectId;
use bytes::Bytes;
use tokio::task::JoinHandle;

use super::Store;
use crate::error::{NodeError, Result};

/// Batches being inserted while the request reads on; each costs a batch of memory per
/// upload, and bounds what a protected PUT's balancer must keep (see the constant).
const WRITES_IN_FLIGHT: usize = speedbox_common::config::UPLOAD_WRITES_IN_FLIGHT;
/// Batches in flight on the whole node. Many uploads at once already keep the database
/// busy, and each batch in flight holds a few MiB (chunks, their BSON, the wire message):
/// 5 concurrent uploads with 2 each measured ~100 MiB node RSS against ~55 writing inline.
pub(super) const NODE_WRITES_IN_FLIGHT: usize = 4;

pub struct ChunkWriter {
    store: Store,
    file_id: ObjectId,
    /// The tus lease token every chunk is tagged with (None for PUT and multipart).
    lease: Option<i64>,
    /// Oldest first, each with the chunk number it ends before; at most
    /// [`WRITES_IN_FLIGHT`] once `write` returns.
    writing: VecDeque<(i64, JoinHandle<Result<()>>)>,
    /// Every chunk below this one is in the database (the writes that ended, in order).
    written_through: Option<i64>,
    /// A write failed: what follows it has a hole before it, so it must never count.
    failed: bool,
}

impl Store {
    /// A writer of chunks of `file_id`, tagged with tus lease token `lease` if given.
    pub fn chunk_writer(&self, file_id: ObjectId, lease: Option<i64>) -> ChunkWriter {
        ChunkWriter {
            store: self.clone(),
            file_id,
            lease,
            writing: VecDeque::new(),
            written_through: None,
            failed: false,
        }
    }
}

impl ChunkWriter {
    /// Starts writing whole chunks from chunk `first_n` (all full but possibly the file's
    /// last) in one round trip; returns once no more than [`WRITES_IN_FLIGHT`] are under
    /// way, with the error of a write that failed.
    pub async fn write(&mut self, first_n: i64, chunks: Vec<Bytes>) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let slot = Arc::clone(&self.store.background_writes)
            .acquire_owned()
            .await
            .map_err(|e| NodeError::Internal(format!("write slots: {e}")))?;
        let (store, file_id, lease) = (self.store.clone(), self.file_id, self.lease);
        let end = first_n + chunks.len() as i64;
        let write = tokio::spawn(async move {
            let _slot = slot;
            store.insert_chunks(file_id, first_n, &chunks, lease).await
        });
        self.writing.push_back((end, write));
        while self.writing.len() > WRITES_IN_FLIGHT
            || self.writing.front().is_some_and(|(_, w)| w.is_finished())
        {
            self.wait_oldest().await?;
        }
        Ok(())
    }

    /// Every chunk below the returned number is in the database: the end of the last
    /// write that succeeded with all before it (`None` before any has, or after a failure).
    pub fn written_through(&self) -> Option<i64> {
        self.written_through.filter(|_| !self.failed)
    }

    /// Waits for every write under way: `Ok` when everything written so far is in the
    /// database, otherwise the first error (or a note that an earlier write failed).
    pub async fn flush(&mut self) -> Result<()> {
        let mut first = Ok(());
        while !self.writing.is_empty() {
            let result = self.wait_oldest().await;
            if first.is_ok() {
                first = result;
            }
        }
        if first.is_ok() && self.failed {
            first = Err(NodeError::Internal("an earlier chunk write failed".into()));
        }
        first
    }

    /// The writes still under way, to wait for off the request (before deleting chunks).
    pub fn settled(&mut self) -> impl Future<Output = ()> + Send + 'static {
        let writing = std::mem::take(&mut self.writing);
        async move {
            for (_, write) in writing {
                let _ = write.await;
            }
        }
    }

    async fn wait_oldest(&mut self) -> Result<()> {
        let Some((end, oldest)) = self.writing.front_mut() else {
            return Ok(());
        };
        let end = *end;
        // Awaited in place: if this request is dropped now, the write is still found here.
        let joined = oldest.await;
        self.writing.pop_front();
        let result = joined
            .map_err(|e| NodeError::Internal(format!("chunk write task: {e}")))
            .and_then(|written| written);
        self.failed |= result.is_err();
        if result.is_ok() {
            self.written_through = Some(end);
        }
        result
    }
}
