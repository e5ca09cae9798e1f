//! GridFS chunks (`<bucket>.chunks`, the GridFS spec's layout): windowed reads that check
//! every chunk's number and size, journaled batch inserts, and removing a file's content.

use bson::oid::ObjectId;
use bson::spec::BinarySubtype;
use bson::{doc, rawdoc, RawBinaryRef, RawDocumentBuf};
use bytes::Bytes;
use futures::TryStreamExt;

use super::{is_duplicate_key, ChunkLayout, Store};
use crate::error::{NodeError, Result};

impl Store {
    /// Chunks `from..to` of a file, in order, each checked for its number and size.
    pub async fn read_chunks(&self, file: ChunkLayout, from: u64, to: u64) -> Result<Vec<Bytes>> {
        let _timer = self.metrics.time("read_chunks");
        let filter = doc! {"files_id": file.file_id, "n": {"$gte": from as i64, "$lt": to as i64}};
        let mut cursor = self
            .chunks
            .find(filter)
            .sort(doc! {"n": 1})
            // The limit lets the server close the cursor with its one batch; a batch size
            // alone left it open, and the driver asked again (a getMore) to learn it was
            // done: one more round trip per window, two of a small file's three.
            .limit((to - from) as i64)
            .batch_size((to - from) as u32)
            .await?;
        let mut out = Vec::with_capacity((to - from) as usize);
        while let Some(raw) = cursor.try_next().await? {
            let n = from + out.len() as u64;
            let data = checked(file, n, raw.get_i32("n").ok(), raw.get_binary("data").ok())?;
            out.push(Bytes::copy_from_slice(data.bytes));
        }
        complete(file, from, to, &out)?;
        self.metrics
            .read(out.len(), out.iter().map(Bytes::len).sum());
        Ok(out)
    }

    /// Appends chunks `first_n..` of a file in one journaled round trip, tagged with the
    /// tus lease token that wrote them, if any.
    ///
    /// A chunk already there under a lease no newer than ours is a leftover of a holder
    /// fenced off since (its write landed after our lease cleared what lay past the durable
    /// offset): it is removed, with ours of the batch, and the batch written again. One
    /// under a newer lease means we are the fenced one: [`NodeError::Locked`].
    pub(super) async fn insert_chunks(
        &self,
        file_id: ObjectId,
        first_n: i64,
        chunks: &[Bytes],
        lease: Option<i64>,
    ) -> Result<()> {
        let _timer = self.metrics.time("write_chunks");
        let result = self
            .insert_or_replace(file_id, first_n, chunks, lease)
            .await;
        if result.is_ok() {
            let bytes = chunks.iter().map(Bytes::len).sum();
            self.metrics.written(chunks.len(), bytes);
        }
        result
    }

    async fn insert_or_replace(
        &self,
        file_id: ObjectId,
        first_n: i64,
        chunks: &[Bytes],
        lease: Option<i64>,
    ) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let inserted = self
            .chunks
            .insert_many(chunk_docs(file_id, first_n, chunks, lease))
            .await;
        let (Err(e), Some(token)) = (&inserted, lease) else {
            inserted?;
            return Ok(());
        };
        if !is_duplicate_key(e) {
            inserted?;
        }
        let end = first_n + chunks.len() as i64;
        self.chunks
            .delete_many(doc! {
                "files_id": file_id, "n": {"$gte": first_n, "$lt": end},
                "lease": {"$not": {"$gt": token}},
            })
            .await?;
        match self
            .chunks
            .insert_many(chunk_docs(file_id, first_n, chunks, lease))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Err(NodeError::Locked(format!(
                "chunks of {file_id}: a newer lease holder writes them"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn delete_content(&self, file_id: ObjectId) -> Result<()> {
        // Files document first: a reader then sees "not found", never a file with holes.
        self.files.delete_one(doc! {"_id": file_id}).await?;
        self.chunks.delete_many(doc! {"files_id": file_id}).await?;
        // A video never published (its upload failed) leaves its job behind.
        self.media.delete_one(doc! {"_id": file_id}).await?;
        Ok(())
    }
}

/// The chunk documents of `chunks`, numbered from `first_n`, tagged with `lease`.
fn chunk_docs<'a>(
    file_id: ObjectId,
    first_n: i64,
    chunks: &'a [Bytes],
    lease: Option<i64>,
) -> impl Iterator<Item = RawDocumentBuf> + 'a {
    chunks.iter().enumerate().map(move |(i, data)| {
        let mut doc = rawdoc! {
            "_id": ObjectId::new(),
            "files_id": file_id,
            "n": (first_n + i as i64) as i32,
        };
        if let Some(token) = lease {
            // Which tus lease wrote it: a later lease holder removes only chunks of
            // earlier ones (see `tus_clear_stale`), never of a newer holder.
            doc.append("lease", token);
        }
        doc.append_ref(
            "data",
            RawBinaryRef {
                subtype: BinarySubtype::Generic,
                bytes: data,
            },
        );
        doc
    })
}

/// Chunk `n` of `file` as read (its `n` field and its `data`), if it is that chunk with the
/// size the layout gives it; else [`NodeError::Corrupt`] naming what is wrong.
pub(super) fn checked<'a>(
    file: ChunkLayout,
    n: u64,
    got_n: Option<i32>,
    data: Option<RawBinaryRef<'a>>,
) -> Result<RawBinaryRef<'a>> {
    let corrupt =
        |what: &str| NodeError::Corrupt(format!("file {} chunk {n}: {what}", file.file_id));
    let got_n = got_n.ok_or_else(|| corrupt("no n"))?;
    if got_n as u64 != n {
        return Err(corrupt(&format!("missing (found chunk {got_n} instead)")));
    }
    let data = data.ok_or_else(|| corrupt("no data"))?;
    let cs = file.chunk_size;
    let expected = cs.min(file.length - n * cs);
    if data.bytes.len() as u64 != expected {
        return Err(corrupt(&format!(
            "{} bytes where {expected} were expected",
            data.bytes.len()
        )));
    }
    Ok(data)
}

/// [`NodeError::Corrupt`] unless `got` holds every chunk of `from..to`.
pub(super) fn complete(file: ChunkLayout, from: u64, to: u64, got: &[Bytes]) -> Result<()> {
    if (got.len() as u64) < to - from {
        let n = from + got.len() as u64;
        return Err(NodeError::Corrupt(format!(
            "file {} chunk {n}: missing",
            file.file_id
        )));
    }
    Ok(())
}
