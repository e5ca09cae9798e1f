//! A GET of a small file: its name and its whole content in one database round trip.
//!
//! Two kinds of file are read whole. A file of at most [`super::INLINE_MAX_BYTES`] carries its
//! content in its name's document ([`FileInfo::inline`], written by the same swap that
//! publishes it; its GridFS chunks hold it too), so one `find` by `_id` reads it. A file of
//! at most [`super::WHOLE_CHUNKS`] chunks has its chunks joined to its name (`$lookup` on
//! [`FileInfo::small`]). Either read finds either kind, but at a cost: measured on
//! `secantusd-rs` (database CPU per read), the `find` costs 105 µs and the join 165 µs,
//! 150 µs even when the name is an inline file's and nothing joins; a `find` that turns out
//! to need the chunks costs a second round trip. So each node tries first the read its
//! recent GETs needed ([`FirstRead`]): a store of tiny files, or of larger ones, or of
//! files stored before their names carried content, each gets its one round trip.
//!
//! A file of at most [`super::INLINE_MAX_BYTES`] stored before names carried content gets it from
//! the first GET that reads its chunk ([`Backfill`]), so an upgraded store's small files
//! come to the one `find` too.

use std::future::IntoFuture;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use bson::{doc, RawDocument, RawDocumentBuf};
use bytes::Bytes;
use futures::TryStreamExt;

use super::{binary, is_inline_content, FileInfo, Store};
use crate::error::{NodeError, Result};

/// A name's current revision and, for a file read whole, its chunks.
type Whole = (FileInfo, Option<Vec<Bytes>>);

/// Which read a GET tries first, learnt from what the last GETs found: a score that each
/// inline file raises and each file whose chunks had to be joined lowers, within
/// ±[`FIRST_READ_MEMORY`], so a change of the store's mix turns it within as many GETs.
#[derive(Debug, Default)]
pub struct FirstRead(AtomicI32);

/// How far the score goes either way.
const FIRST_READ_MEMORY: i32 = 16;

impl FirstRead {
    /// True: the name's document alone first; false: the name with its chunks joined.
    fn name_alone(&self) -> bool {
        self.0.load(Ordering::Relaxed) >= 0
    }

    /// A GET found an inline file (`true`) or one whose chunks it joined (`false`).
    fn learn(&self, inline: bool) {
        let step = if inline { 1 } else { -1 };
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |score| {
                Some((score + step).clamp(-FIRST_READ_MEMORY, FIRST_READ_MEMORY))
            });
    }
}

/// At most one inline backfill under way per node: an upgraded store's first GETs of its
/// old small files each offer one, and the database should not take a write per GET.
#[derive(Debug, Default)]
pub struct Backfill(AtomicBool);

/// How long a backfill's write may take before the node gives up on it (and may offer the
/// next): a database that cannot acknowledge must not switch backfills off for good.
const BACKFILL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Frees the one backfill slot when the task ends, however it ends.
struct BackfillSlot(Store);

impl Drop for BackfillSlot {
    fn drop(&mut self) {
        self.0.backfill.0.store(false, Ordering::Release);
    }
}

impl Store {
    /// The name's current revision and, when it is read whole (see the module doc), its
    /// whole content as chunks; `None` content for a larger file, which is read in windows.
    /// A small file's chunks that are not all there, in order and of their sizes, are
    /// [`NodeError::Corrupt`].
    pub async fn lookup_whole(&self, name: &str) -> Result<Option<Whole>> {
        let _timer = self.metrics.time("lookup");
        let found = if self.first_read.name_alone() {
            self.name_alone(name).await?
        } else {
            self.name_joined(name).await?
        };
        if let Some((info, Some(chunks))) = &found {
            self.first_read.learn(info.small.is_none());
            if info.small.is_some() {
                self.backfill_inline(info, chunks);
            }
        }
        Ok(found)
    }

    /// Gives a small file stored before names carried content its inline content, from the
    /// chunk a GET just read: in the background, one at a time per node ([`Backfill`]),
    /// and only while the name still points at that very revision (its `version` and
    /// `file_id` are in the update's filter: a swap in between wins, and the bytes are
    /// that revision's own). Adds a copy of bytes the chunk keeps, so it destroys nothing.
    fn backfill_inline(&self, info: &FileInfo, chunks: &[Bytes]) {
        let content = match chunks {
            [] => &[][..],
            [chunk] => &chunk[..],
            _ => return,
        };
        // The chunks were read by the join key; only where it is the revision's own.
        if info.small != Some(info.file_id) || !is_inline_content(content.len(), info.length as u64)
        {
            return;
        }
        if self.backfill.0.swap(true, Ordering::AcqRel) {
            return;
        }
        let slot = BackfillSlot(self.clone());
        let filter = doc! {"_id": &info.name, "version": info.version, "file_id": info.file_id};
        let update = doc! {"$set": {"inline": binary(content.to_vec())}, "$unset": {"small": ""}};
        tokio::spawn(async move {
            let write = slot.0.names.update_one(filter, update);
            // Nothing is lost either way: the file is read by its chunks, and a later GET
            // offers again.
            match tokio::time::timeout(BACKFILL_TIMEOUT, write.into_future()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "inline content for an old small file not written")
                }
                Err(_) => tracing::warn!("inline content for an old small file: no answer in time"),
            }
            drop(slot);
        });
    }

    /// The name's document; a small file's chunks in a second round trip.
    async fn name_alone(&self, name: &str) -> Result<Option<Whole>> {
        let Some(mut info) = self.names.find_one(doc! {"_id": name}).await? else {
            return Ok(None);
        };
        if let Some(content) = inline(&mut info)? {
            return Ok(Some((info, Some(content))));
        }
        if info.small.is_none() {
            return Ok(Some((info, None)));
        }
        let chunks = self
            .read_chunks(info.layout(), 0, info.layout().count())
            .await?;
        Ok(Some((info, Some(chunks))))
    }

    /// The name's document with a small file's chunks joined (`$lookup` on the indexed
    /// `files_id`).
    async fn name_joined(&self, name: &str) -> Result<Option<Whole>> {
        let pipeline = [
            doc! {"$match": {"_id": name}},
            doc! {"$lookup": {
                "from": self.chunks.name(), "localField": "small",
                "foreignField": "files_id", "as": "chunks",
            }},
        ];
        let mut cursor = self
            .names
            .aggregate(pipeline)
            .with_type::<RawDocumentBuf>()
            .await?;
        let Some(raw) = cursor.try_next().await? else {
            return Ok(None);
        };
        let mut info: FileInfo = bson::from_slice(raw.as_bytes())
            .map_err(|e| NodeError::Corrupt(format!("name {name}: {e}")))?;
        if let Some(content) = inline(&mut info)? {
            return Ok(Some((info, Some(content))));
        }
        if info.small.is_none() {
            return Ok(Some((info, None)));
        }
        let layout = info.layout();
        let mut found: Vec<&RawDocument> = raw
            .get_array("chunks")
            .into_iter()
            .flat_map(|a| a.into_iter())
            .filter_map(|c| c.ok()?.as_document())
            .collect();
        // In chunk order (a join's order is the server's); one without `n` goes last.
        found.sort_by_key(|c| c.get_i32("n").unwrap_or(i32::MAX));
        let count = layout.count();
        let mut chunks = Vec::with_capacity(count as usize);
        for (n, chunk) in (0..count).zip(found) {
            let data = super::chunks::checked(
                layout,
                n,
                chunk.get_i32("n").ok(),
                chunk.get_binary("data").ok(),
            )?;
            chunks.push(Bytes::copy_from_slice(data.bytes));
        }
        super::chunks::complete(layout, 0, count, &chunks)?;
        self.metrics
            .read(chunks.len(), chunks.iter().map(Bytes::len).sum());
        Ok(Some((info, Some(chunks))))
    }
}

/// An inline file's content, taken out of its name's document as its one chunk; content
/// whose length is not the file's is [`NodeError::Corrupt`].
fn inline(info: &mut FileInfo) -> Result<Option<Vec<Bytes>>> {
    let Some(content) = info.inline.take() else {
        return Ok(None);
    };
    if !is_inline_content(content.bytes.len(), info.length as u64) {
        return Err(NodeError::Corrupt(format!(
            "name {}: {} inline bytes for a file of {}",
            info.name,
            content.bytes.len(),
            info.length
        )));
    }
    Ok(Some(vec![Bytes::from(content.bytes)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_read_follows_what_the_last_gets_found() {
        let first = FirstRead::default();
        assert!(first.name_alone(), "a new node expects inline files");
        first.learn(false);
        assert!(!first.name_alone(), "one joined file turns it");
        for _ in 0..100 {
            first.learn(true);
        }
        assert!(first.name_alone());
        // Bounded memory: as many joined files as the bound (plus one) turn it back.
        for _ in 0..FIRST_READ_MEMORY {
            first.learn(false);
        }
        assert!(first.name_alone(), "at 0");
        first.learn(false);
        assert!(!first.name_alone());
    }
}
